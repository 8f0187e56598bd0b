# Reconstruction of the test split (stochastic / inversion) and its metrics.


rule reconstruct:
    input:
        model=J.training.final_model,
        data=P.MANIFEST,
    output:
        recon="results/recon/{dataset}/{method}/{mode}.npz",
        grid=report("results/recon/{dataset}/{method}/{mode}.png", caption="../report/recon.rst",
                    category="Two-phase DAE (Table 4)", subcategory="Reconstructions"),
    params:
        cfg=J.two_phase.reconstruct_cfg,
        data=lambda w: J.data.data_dir(w.dataset),
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
    log:
        "logs/reconstruct/{dataset}/{method}/{mode}.log",
    shell:
        "python -m daebench reconstruct --cfg {params.cfg:q} --method {wildcards.method} --mode {wildcards.mode}"
        " --model {input.model} --data {params.data} --out {output.recon}"
        " --threads {threads} > {log} 2>&1"


rule train_classifier:
    # Domain feature extractor: its features stand in for Inception/AlexNet where those are absent.
    input:
        P.MANIFEST,
    output:
        P.CLASSIFIER,
    params:
        cfg=lambda w: J.as_json(J.evaluation.classifier_slice(w.dataset)),
        data=lambda w: J.data.data_dir(w.dataset),
    threads: TORCH_THREADS
    log:
        "logs/train_classifier/{dataset}.log",
    shell:
        "python -m daebench train-classifier --cfg {params.cfg:q} --data {params.data} --out {output}"
        " --threads {threads} > {log} 2>&1"


rule metrics:
    input:
        recon="results/recon/{dataset}/{method}/{mode}.npz",
        classifier=P.CLASSIFIER,
    output:
        "results/metrics/{dataset}/{method}/{mode}.json",
    params:
        cfg=J.evaluation.metrics_cfg,
        upstream=J.two_phase.metrics_upstream_cfg,
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
    log:
        "logs/metrics/{dataset}/{method}/{mode}.log",
    shell:
        "python -m daebench metrics --cfg {params.cfg:q} --method {wildcards.method} --mode {wildcards.mode}"
        " --recon {input.recon} --classifier {input.classifier}"
        " --out {output} --threads {threads} > {log} 2>&1"
