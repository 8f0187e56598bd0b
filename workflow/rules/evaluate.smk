# Reconstruction of the test split (stochastic / inversion) and its metrics.


rule reconstruct:
    input:
        model=final_model,
        data="resources/data/{dataset}/manifest.json",
        experiment=ancient(EXPERIMENT),
    output:
        recon="results/recon/{dataset}/{method}/{mode}.npz",
        grid="results/recon/{dataset}/{method}/{mode}.png",
    params:
        cfg=reconstruct_cfg,
        data=lambda w: data_dir(w.dataset),
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/reconstruct/{dataset}/{method}/{mode}.log",
    benchmark:
        "logs/benchmarks/reconstruct/{dataset}/{method}/{mode}.tsv"
    shell:
        "python -m daebench reconstruct --cfg {params.cfg:q} --method {wildcards.method} --mode {wildcards.mode}"
        " --model {input.model} --data {params.data} --experiment {input.experiment} --out {output.recon}"
        " --threads {threads} > {log} 2>&1"


rule train_classifier:
    # Domain feature extractor: its features stand in for Inception/AlexNet where those are absent.
    input:
        "resources/data/{dataset}/manifest.json",
    output:
        "resources/models/{dataset}/feature_classifier.pt",
    params:
        cfg=lambda w: as_json({"classifier": config["metrics"]["classifier"]}),
        data=lambda w: data_dir(w.dataset),
    threads: TORCH_THREADS
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/train_classifier/{dataset}.log",
    benchmark:
        "logs/benchmarks/train_classifier/{dataset}.tsv"
    shell:
        "python -m daebench train-classifier --cfg {params.cfg:q} --data {params.data} --out {output}"
        " --threads {threads} > {log} 2>&1"


rule metrics:
    input:
        recon="results/recon/{dataset}/{method}/{mode}.npz",
        classifier="resources/models/{dataset}/feature_classifier.pt",
        experiment=ancient(EXPERIMENT),
    output:
        "results/metrics/{dataset}/{method}/{mode}.json",
    params:
        cfg=lambda w: as_json({"dataset": w.dataset, "weights_dir": config["metrics"]["weights_dir"],
                               "weights": weights_state()}),
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/metrics/{dataset}/{method}/{mode}.log",
    benchmark:
        "logs/benchmarks/metrics/{dataset}/{method}/{mode}.tsv"
    shell:
        "python -m daebench metrics --cfg {params.cfg:q} --method {wildcards.method} --mode {wildcards.mode}"
        " --recon {input.recon} --classifier {input.classifier} --experiment {input.experiment}"
        " --out {output} --threads {threads} > {log} 2>&1"
