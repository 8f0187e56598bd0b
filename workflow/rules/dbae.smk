# The DBAE study: reconstruction over NFE (Tables 2, 9), generation from the latent prior and from
# encoded codes (Table 4), linear probe (Table 1), TAD/ATTRS (Table 3), inference cost (Table 5).
# The DiffAE comparator is the spine's DAE (dbae.dae), run through the same rules.


use rule reconstruct as dbae_reconstruct with:
    output:
        recon="results/dbae/recon/{dataset}/{method}/{mode}_nfe{nfe}.npz",
        grid="results/dbae/recon/{dataset}/{method}/{mode}_nfe{nfe}.png",
    params:
        cfg=J.dbae.dbae_recon_cfg,
        data=lambda w: J.data.data_dir(w.dataset),
    log:
        "logs/dbae/reconstruct/{dataset}/{method}/{mode}_nfe{nfe}.log",


use rule metrics as dbae_recon_metrics with:
    input:
        recon="results/dbae/recon/{dataset}/{method}/{mode}_nfe{nfe}.npz",
        classifier=P.CLASSIFIER,
    output:
        "results/dbae/metrics/{dataset}/{method}/{mode}_nfe{nfe}.json",
    params:
        cfg=J.evaluation.metrics_cfg,
        upstream=J.dbae.dbae_metrics_upstream,
    log:
        "logs/dbae/metrics/{dataset}/{method}/{mode}_nfe{nfe}.log",


rule generate:
    input:
        model=J.training.final_model,
        data=P.MANIFEST,
        prior=J.dbae.generation_prior,
    output:
        samples="results/dbae/gen/{dataset}/{method}/{source}.npz",
        grid="results/dbae/gen/{dataset}/{method}/{source}.png",
    params:
        cfg=J.dbae.generation_cfg,
        data=lambda w: J.data.data_dir(w.dataset),
        prior=lambda w, input: f"--prior {input.prior}" if input.prior else "",
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
    log:
        "logs/dbae/generate/{dataset}/{method}/{source}.log",
    shell:
        "python -m daebench generate --cfg {params.cfg:q} --method {wildcards.method} --source {wildcards.source}"
        " --model {input.model} {params.prior} --data {params.data} --out {output.samples}"
        " --threads {threads} > {log} 2>&1"


rule gen_metrics:
    input:
        samples="results/dbae/gen/{dataset}/{method}/{source}.npz",
        classifier=P.CLASSIFIER,
        data=P.MANIFEST,
    output:
        "results/dbae/gen_metrics/{dataset}/{method}/{source}.json",
    params:
        cfg=J.dbae.gen_metrics_cfg,
        upstream=J.dbae.gen_metrics_upstream,
        data=lambda w: J.data.data_dir(w.dataset),
    threads: TORCH_THREADS
    log:
        "logs/dbae/gen_metrics/{dataset}/{method}/{source}.log",
    shell:
        "python -m daebench gen-metrics --cfg {params.cfg:q} --method {wildcards.method} --samples {input.samples}"
        " --classifier {input.classifier} --data {params.data} --out {output} --threads {threads} > {log} 2>&1"


rule probe:
    input:
        model=J.training.final_model,
        data=P.MANIFEST,
    output:
        "results/dbae/probe/{dataset}/{method}.json",
    params:
        cfg=J.dbae.probe_cfg,
        data=lambda w: J.data.data_dir(w.dataset),
    threads: TORCH_THREADS
    log:
        "logs/dbae/probe/{dataset}/{method}.log",
    shell:
        "python -m daebench probe --cfg {params.cfg:q} --method {wildcards.method} --model {input.model}"
        " --data {params.data} --out {output} --threads {threads} > {log} 2>&1"


rule disentangle:
    input:
        model=J.training.final_model,
        data=P.MANIFEST,
    output:
        "results/dbae/disentangle/{dataset}/{method}.json",
    params:
        cfg=J.dbae.disentangle_cfg,
        data=lambda w: J.data.data_dir(w.dataset),
    threads: TORCH_THREADS
    log:
        "logs/dbae/disentangle/{dataset}/{method}.log",
    shell:
        "python -m daebench disentangle --cfg {params.cfg:q} --method {wildcards.method} --model {input.model}"
        " --data {params.data} --out {output} --threads {threads} > {log} 2>&1"


rule inference_cost:
    # A timing job: it claims every core so no other job runs beside it and skews the times;
    # torch still uses TORCH_THREADS, like the jobs being timed.
    input:
        model=J.training.final_model,
        data=P.MANIFEST,
    output:
        "results/dbae/cost/{dataset}/{method}.json",
    params:
        cfg=J.dbae.cost_cfg,
        data=lambda w: J.data.data_dir(w.dataset),
        torch_threads=TORCH_THREADS,
    threads: workflow.cores
    resources:
        gpu=GPU,
    log:
        "logs/dbae/cost/{dataset}/{method}.log",
    shell:
        "python -m daebench inference-cost --cfg {params.cfg:q} --method {wildcards.method} --model {input.model}"
        " --data {params.data} --out {output} --threads {params.torch_threads} > {log} 2>&1"


# Table 11: Table 4's generation at other decoder NFE (the column at generation.nfe is Table 4's own files).
use rule generate as generate_at_nfe with:
    output:
        samples="results/dbae/gen/{dataset}/{method}/{source}_nfe{nfe}.npz",
        grid="results/dbae/gen/{dataset}/{method}/{source}_nfe{nfe}.png",
    params:
        cfg=J.dbae.generation_nfe_cfg,
        data=lambda w: J.data.data_dir(w.dataset),
        prior=lambda w, input: f"--prior {input.prior}" if input.prior else "",
    log:
        "logs/dbae/generate/{dataset}/{method}/{source}_nfe{nfe}.log",


use rule gen_metrics as gen_metrics_at_nfe with:
    input:
        samples="results/dbae/gen/{dataset}/{method}/{source}_nfe{nfe}.npz",
        classifier=P.CLASSIFIER,
        data=P.MANIFEST,
    output:
        "results/dbae/gen_metrics/{dataset}/{method}/{source}_nfe{nfe}.json",
    log:
        "logs/dbae/gen_metrics/{dataset}/{method}/{source}_nfe{nfe}.log",


rule dbae_table:
    input:
        J.dbae.dbae_table_inputs,
    output:
        report("results/dbae/{table}.csv", caption="../report/dbae_table.rst", category="DBAE"),
    params:
        cfg=J.dbae.dbae_table_cfg,
        upstream=J.dbae.dbae_table_upstream,
    log:
        "logs/tables/dbae_{table}.log",
    shell:
        "python -m daebench dbae-table --table {wildcards.table} --cfg {params.cfg:q} --inputs {input}"
        " --out {output} > {log} 2>&1"


rule dbae_nfe_curve:
    # Table 9 as one line per method and mode over NFE, for `dvc plots show` (DVC stage dbae)
    input:
        J.dbae.nfe_curve_inputs,
    output:
        "results/dbae/nfe_curve.csv",
    localrule: True
    log:
        "logs/dbae/nfe_curve.log",
    shell:
        "python -m daebench dbae-nfe-curve --inputs {input} --out {output} > {log} 2>&1"


# Everything the study produces: its `all` target (the report shows the same, jobs.studies.study_outputs).
rule dbae_all:
    input:
        J.dbae.dbae_outputs(),
