# The ScoreVAE study (Table 1): the prior, the encoders and the baselines train through train_phase
# (the prior is its own method, so encoders never retrain it); here each Table 1 row is reconstructed
# from its phase's checkpoint by the conditional reverse SDE / PF ODE (or the VAE decoder) and scored.


rule scorevae_reconstruct:
    input:
        model=J.scorevae_model,
        data=J.manifest,
    output:
        recon="results/scorevae/recon/{dataset}/{method}/{phase}_{mode}.npz",
        grid="results/scorevae/recon/{dataset}/{method}/{phase}_{mode}.png",
    params:
        cfg=J.scorevae_recon_cfg,
        data=lambda w: J.data_dir(w.dataset),
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/scorevae/reconstruct/{dataset}/{method}/{phase}_{mode}.log",
    benchmark:
        "logs/benchmarks/scorevae/reconstruct/{dataset}/{method}/{phase}_{mode}.tsv"
    shell:
        "python -m daebench reconstruct --cfg {params.cfg:q} --method {wildcards.method} --mode {wildcards.mode}"
        " --model {input.model} --data {params.data} --out {output.recon} --threads {threads} > {log} 2>&1"


rule scorevae_metrics:
    input:
        recon="results/scorevae/recon/{dataset}/{method}/{phase}_{mode}.npz",
        classifier="resources/models/{dataset}/feature_classifier.pt",
    output:
        "results/scorevae/metrics/{dataset}/{method}/{phase}_{mode}.json",
    params:
        cfg=J.metrics_cfg,
        upstream=J.scorevae_metrics_upstream,
    threads: TORCH_THREADS
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/scorevae/metrics/{dataset}/{method}/{phase}_{mode}.log",
    benchmark:
        "logs/benchmarks/scorevae/metrics/{dataset}/{method}/{phase}_{mode}.tsv"
    shell:
        "python -m daebench metrics --cfg {params.cfg:q} --method {wildcards.method} --mode {wildcards.mode}"
        " --recon {input.recon} --classifier {input.classifier} --out {output} --threads {threads} > {log} 2>&1"


rule scorevae_table:
    input:
        J.scorevae_table_inputs,
    output:
        report("results/scorevae/table1.csv", caption="../report/scorevae_table.rst", category="ScoreVAE"),
    params:
        cfg=J.scorevae_table_cfg,
        upstream=J.scorevae_table_upstream,
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/scorevae/table1.log",
    benchmark:
        "logs/benchmarks/scorevae/table1.tsv"
    shell:
        "python -m daebench scorevae-table --cfg {params.cfg:q} --inputs {input} --out {output} > {log} 2>&1"


rule scorevae_grid:
    # originals over every Table 1 row's reconstructions of the same test images (for the report)
    input:
        J.scorevae_recon_files,
    output:
        report("results/scorevae/recon_grid.png", caption="../report/scorevae_grid.rst", category="ScoreVAE"),
    params:
        labels=J.scorevae_grid_labels,
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/scorevae/recon_grid.log",
    benchmark:
        "logs/benchmarks/scorevae/recon_grid.tsv"
    shell:
        "python -m daebench scorevae-grid --inputs {input} --labels {params.labels} --out {output} > {log} 2>&1"


# Everything the study produces: its `all` target (the report shows the same, jobs.studies.study_outputs).
rule scorevae_all:
    input:
        J.scorevae_outputs(),
