# The DDVI study: one training and one evaluation job per (setting, prior, method, seed); tables average
# the seeds. Settings: unsup (Tables 1 and 8), semi (Table 2), cluster (Table 3, genotypes).


# Downloads (1000 Genomes source): on the submit node under a cluster executor.
localrules:
    ddvi_genotypes,


rule ddvi_genotypes:
    output:
        manifest="resources/data/genotypes/{source}/manifest.json",
        data="resources/data/genotypes/{source}/genotypes.npz",
    params:
        cfg=lambda w: J.as_json(J.genotypes_slice(w.source)),
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/ddvi/genotypes/{source}.log",
    benchmark:
        "logs/benchmarks/ddvi/genotypes/{source}.tsv"
    shell:
        "python -m daebench prepare-genotypes --cfg {params.cfg:q} --out resources/data/genotypes/{wildcards.source}"
        " > {log} 2>&1"


rule ddvi_train:
    input:
        data=J.ddvi_manifest,
    output:
        "resources/ddvi/{setting}/{prior}/{method}/seed{seed}.pt",
    params:
        cfg=J.ddvi_train_cfg,
        data=J.ddvi_data_dir,
        ckpt=lambda w: f"resources/checkpoints/ddvi/{w.setting}/{w.prior}/{w.method}",
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/ddvi/train/{setting}/{prior}/{method}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/ddvi/train/{setting}/{prior}/{method}/seed{seed}.tsv"
    shell:
        "python -m daebench ddvi-train --cfg {params.cfg:q} --name {wildcards.setting}/{wildcards.prior}/"
        "{wildcards.method}/seed{wildcards.seed} --data {params.data} --checkpoint-dir {params.ckpt}"
        " --out {output} --threads {threads} --no-progress > {log} 2>&1"


rule ddvi_evaluate:
    input:
        data=J.ddvi_manifest,
        model="resources/ddvi/{setting}/{prior}/{method}/seed{seed}.pt",
    output:
        metrics="results/ddvi/runs/{setting}/{prior}/{method}/seed{seed}.json",
        arrays="results/ddvi/runs/{setting}/{prior}/{method}/seed{seed}.npz",
    params:
        cfg=J.ddvi_eval_cfg,
        data=J.ddvi_data_dir,
    threads: TORCH_THREADS
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/ddvi/evaluate/{setting}/{prior}/{method}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/ddvi/evaluate/{setting}/{prior}/{method}/seed{seed}.tsv"
    shell:
        "python -m daebench ddvi-evaluate --cfg {params.cfg:q} --method {wildcards.method}"
        " --name {wildcards.setting}/{wildcards.prior}/{wildcards.method}/seed{wildcards.seed}"
        " --model {input.model} --data {params.data} --out {output.metrics} --arrays {output.arrays}"
        " --threads {threads} > {log} 2>&1"


rule ddvi_table:
    input:
        J.ddvi_table_runs,
    output:
        report("results/ddvi/{table}.csv", caption="../report/ddvi_table.rst", category="DDVI"),
    params:
        cfg=J.ddvi_table_cfg,
    localrule: True
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/ddvi/{table}.log",
    benchmark:
        "logs/benchmarks/ddvi/{table}.tsv"
    shell:
        "python -m daebench ddvi-table --cfg {params.cfg:q} --table {wildcards.table} --out {output}"
        " --inputs {input} > {log} 2>&1"


rule ddvi_latents:
    # The report's latent plots: the first seed's test codes, one panel per table row (and prior).
    input:
        J.ddvi_latent_inputs,
    output:
        report("results/ddvi/latents_{setting}.png", caption="../report/ddvi_latents.rst", category="DDVI"),
    params:
        labels=J.ddvi_latent_labels,
        title=J.ddvi_latent_title,
    localrule: True
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/ddvi/latents_{setting}.log",
    benchmark:
        "logs/benchmarks/ddvi/latents_{setting}.tsv"
    shell:
        "python -m daebench ddvi-latents --out {output} --inputs {input} --labels {params.labels}"
        " --title {params.title:q} > {log} 2>&1"


# Everything the study produces: its `all` target (the report shows the same, jobs.studies.study_outputs).
rule ddvi_all:
    input:
        J.ddvi_outputs(),
    localrule: True
