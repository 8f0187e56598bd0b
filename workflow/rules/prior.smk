# Latent DDIM prior over a trained autoencoder's codes (DBAE §3.3.2, DiffAE §3.3): its own job,
# after the autoencoder, so refitting the prior never retrains the autoencoder.


rule train_prior:
    input:
        model=J.final_model,
        data=J.manifest,
    output:
        "resources/priors/{dataset}/{method}.pt",
    params:
        cfg=lambda w: J.as_json(J.prior_slice(w.dataset, w.method)),
        data=lambda w: J.data_dir(w.dataset),
        ckpt=lambda w: f"resources/checkpoints/{w.dataset}/{w.method}",
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/train_prior/{dataset}/{method}.log",
    benchmark:
        "logs/benchmarks/train_prior/{dataset}/{method}.tsv"
    shell:
        "python -m daebench train-prior --cfg {params.cfg:q} --method {wildcards.method} --model {input.model}"
        " --data {params.data} --checkpoint-dir {params.ckpt} --out {output} --threads {threads} > {log} 2>&1"
