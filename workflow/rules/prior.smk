# Latent DDIM prior over a trained autoencoder's codes (DBAE §3.3.2, DiffAE §3.3): its own job,
# after the autoencoder, so refitting the prior never retrains the autoencoder.


rule train_prior:
    input:
        model=J.training.final_model,
        data=P.MANIFEST,
    output:
        P.PRIOR,
    params:
        cfg=lambda w: J.as_json(J.dbae.prior_slice(w.dataset, w.method)),
        data=lambda w: J.data.data_dir(w.dataset),
        ckpt=lambda w: f"{P.CHECKPOINTS}/{w.dataset}/{w.method}",
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
    log:
        "logs/train_prior/{dataset}/{method}.log",
    shell:
        "python -m daebench train-prior --cfg {params.cfg:q} --method {wildcards.method} --model {input.model}"
        " --data {params.data} --checkpoint-dir {params.ckpt} --out {output} --threads {threads} > {log} 2>&1"
