# One job per training phase; a phase starts from the previous phase's checkpoint.
# An interrupted job resumes from resources/checkpoints/ (not an output, so Snakemake keeps it).


rule train_phase:
    input:
        data=J.manifest,
        init=J.previous_phase,
        prior=J.prior_model,
    output:
        "resources/models/{dataset}/{method}/{phase}.pt",
    params:
        cfg=J.train_cfg,
        index=lambda w: J.phase_index(w.method, w.phase),
        init=J.train_init_args,
        data=lambda w: J.data_dir(w.dataset),
        ckpt=lambda w: f"resources/checkpoints/{w.dataset}/{w.method}",
    threads: TORCH_THREADS
    priority: J.train_priority
    resources:
        gpu=GPU,
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/train/{dataset}/{method}/{phase}.log",
    benchmark:
        "logs/benchmarks/train/{dataset}/{method}/{phase}.tsv"
    shell:
        "python -m daebench train --cfg {params.cfg:q} --method {wildcards.method} --phase-index {params.index}"
        " {params.init} --data {params.data} --checkpoint-dir {params.ckpt}"
        " --out {output} --threads {threads} > {log} 2>&1"
