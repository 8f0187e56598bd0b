# Datasets -> uint8 arrays + P.MANIFEST; pretrained metric weights.

# Download and preprocessing are two jobs. Under a cluster executor (workflow/profiles/slurm) the download
# runs on the submit node (a local rule: compute nodes often have no network) and preprocessing, hours of
# CPU for a paper-scale set, is submitted like any other job; it reads only what the download fetched.
localrules:
    download_data,


rule download_data:
    output:
        f"{config['data']['download_dir']}/{{dataset}}/download.json",
    params:
        cfg=lambda w: J.as_json(J.data.download_slice(w.dataset)),
    log:
        "logs/download_data/{dataset}.log",
    shell:
        "python -m daebench download-data --cfg {params.cfg:q} --out {output} > {log} 2>&1"


rule prepare_data:
    input:
        J.data.download_record,
    output:
        manifest="resources/data/{dataset}/manifest.json",
        train="resources/data/{dataset}/train.npz",
        test="resources/data/{dataset}/test.npz",
    params:
        cfg=lambda w: J.as_json(J.data.prepare_slice(w.dataset)),
        out=lambda w: J.data.data_dir(w.dataset),
    log:
        "logs/prepare_data/{dataset}.log",
    shell:
        "python -m daebench prepare-data --cfg {params.cfg:q} --out {params.out} > {log} 2>&1"


rule fetch_weights:
    # Only where a network exists: `snakemake fetch_weights`. Metric jobs never download.
    output:
        directory(config["metrics"]["weights_dir"]),
    localrule: True
    log:
        "logs/fetch_weights.log",
    shell:
        "python -m daebench fetch-weights --dest {output} > {log} 2>&1"


rule data:
    # Target of the DVC `data` stage: the configured dataset, prepared.
    input:
        expand("resources/data/{dataset}/manifest.json", dataset=config["dataset"]),
    localrule: True
