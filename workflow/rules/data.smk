# Datasets -> uint8 arrays + manifest; MLflow experiment; pretrained metric weights.


rule prepare_data:
    output:
        manifest="resources/data/{dataset}/manifest.json",
        train="resources/data/{dataset}/train.npz",
        test="resources/data/{dataset}/test.npz",
    params:
        cfg=lambda w: as_json({"dataset": w.dataset, "data": config["data"]}),
        out=lambda w: data_dir(w.dataset),
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/prepare_data/{dataset}.log",
    benchmark:
        "logs/benchmarks/prepare_data/{dataset}.tsv"
    shell:
        "python -m daebench prepare-data --cfg {params.cfg:q} --out {params.out} > {log} 2>&1"


rule mlflow_setup:
    output:
        EXPERIMENT,
    params:
        experiment=config["mlflow"]["experiment"],
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/mlflow_setup.log",
    benchmark:
        "logs/benchmarks/mlflow_setup.tsv"
    shell:
        "python -m daebench mlflow-setup --experiment {params.experiment:q} --out {output} > {log} 2>&1"


rule fetch_weights:
    # Only where a network exists: `snakemake fetch_weights`. Metric jobs never download.
    output:
        directory(config["metrics"]["weights_dir"]),
    localrule: True
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/fetch_weights.log",
    benchmark:
        "logs/benchmarks/fetch_weights.tsv"
    shell:
        "python -m daebench fetch-weights --dest {output} > {log} 2>&1"
