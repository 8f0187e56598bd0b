# The ScoreVAE study (Table 1): the prior, the encoders and the baselines train through train_phase
# (the prior is its own method, so encoders never retrain it); here each Table 1 row is reconstructed
# from its phase's checkpoint by the conditional reverse SDE / PF ODE (or the VAE decoder) and scored.


use rule reconstruct as scorevae_reconstruct with:
    input:
        model=J.scorevae.scorevae_model,
        data=P.MANIFEST,
    output:
        recon="results/scorevae/recon/{dataset}/{method}/{phase}_{mode}.npz",
        grid="results/scorevae/recon/{dataset}/{method}/{phase}_{mode}.png",
    params:
        cfg=J.scorevae.scorevae_recon_cfg,
        data=lambda w: J.data.data_dir(w.dataset),
    log:
        "logs/scorevae/reconstruct/{dataset}/{method}/{phase}_{mode}.log",


use rule metrics as scorevae_metrics with:
    input:
        recon="results/scorevae/recon/{dataset}/{method}/{phase}_{mode}.npz",
        classifier=P.CLASSIFIER,
    output:
        "results/scorevae/metrics/{dataset}/{method}/{phase}_{mode}.json",
    params:
        cfg=J.evaluation.metrics_cfg,
        upstream=J.scorevae.scorevae_metrics_upstream,
    log:
        "logs/scorevae/metrics/{dataset}/{method}/{phase}_{mode}.log",


rule scorevae_prior:
    # Table 1's prior row: the frozen prior on its own (samples with the table's sampler, their FD, held-out eps MSE)
    input:
        model=J.scorevae.scorevae_prior_model,
        data=P.MANIFEST,
        classifier=P.CLASSIFIER,
    output:
        scores="results/scorevae/prior/{dataset}/{method}.json",
        grid="results/scorevae/prior/{dataset}/{method}.png",
    params:
        cfg=J.scorevae.scorevae_prior_cfg,
        upstream=J.scorevae.scorevae_prior_upstream,
        data=lambda w: J.data.data_dir(w.dataset),
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
    log:
        "logs/scorevae/prior/{dataset}/{method}.log",
    shell:
        "python -m daebench scorevae-prior --cfg {params.cfg:q} --model {input.model} --data {params.data}"
        " --classifier {input.classifier} --out {output.scores} --threads {threads} > {log} 2>&1"


rule scorevae_table:
    input:
        J.scorevae.scorevae_table_inputs,
    output:
        report("results/scorevae/table1.csv", caption="../report/scorevae_table.rst", category="ScoreVAE"),
    params:
        cfg=J.scorevae.scorevae_table_cfg,
        upstream=J.scorevae.scorevae_table_upstream,
    log:
        "logs/scorevae/table1.log",
    shell:
        "python -m daebench scorevae-table --cfg {params.cfg:q} --inputs {input} --out {output} > {log} 2>&1"


rule scorevae_grid:
    # originals over every Table 1 row's reconstructions of the same test images (for the report)
    input:
        J.scorevae.scorevae_recon_files,
    output:
        report("results/scorevae/recon_grid.png", caption="../report/scorevae_grid.rst", category="ScoreVAE"),
    params:
        labels=J.scorevae.scorevae_grid_labels,
    log:
        "logs/scorevae/recon_grid.log",
    shell:
        "python -m daebench scorevae-grid --inputs {input} --labels {params.labels} --out {output} > {log} 2>&1"


# Everything the study produces: its `all` target (the report shows the same, jobs.studies.study_outputs).
rule scorevae_all:
    input:
        J.scorevae.scorevae_outputs(),
