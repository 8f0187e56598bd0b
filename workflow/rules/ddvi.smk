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
        cfg=lambda w: J.as_json(J.data.genotypes_slice(w.source)),
    log:
        "logs/ddvi/genotypes/{source}.log",
    shell:
        "python -m daebench prepare-genotypes --cfg {params.cfg:q} --out resources/data/genotypes/{wildcards.source}"
        " > {log} 2>&1"


rule ddvi_train:
    input:
        data=J.ddvi.ddvi_manifest,
    output:
        "resources/ddvi/{setting}/{prior}/{method}/seed{seed}.pt",
    params:
        cfg=J.ddvi.ddvi_train_cfg,
        data=J.ddvi.ddvi_data_dir,
        ckpt=lambda w: f"{P.CHECKPOINTS}/ddvi/{w.setting}/{w.prior}/{w.method}",
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
    log:
        "logs/ddvi/train/{setting}/{prior}/{method}/seed{seed}.log",
    shell:
        "python -m daebench ddvi-train --cfg {params.cfg:q} --name {wildcards.setting}/{wildcards.prior}/"
        "{wildcards.method}/seed{wildcards.seed} --data {params.data} --checkpoint-dir {params.ckpt}"
        " --out {output} --threads {threads} --no-progress > {log} 2>&1"


rule ddvi_evaluate:
    input:
        data=J.ddvi.ddvi_manifest,
        model="resources/ddvi/{setting}/{prior}/{method}/seed{seed}.pt",
    output:
        metrics="results/ddvi/runs/{setting}/{prior}/{method}/seed{seed}.json",
        arrays="results/ddvi/runs/{setting}/{prior}/{method}/seed{seed}.npz",
    params:
        cfg=J.ddvi.ddvi_eval_cfg,
        data=J.ddvi.ddvi_data_dir,
    threads: TORCH_THREADS
    log:
        "logs/ddvi/evaluate/{setting}/{prior}/{method}/seed{seed}.log",
    shell:
        "python -m daebench ddvi-evaluate --cfg {params.cfg:q} --method {wildcards.method}"
        " --name {wildcards.setting}/{wildcards.prior}/{wildcards.method}/seed{wildcards.seed}"
        " --model {input.model} --data {params.data} --out {output.metrics} --arrays {output.arrays}"
        " --threads {threads} > {log} 2>&1"


rule ddvi_table:
    input:
        J.ddvi.ddvi_table_runs,
    output:
        report("results/ddvi/{table}.csv", caption="../report/ddvi_table.rst", category="DDVI"),
    params:
        cfg=J.ddvi.ddvi_table_cfg,
    localrule: True
    log:
        "logs/ddvi/{table}.log",
    shell:
        "python -m daebench ddvi-table --cfg {params.cfg:q} --table {wildcards.table} --out {output}"
        " --inputs {input} > {log} 2>&1"


# Table 5 (App. C): the clustering runs at a ladder of budgets (and DDVI's T); scale 1 at a method's own T is
# Table 3's run. Each run's training time travels in its checkpoint and evaluation JSON.
rule ddvi_budget_train:
    input:
        data=J.ddvi_budget.budget_manifest,
    output:
        "resources/ddvi/budget/{run}/x{scale}/seed{seed}.pt",
    params:
        cfg=J.ddvi_budget.budget_train_cfg,
        data=J.ddvi_budget.budget_data_dir,
        ckpt=lambda w: f"{P.CHECKPOINTS}/ddvi/budget/{w.run}/x{w.scale}",
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
    log:
        "logs/ddvi/budget/train/{run}/x{scale}/seed{seed}.log",
    shell:
        "python -m daebench ddvi-train --cfg {params.cfg:q} --name budget/{wildcards.run}/x{wildcards.scale}/"
        "seed{wildcards.seed} --data {params.data} --checkpoint-dir {params.ckpt}"
        " --out {output} --threads {threads} --no-progress > {log} 2>&1"


rule ddvi_budget_evaluate:
    input:
        data=J.ddvi_budget.budget_manifest,
        model="resources/ddvi/budget/{run}/x{scale}/seed{seed}.pt",
    output:
        metrics="results/ddvi/budget/{run}/x{scale}/seed{seed}.json",
        arrays="results/ddvi/budget/{run}/x{scale}/seed{seed}.npz",
    params:
        cfg=J.ddvi_budget.budget_eval_cfg,
        data=J.ddvi_budget.budget_data_dir,
        method=J.ddvi_budget.budget_method,
    threads: TORCH_THREADS
    log:
        "logs/ddvi/budget/evaluate/{run}/x{scale}/seed{seed}.log",
    shell:
        "python -m daebench ddvi-evaluate --cfg {params.cfg:q} --method {params.method}"
        " --name budget/{wildcards.run}/x{wildcards.scale}/seed{wildcards.seed}"
        " --model {input.model} --data {params.data} --out {output.metrics} --arrays {output.arrays}"
        " --threads {threads} > {log} 2>&1"


ruleorder: ddvi_table5 > ddvi_table


rule ddvi_table5:
    input:
        unpack(J.ddvi_budget.table5_inputs),
    output:
        table=report("results/ddvi/table5.csv", caption="../report/ddvi_table.rst", category="DDVI"),
        figure=report("results/ddvi/table5.png", caption="../report/ddvi_table5.rst", category="DDVI"),
    params:
        cfg=J.ddvi_budget.table5_cfg,
    localrule: True
    log:
        "logs/ddvi/table5.log",
    shell:
        "python -m daebench ddvi-table5 --cfg {params.cfg:q} --runs {input.runs}"
        " --out {output.table} --figure {output.figure} > {log} 2>&1"


rule ddvi_latents:
    # The report's latent plots: the first seed's test codes, one panel per table row (and prior).
    input:
        J.ddvi.ddvi_latent_inputs,
    output:
        report("results/ddvi/latents_{setting}.png", caption="../report/ddvi_latents.rst", category="DDVI"),
    params:
        labels=J.ddvi.ddvi_latent_labels,
        title=J.ddvi.ddvi_latent_title,
    localrule: True
    log:
        "logs/ddvi/latents_{setting}.log",
    shell:
        "python -m daebench ddvi-latents --out {output} --inputs {input} --labels {params.labels}"
        " --title {params.title:q} > {log} 2>&1"


# Everything the study produces: its `all` target (the report shows the same, jobs.studies.study_outputs).
rule ddvi_all:
    input:
        J.ddvi.ddvi_outputs(),
    localrule: True
