# One job per training phase; a phase starts from the previous phase's checkpoint.
# An interrupted job resumes from resources/checkpoints/ (not an output, so Snakemake keeps it).


rule train_phase:
    input:
        data=P.MANIFEST,
        init=J.training.previous_phase,
        prior=J.training.prior_model,
    output:
        P.MODEL,
    params:
        cfg=J.training.train_cfg,
        index=lambda w: J.training.phase_index(w.method, w.phase),
        init=J.training.train_init_args,
        data=lambda w: J.data.data_dir(w.dataset),
        ckpt=lambda w: f"{P.CHECKPOINTS}/{w.dataset}/{w.method}",
    threads: TORCH_THREADS
    priority: J.training.train_priority
    resources:
        gpu=GPU,
    log:
        "logs/train/{dataset}/{method}/{phase}.log",
    shell:
        "python -m daebench train --cfg {params.cfg:q} --method {wildcards.method} --phase-index {params.index}"
        " {params.init} --data {params.data} --checkpoint-dir {params.ckpt}"
        " --out {output} --threads {threads} > {log} 2>&1"
