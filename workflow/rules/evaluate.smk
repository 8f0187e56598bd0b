# Reconstruction of the test split (stochastic / inversion) and its metrics.


rule reconstruct:
    input:
        model=J.final_model,
        data=J.manifest,
    output:
        recon="results/recon/{dataset}/{method}/{mode}.npz",
        grid=report("results/recon/{dataset}/{method}/{mode}.png", caption="../report/recon.rst",
                    category="Two-phase DAE (Table 4)", subcategory="Reconstructions"),
    params:
        cfg=J.reconstruct_cfg,
        data=lambda w: J.data_dir(w.dataset),
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
        " --model {input.model} --data {params.data} --out {output.recon}"
        " --threads {threads} > {log} 2>&1"


rule train_classifier:
    # Domain feature extractor: its features stand in for Inception/AlexNet where those are absent.
    input:
        J.manifest,
    output:
        "resources/models/{dataset}/feature_classifier.pt",
    params:
        cfg=lambda w: J.as_json(J.classifier_slice(w.dataset)),
        data=lambda w: J.data_dir(w.dataset),
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
    output:
        "results/metrics/{dataset}/{method}/{mode}.json",
    params:
        cfg=J.metrics_cfg,
        upstream=J.metrics_upstream_cfg,
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
        " --recon {input.recon} --classifier {input.classifier}"
        " --out {output} --threads {threads} > {log} 2>&1"
