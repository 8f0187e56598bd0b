# One job per training phase; a phase starts from the previous phase's checkpoint.
# An interrupted job resumes from resources/checkpoints/ (not an output, so Snakemake keeps it).


rule train_phase:
    input:
        data=manifest,
        init=previous_phase,
        prior=prior_model,
    output:
        "resources/models/{dataset}/{method}/{phase}.pt",
    params:
        cfg=train_cfg,
        index=lambda w: phase_index(w.method, w.phase),
        # what the job starts from: the previous phase and/or a frozen prior (one param keeps the
        # shell command, and so Snakemake's code trigger, unchanged for the existing studies)
        init=lambda w, input: " ".join(([f"--init {input.init}"] if input.init else [])
                                       + ([f"--prior {input.prior}"] if input.prior else [])),
        data=lambda w: data_dir(w.dataset),
        ckpt=lambda w: f"resources/checkpoints/{w.dataset}/{w.method}",
    threads: TORCH_THREADS
    priority: train_priority
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
