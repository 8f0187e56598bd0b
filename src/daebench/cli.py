"""Command line: every Snakemake rule calls one of these commands (`python -m daebench <cmd>`).

Job configuration arrives as a JSON slice (`--cfg`), exactly the part of params.yaml the job
depends on, so that Snakemake's params trigger reruns precisely."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

log = logging.getLogger("daebench")


def _threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(max(1, min(n, os.cpu_count() or 1)))


def _save_npz(out: Path, **arrays) -> None:
    import numpy as np

    from .data.store import atomic_path

    with atomic_path(out) as tmp:
        np.savez(tmp, **arrays)


def _write_json(out: Path, obj: dict) -> None:
    from .data.store import atomic_path

    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def cmd_download_data(a) -> None:
    from .data import download

    cfg = json.loads(a.cfg)
    d = cfg["data"]
    records = download(cfg["dataset"], download_dir=d["download_dir"], base_url=d["base_url"], path=cfg.get("path"),
                       progress=not a.no_progress)
    # The records (url, checksum of each file) are the job's output: the preprocessing job depends on it.
    _write_json(Path(a.out), {"dataset": cfg["dataset"], "files": records})
    log.info("downloaded %s: %s", cfg["dataset"], sorted(records))


def cmd_prepare_data(a) -> None:
    from .data import prepare

    cfg = json.loads(a.cfg)
    d = cfg["data"]
    # No network here: the workflow may run this on a compute node; download-data ran first where needed.
    manifest = prepare(cfg["dataset"], a.out, download_dir=d["download_dir"], seed=d["seed"],
                       test_fraction=d["test_fraction"], base_url=d["base_url"], max_train=d["max_train"],
                       max_test=d["max_test"], path=cfg.get("path"), download=False, progress=not a.no_progress)
    log.info("prepared %s: %s", cfg["dataset"], manifest["counts"])


def _compute_settings(device_name: str) -> dict:
    """compute.* for this job (DAEBENCH_COMPUTE), and what it uses on its device, for the run's params."""
    from . import compute
    from .train import resolve_device

    settings = compute.from_env()
    return {"settings": settings, "effective": compute.effective(settings, resolve_device(device_name))}


def cmd_train(a) -> None:
    import contextlib

    import torch

    from . import compute
    from .data import UInt8Images, load_split, read_manifest
    from .methods import get_family
    from .tracking import NullRun, start_run
    from .train import load_checkpoint, num_params, phase_steps, train_phase

    _threads(a.threads)
    cfg = json.loads(a.cfg)
    method, i = cfg["method"], a.phase_index
    phases = method["phases"]
    phase = phases[i]
    manifest = read_manifest(a.data)
    cfg["data_shape"] = manifest["image_shape"]
    # uint8 and memory-mapped: each batch's rows are read from the file and become float on the training
    # device, instead of the whole set held as float32 in host memory (4x its size on disk).
    images, _ = load_split(a.data, "train", mmap=True)
    x = UInt8Images(images)
    fam = get_family(method["family"])
    h, _, c = cfg["data_shape"]
    torch.manual_seed(cfg["train"]["seed"])  # initial weights are part of what the seed fixes
    model = fam.build(cfg, c, h)
    steps, offset = phase_steps(cfg["train"], phases, i, method.get("examples"))
    init = load_checkpoint(Path(a.init)) if a.init else None
    if "prior" in method and i == 0 and not a.prior:
        raise SystemExit(f"method {a.method} builds on the frozen prior {method['prior']!r}: pass its checkpoint "
                         "with --prior (Snakemake does this for you)")
    if a.prior:  # a pretrained network this method builds on (ScoreVAE's unconditional diffusion model)
        fam.load_prior(model, load_checkpoint(Path(a.prior)))
    out = Path(a.out)
    ckpt_path = Path(a.checkpoint_dir) / f"{out.stem}.resume.pt"
    run_id = None
    if ckpt_path.exists():  # continue the MLflow run of the interrupted attempt
        run_id = load_checkpoint(ckpt_path).get("mlflow_run_id") or None
    name = f"{a.method}/{phase['name']}"
    comp = _compute_settings(cfg["train"]["device"])
    # Under torchrun only rank 0 logs the job (and writes its files, see train_phase).
    main = compute.dist_info().is_main
    with start_run(name=name, rule="train", dataset=cfg["dataset"], params=cfg, run_id=run_id) if main \
            else contextlib.nullcontext(NullRun()) as run:
        if run_id is None:
            run.log_params({"compute": comp["effective"]})
        run.log_metrics({**{f"params/{n}": num_params(m) for n, m in model.named_children()},
                         "phase/steps": steps})
        def logger(metrics, step):
            run.log_metrics(metrics, step)

        t0 = time.time()
        final = train_phase(model, fam.phase_loss(method, phase), x, steps=steps, phase_index=i,
                            train_cfg=cfg["train"], ckpt_path=ckpt_path, out_path=out, config=cfg, init=init,
                            logger=logger, step_offset=offset, progress=not a.no_progress,
                            extra={"mlflow_run_id": run.run_id}, compute=comp["settings"])
        run.log_metrics({"train/seconds": time.time() - t0, "train/final_step": final["step"]})
        run.log_checkpoint(out, f"{cfg['dataset']}-{a.method}-{phase['name']}")
    log.info("trained %s for %d steps -> %s (MLflow run %s)", name, steps, out, run.run_id)


def eval_settings(ev: dict) -> tuple[int, dict]:
    """(NFE budget, sampler options) of an eval slice: Table 4 slices name DDIM steps and clip_x0
    directly, the DBAE study's carry ``nfe`` and a ``sampler`` block."""
    if "ddim_steps" in ev:
        return ev["ddim_steps"], {"clip_x0": ev["clip_x0"]}
    return ev["nfe"], ev["sampler"]


def cmd_reconstruct(a) -> None:
    from .evaluate.reconstruction import reconstruct_split, save_grid
    from .tracking import start_run
    from .train import load_checkpoint, resolve_device

    _threads(a.threads)
    cfg = json.loads(a.cfg)
    ev = cfg["eval"]
    nfe, sampler = eval_settings(ev)
    ckpt = load_checkpoint(Path(a.model))
    with start_run(name=f"{a.method}/reconstruct-{a.mode}-nfe{nfe}", rule="reconstruct",
                   dataset=cfg["dataset"], params=cfg) as run:
        res = reconstruct_split(ckpt, Path(a.data), cfg["method"], a.mode, nfe=nfe, sampler=sampler,
                                n_images=ev["n_images"], batch_size=ev["batch_size"], seed=ev["seed"],
                                device=resolve_device(cfg.get("device", "auto")), progress=not a.no_progress)
        out = Path(a.out)
        _save_npz(out, original=res["original"], recon=res["recon"], labels=res["labels"],
                  meta=json.dumps({"seconds": res["seconds"], "nfe": res["nfe"], "mode": a.mode, **res["cost"],
                                   "sampler": sampler, "ddim_steps": nfe, "n_params": res["n_params"],
                                   "mlflow_run_id": run.run_id}))
        grid = out.with_suffix(".png")
        save_grid(grid, [res["original"], res["recon"]])
        run.log_metrics({"seconds": res["seconds"], "nfe": res["nfe"],
                         "images_per_s": len(res["recon"]) / max(res["seconds"], 1e-9)})
        run.log_artifact(grid)
    log.info("reconstructed %d images (%s, %d NFE) in %.1fs -> %s", len(res["recon"]), a.mode, res["nfe"],
             res["seconds"], out)


def cmd_train_classifier(a) -> None:
    from .data import load_split
    from .evaluate.features import save_classifier, train_classifier

    _threads(a.threads)
    cfg = json.loads(a.cfg)
    c = cfg["classifier"]
    xtr, ytr = load_split(a.data, "train", mmap=True)  # batches converted one by one (paper-scale sets)
    xte, yte = load_split(a.data, "test")
    model, info = train_classifier(xtr, ytr, steps=c["steps"], batch_size=c["batch_size"], lr=c["lr"],
                                   seed=c["seed"], test_images=xte, test_labels=yte)
    save_classifier(Path(a.out), model, info)
    log.info("feature classifier: %s", info)


def cmd_metrics(a) -> None:
    from .evaluate.scoring import score_reconstructions
    from .tracking import start_run

    _threads(a.threads)
    cfg = json.loads(a.cfg)
    with start_run(name=f"{a.method}/metrics-{a.mode}", rule="metrics",
                   dataset=cfg["dataset"], params=cfg) as run:
        result = score_reconstructions(Path(a.recon), Path(a.classifier), Path(cfg["weights_dir"]))
        run.log_metrics({k: v for k, v in result["metrics"].items() if v is not None})
        result.update(method=a.method, mode=a.mode, mlflow_run_id=run.run_id)
    _write_json(Path(a.out), result)
    log.info("%s %s: %s", a.method, a.mode, result["metrics"])


def cmd_table4(a) -> None:
    from .tables import write_table4

    cfg = json.loads(a.cfg)
    df = write_table4(cfg, [Path(p) for p in a.inputs], Path(a.out))
    log.info("wrote %s (%d rows)\n%s", a.out, len(df), df.to_string(index=False))


def cmd_scorevae_table(a) -> None:
    from .tables import write_scorevae_table1

    cfg = json.loads(a.cfg)
    df = write_scorevae_table1(cfg, [Path(p) for p in a.inputs], Path(a.out))
    log.info("wrote %s (%d rows)\n%s", a.out, len(df), df.to_string(index=False))


def cmd_scorevae_grid(a) -> None:
    import numpy as np

    from .data.store import atomic_path
    from .report import recon_rows_figure

    if len(a.labels) != len(a.inputs):
        raise SystemExit(f"scorevae-grid: {len(a.inputs)} inputs but {len(a.labels)} labels")
    recons, original = [], None
    for path in a.inputs:
        with np.load(path) as f:
            original = f["original"] if original is None else original
            recons.append(f["recon"])
    fig = recon_rows_figure(original, recons, a.labels, n=a.n)
    out = Path(a.out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    log.info("wrote %s (%d rows)", out, len(recons) + 1)


def cmd_fetch_weights(a) -> None:
    from .evaluate.weights import fetch_weights

    fetch_weights(Path(a.dest), a.names or None)


def cmd_validate(a) -> None:
    from .config import load

    load(a.params, a.schema)
    print(f"{a.params}: valid")


def _pairs(items: list[str], flag: str, example: str) -> list[tuple[str, str]]:
    """``key=value`` command-line items -> pairs; anything else is an error naming the flag."""
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"{flag} takes {example} pairs; got {item!r}")
        out.append((key, value))
    return out


def cmd_claims(a) -> None:
    from .claims import summary, write_study_claims

    tables = {name: Path(path) for name, path in _pairs(a.tables, "--tables", "name=path (table4=results/table4.csv)")}
    df = write_study_claims(a.study, tables, json.loads(a.cfg), Path(a.out))
    log.info("wrote %s: %s", a.out, summary(df))


def cmd_claims_all(a) -> None:
    from .claims import combine, summary

    df = combine([Path(p) for p in a.inputs], Path(a.out))
    log.info("wrote %s (%s): %s", a.out, ", ".join(df["study"].unique()), summary(df))


def cmd_emergence_point(a) -> None:
    from .emergence import run_point

    run_point(json.loads(a.cfg), a.study, float(a.scale), Path(a.workdir), root=Path(a.root), cores=a.cores,
              snakefile=Path(a.snakefile))


def cmd_emergence(a) -> None:
    from .emergence import write

    points = [(float(scale), Path(workdir)) for scale, workdir in _pairs(a.points, "--points", "scale=workdir")]
    df = write(json.loads(a.cfg), a.study, points, Path(a.out), Path(a.figure))
    held = df.drop_duplicates(["claim_id", "scale", "dataset"]).pivot_table(
        index="claim_id", columns="scale", values="verdict", aggfunc="first")
    log.info("wrote %s and %s; verdicts by budget:\n%s", a.out, a.figure, held.to_string())


def cmd_report(a) -> None:
    from papermill.exceptions import PapermillExecutionError

    from .report import render_report
    from .tracking import experiment_name, tracking_uri

    params = json.loads(a.params_json)
    # The MLflow store and experiment reach jobs through the environment (not Snakemake params).
    params.setdefault("mlflow_uri", tracking_uri())
    params.setdefault("experiment", experiment_name())
    try:
        render_report(a.notebook, a.executed, a.out_html, params, cwd=a.cwd)
    except PapermillExecutionError as err:
        raise SystemExit(f"report notebook {a.notebook} failed in cell {err.exec_count}: {err.ename}: "
                         f"{err.evalue}\nthe executed notebook with the traceback is at {a.executed}") from None
    log.info("wrote %s (executed notebook: %s)", a.out_html, a.executed)


def cmd_train_prior(a) -> None:
    import torch

    from .data import load_split
    from .evaluate.latents import encode_split
    from .evaluate.reconstruction import load_model
    from .methods import latent_prior
    from .tracking import start_run
    from .train import load_checkpoint, resolve_device, train_phase

    _threads(a.threads)
    cfg = json.loads(a.cfg)
    p = cfg["prior"]
    device = resolve_device(cfg["device"])
    model, _, fam = load_model(load_checkpoint(Path(a.model)))
    images, _ = load_split(a.data, "train", mmap=True)  # encoded batch by batch
    z = torch.from_numpy(encode_split(model.to(device), fam, images, device))
    pcfg = {"prior": p, "z_dim": int(z.shape[1]), "source": cfg}
    torch.manual_seed(p["seed"])
    prior = latent_prior.build(pcfg)
    prior.fit_standardisation(z)
    u = prior.standardise(z)
    steps = max(1, p["examples"] // p["batch_size"])
    train_cfg = {"batch_size": p["batch_size"], "lr": p["lr"], "warmup_examples": 0, "ema_decay": p["ema_decay"],
                 "checkpoint_every": p["checkpoint_every"], "log_every": p["log_every"], "seed": p["seed"],
                 "device": cfg["device"]}
    out = Path(a.out)
    ckpt_path = Path(a.checkpoint_dir) / f"{out.stem}.prior.resume.pt"
    comp = _compute_settings(cfg["device"])
    with start_run(name=f"{a.method}/prior", rule="train_prior", dataset=cfg["dataset"], params=pcfg) as run:
        run.log_params({"compute": comp["effective"]})
        run.log_metrics({"params/prior": sum(q.numel() for q in prior.parameters()), "phase/steps": steps})
        train_phase(prior, latent_prior.loss(), u, steps=steps, phase_index=0, train_cfg=train_cfg,
                    ckpt_path=ckpt_path, out_path=out, config=pcfg, logger=run.log_metrics,
                    progress=not a.no_progress, extra={"mlflow_run_id": run.run_id}, compute=comp["settings"])
        run.log_checkpoint(out, f"{cfg['dataset']}-{a.method}-prior")
    log.info("latent prior for %s: %d codes of dim %d, %d steps -> %s", a.method, len(z), z.shape[1], steps, out)


def cmd_generate(a) -> None:
    from .evaluate.latents import generate
    from .evaluate.reconstruction import save_grid
    from .tracking import start_run
    from .train import load_checkpoint, resolve_device

    _threads(a.threads)
    cfg = json.loads(a.cfg)
    g = cfg["generation"]
    with start_run(name=f"{a.method}/generate-{a.source}", rule="generate", dataset=cfg["dataset"],
                   params=cfg) as run:
        res = generate(load_checkpoint(Path(a.model)), Path(a.data), cfg["method"], a.source, n=g["n_samples"],
                       nfe=g["nfe"], sampler=cfg["sampler"],
                       prior_ckpt=load_checkpoint(Path(a.prior)) if a.prior else None, prior_steps=g["prior_steps"],
                       seed=g["seed"], batch_size=g["batch_size"], device=resolve_device(cfg["device"]),
                       progress=not a.no_progress)
        out = Path(a.out)
        _save_npz(out, samples=res["samples"], z=res["z"],
                  meta=json.dumps({"seconds": res["seconds"], "source": a.source, "nfe": g["nfe"],
                                   "mlflow_run_id": run.run_id}))
        save_grid(out.with_suffix(".png"), [res["samples"][i * 12:(i + 1) * 12] for i in range(4)])
        run.log_metrics({"seconds": res["seconds"]})
        run.log_artifact(out.with_suffix(".png"))
    log.info("generated %d samples (%s) in %.1fs -> %s", len(res["samples"]), a.source, res["seconds"], out)


def cmd_gen_metrics(a) -> None:
    import numpy as np
    import torch

    from .data import load_split, to_tensor
    from .evaluate import features, weights
    from .evaluate.generation import inception_score, precision_recall
    from .tracking import start_run

    _threads(a.threads)
    cfg = json.loads(a.cfg)
    with np.load(a.samples) as f:
        fake = torch.from_numpy(f["samples"])
        meta = json.loads(str(f["meta"]))
    train, _ = load_split(a.data, "train")
    # reference: a fixed random subset of the train split, as many images as samples
    idx = np.random.default_rng(cfg["ref_seed"]).permutation(len(train))[:len(fake)]
    real = to_tensor(train[np.sort(idx)])
    clf = features.load_classifier(a.classifier)
    fr, ff = features.domain_features(clf, real), features.domain_features(clf, fake)
    prec, rec = precision_recall(fr, ff, k=cfg["pr_k"])
    with torch.no_grad():
        logits = clf(fake.clamp(-1, 1))
    out = {"precision_domain": prec, "recall_domain": rec, "is_domain": inception_score(logits),
           "fd_domain": float(features.frechet_distance_domain(real, fake, clf))}
    wd = Path(cfg["weights_dir"])
    notes = {}
    if weights.available(wd).get("inception_tf"):
        out["fid_tf"], _ = features.fid_tf(real, fake, wd)
    else:
        notes["fid_tf"] = weights.missing_message(wd, ["inception_tf"])
    result = {"metrics": out, "n_samples": len(fake), "n_reference": len(real), "source": meta["source"],
              "nfe": meta["nfe"], "generate_seconds": meta["seconds"], "not_computed": notes,
              "protocol": features.protocol_info(wd)}
    with start_run(name=f"{a.method}/gen-metrics-{meta['source']}", rule="gen_metrics", dataset=cfg["dataset"],
                   params=cfg) as run:
        run.log_metrics(out)
        result.update(method=a.method, mlflow_run_id=run.run_id)
    _write_json(Path(a.out), result)
    log.info("%s %s: %s", a.method, meta["source"], out)


def _encoded(a, cfg):
    from .data import load_split
    from .evaluate.latents import encode_split
    from .evaluate.reconstruction import load_model
    from .train import load_checkpoint, resolve_device

    device = resolve_device(cfg["device"])
    model, _, fam = load_model(load_checkpoint(Path(a.model)))
    model.to(device)
    out = {}
    for split in ("train", "test"):
        images, labels = load_split(a.data, split)
        out[split] = (encode_split(model, fam, images, device), images, labels)
    return out


def cmd_probe(a) -> None:
    from .data.attributes import binary_attributes, continuous_attributes
    from .evaluate.representation import linear_probe
    from .tracking import start_run

    _threads(a.threads)
    cfg = json.loads(a.cfg)
    enc = _encoded(a, cfg)
    (ztr, itr, ytr), (zte, ite, yte) = enc["train"], enc["test"]
    res = linear_probe(ztr, zte, ytr, yte, binary_attributes(itr, ytr, cfg["dataset"]),
                       binary_attributes(ite, yte, cfg["dataset"]), continuous_attributes(itr),
                       continuous_attributes(ite))
    with start_run(name=f"{a.method}/probe", rule="probe", dataset=cfg["dataset"], params=cfg) as run:
        run.log_metrics({k: v for k, v in res.items() if isinstance(v, float)})
        res.update(method=a.method, z_dim=int(ztr.shape[1]), n_train=len(ztr), n_test=len(zte),
                   mlflow_run_id=run.run_id)
    _write_json(Path(a.out), res)
    log.info("linear probe %s: %s", a.method, {k: v for k, v in res.items() if isinstance(v, float)})


def cmd_disentangle(a) -> None:
    import numpy as np

    from .data.attributes import binary_attributes
    from .evaluate.representation import tad
    from .tracking import start_run

    _threads(a.threads)
    cfg = json.loads(a.cfg)
    enc = _encoded(a, cfg)
    z = np.concatenate([enc["train"][0], enc["test"][0]])
    images = np.concatenate([enc["train"][1], enc["test"][1]])
    labels = np.concatenate([enc["train"][2], enc["test"][2]])
    # DBAE App. C.2: 1000 randomly selected samples
    idx = np.random.default_rng(cfg["seed"]).permutation(len(z))[:cfg["n_samples"]]
    res = tad(z[idx], binary_attributes(images[idx], labels[idx], cfg["dataset"]))
    with start_run(name=f"{a.method}/disentangle", rule="disentangle", dataset=cfg["dataset"], params=cfg) as run:
        run.log_metrics({"tad": res["tad"], "attrs": res["attrs"]})
        res.update(method=a.method, n_samples=len(idx), mlflow_run_id=run.run_id)
    _write_json(Path(a.out), res)
    log.info("TAD %s: %.4f, ATTRS %.1f", a.method, res["tad"], res["attrs"])


def cmd_inference_cost(a) -> None:
    from .evaluate.latents import inference_cost
    from .train import load_checkpoint, resolve_device

    _threads(a.threads)
    cfg = json.loads(a.cfg)
    c = cfg["cost"]
    res = inference_cost(load_checkpoint(Path(a.model)), Path(a.data), cfg["method"], n=c["n_images"],
                         nfe=c["inversion_nfe"], sampler=cfg["sampler"], device=resolve_device(cfg["device"]),
                         repeats=c["repeats"])
    res["method"] = a.method
    _write_json(Path(a.out), res)
    log.info("inference cost %s: %s", a.method, res)


def cmd_dbae_table(a) -> None:
    from .tables import write_dbae_table

    cfg = json.loads(a.cfg)
    df = write_dbae_table(a.table, cfg, [Path(p) for p in a.inputs], Path(a.out))
    log.info("wrote %s (%d rows)\n%s", a.out, len(df), df.to_string(index=False))


def cmd_prepare_genotypes(a) -> None:
    from .data.genotypes import prepare_genotypes

    manifest = prepare_genotypes(json.loads(a.cfg), Path(a.out), progress=not a.no_progress)
    log.info("genotypes: %d individuals, %d sites, %d PCA components", manifest["n_individuals"],
             manifest["n_sites"], manifest["k"])


def cmd_ddvi_train(a) -> None:
    from . import lvm_study
    from .tracking import start_run
    from .train import load_checkpoint, num_params, train_phase

    _threads(a.threads)
    cfg = json.loads(a.cfg)
    data = lvm_study.load_data(cfg, Path(a.data))
    family, model, ctx = lvm_study.build(cfg, data.x_train.shape[1])
    loss = lvm_study.LVMLoss(family, cfg["method"], ctx)
    train = cfg["train"]
    steps = max(1, round(train["examples"] / train["batch_size"]))
    out = Path(a.out)
    ckpt_path = Path(a.checkpoint_dir) / f"{out.stem}.resume.pt"
    run_id = load_checkpoint(ckpt_path).get("mlflow_run_id") or None if ckpt_path.exists() else None
    comp = _compute_settings(train["device"])
    with start_run(name=a.name, rule="ddvi_train", dataset=cfg["dataset"], params=cfg, run_id=run_id) as run:
        if run_id is None:
            run.log_params({"compute": comp["effective"]})
        run.log_metrics({**{f"params/{n}": num_params(m) for n, m in model.named_children()}, "phase/steps": steps})
        t0 = time.time()
        if not ckpt_path.exists():  # a resumed run restores its pretrained denoiser from the checkpoint
            pre = lvm_study.pretrain(cfg, model, ctx)
            if pre:
                run.log_metrics({"pretrain/loss": sum(pre[-20:]) / len(pre[-20:]), "pretrain/steps": len(pre),
                                 "pretrain/seconds": time.time() - t0})
        final = train_phase(model, loss, (data.x_train, lvm_study.partition_labels(cfg, data.y_train)), steps=steps,
                            phase_index=0, train_cfg=train, ckpt_path=ckpt_path, out_path=out, config=cfg,
                            logger=run.log_metrics, progress=not a.no_progress, extra={"mlflow_run_id": run.run_id},
                            compute=comp["settings"])
        run.log_metrics({"train/seconds": time.time() - t0, "train/final_step": final["step"]})
        run.log_checkpoint(out, "ddvi-" + a.name.replace("/", "-"))
    log.info("trained %s for %d steps -> %s (MLflow run %s)", a.name, steps, out, run.run_id)


def cmd_ddvi_evaluate(a) -> None:
    from . import lvm_study
    from .tracking import start_run
    from .train import load_checkpoint, num_params

    _threads(a.threads)
    cfg = json.loads(a.cfg)
    data = lvm_study.load_data(cfg, Path(a.data))
    family, model, ctx = lvm_study.build(cfg, data.x_train.shape[1])
    model.load_state_dict(load_checkpoint(Path(a.model))["ema"])
    with start_run(name=f"{a.name}/eval", rule="ddvi_evaluate", dataset=cfg["dataset"], params=cfg) as run:
        metrics, arrays = lvm_study.evaluate(cfg, family, model, ctx, data)
        run.log_metrics(metrics)
        result = {"setting": cfg["setting"], "prior": cfg["prior"]["name"], "method": a.method,
                  "seed": cfg["train"]["seed"], "metrics": metrics, "n_params": num_params(model),
                  "n_test": len(data.x_test), "mlflow_run_id": run.run_id}
    _save_npz(Path(a.arrays), **arrays)
    _write_json(Path(a.out), result)
    log.info("%s: %s", a.name, metrics)


def cmd_ddvi_table(a) -> None:
    from .tables import write_ddvi_table

    df = write_ddvi_table(json.loads(a.cfg), a.table, [Path(p) for p in a.inputs], Path(a.out))
    log.info("wrote %s (%d rows)\n%s", a.out, len(df), df.to_string(index=False))


def cmd_ddvi_latents(a) -> None:
    from .report import latent_scatter_figure

    latent_scatter_figure([Path(p) for p in a.inputs], a.labels, Path(a.out), a.title)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="daebench", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name, fn, help, *args):
        s = sub.add_parser(name, help=help)
        s.set_defaults(fn=fn)
        for arg in args:
            s.add_argument(*arg[0], **arg[1])
        s.add_argument("--threads", type=int, default=None, help="torch CPU threads (Snakemake's {threads})")
        s.add_argument("--no-progress", action="store_true", help="no progress bars")
        return s

    cfg = (["--cfg"], {"required": True, "help": "JSON config slice of this job"})
    data = (["--data"], {"required": True, "help": "prepared dataset directory"})
    out = (["--out"], {"required": True})
    method = (["--method"], {"required": True})
    mode = (["--mode"], {"required": True, "choices": ["stochastic", "inversion", "endpoint", "sde", "ode", "decoder"]})
    add("download-data", cmd_download_data, "fetch and verify a dataset's source files (the network step)", cfg,
        out)
    add("prepare-data", cmd_prepare_data, "preprocess a dataset from downloaded files or a local copy (no network)",
        cfg, out)
    add("train", cmd_train, "train one phase of a method", cfg, data, out, method,
        (["--phase-index"], {"type": int, "required": True}), (["--init"], {"default": None}),
        (["--prior"], {"default": None, "help": "checkpoint of the frozen prior (scorevae)"}),
        (["--checkpoint-dir"], {"default": "resources/checkpoints"}))
    add("reconstruct", cmd_reconstruct, "reconstruct the test split", cfg, data, out, method, mode,
        (["--model"], {"required": True}))
    add("train-classifier", cmd_train_classifier, "train the domain feature classifier", cfg, data, out)
    add("metrics", cmd_metrics, "score reconstructions", cfg, out, method, mode,
        (["--recon"], {"required": True}), (["--classifier"], {"required": True}))
    add("table4", cmd_table4, "assemble results/table4.csv", cfg, out, (["--inputs"], {"nargs": "+"}))
    model = (["--model"], {"required": True, "help": "trained autoencoder checkpoint"})
    add("train-prior", cmd_train_prior, "fit the latent DDIM prior on an autoencoder's codes", cfg, data, out,
        method, model, (["--checkpoint-dir"], {"default": "resources/checkpoints"}))
    add("generate", cmd_generate, "decode prior samples or encoded test codes", cfg, data, out, method, model,
        (["--source"], {"required": True, "choices": ["prior", "ae"]}), (["--prior"], {"default": None}))
    add("gen-metrics", cmd_gen_metrics, "precision/recall, FD, IS of generated samples", cfg, data, out, method,
        (["--samples"], {"required": True}), (["--classifier"], {"required": True}))
    add("probe", cmd_probe, "linear probe on the latent codes", cfg, data, out, method, model)
    add("disentangle", cmd_disentangle, "TAD and ATTRS of the latent codes", cfg, data, out, method, model)
    add("inference-cost", cmd_inference_cost, "NFE and time to get z and x_T", cfg, data, out, method, model)
    add("dbae-table", cmd_dbae_table, "assemble one of DBAE's tables", cfg, out,
        (["--table"], {"required": True, "choices": ["table1", "table2", "table3", "table4", "table5", "table9"]}),
        (["--inputs"], {"nargs": "+"}))
    add("scorevae-table", cmd_scorevae_table, "assemble ScoreVAE's Table 1", cfg, out, (["--inputs"], {"nargs": "+"}))
    add("scorevae-grid", cmd_scorevae_grid, "one labelled figure: originals, then one row per reconstruction", out,
        (["--inputs"], {"nargs": "+", "required": True}), (["--labels"], {"nargs": "+", "required": True}),
        (["--n"], {"type": int, "default": 12, "help": "images per row"}))
    add("prepare-genotypes", cmd_prepare_genotypes, "simulate (msprime) or download 1000 Genomes genotypes, PCA",
        cfg, out)
    run_name = (["--name"], {"required": True, "help": "run name (setting/prior/method/seed)"})
    add("ddvi-train", cmd_ddvi_train, "train one model of the DDVI study", cfg, data, out, run_name,
        (["--checkpoint-dir"], {"default": "resources/checkpoints"}))
    add("ddvi-evaluate", cmd_ddvi_evaluate, "ELBO, MMD, latent NLL, KNN accuracy or clustering of one run", cfg, data,
        out, method, run_name, (["--model"], {"required": True}),
        (["--arrays"], {"required": True, "help": "npz for the test codes (and generated images)"}))
    add("ddvi-table", cmd_ddvi_table, "assemble one of DDVI's tables (mean and 95%% interval over seeds)", cfg, out,
        (["--table"], {"required": True, "choices": ["table1", "table2", "table3", "table8"]}),
        (["--inputs"], {"nargs": "+"}))
    add("ddvi-latents", cmd_ddvi_latents, "scatter plots of test codes, coloured by class", out,
        (["--inputs"], {"nargs": "+", "required": True}), (["--labels"], {"nargs": "+", "required": True}),
        (["--title"], {"default": ""}))
    add("fetch-weights", cmd_fetch_weights, "download pretrained metric weights (needs a network)",
        (["--dest"], {"default": "resources/weights"}), (["--names"], {"nargs": "*"}))
    add("validate", cmd_validate, "validate a params file", (["--params"], {"default": "params.yaml"}),
        (["--schema"], {"default": "workflow/schemas/params.schema.yaml"}))
    study = (["--study"], {"required": True, "choices": ["two_phase", "dbae", "scorevae", "ddvi"]})
    add("claims", cmd_claims, "test one study's claims on its tables and on the paper's", study,
        (["--tables"], {"nargs": "+", "required": True, "help": "name=path of each table (e.g. table4=...)"}),
        (["--cfg"], {"default": "{}", "help": "JSON: what the tables do not say (DBAE: dae; DDVI: dataset, genotypes)"}),
        out)
    add("claims-all", cmd_claims_all, "concatenate the studies' claims files into one",
        (["--inputs"], {"nargs": "+", "required": True}), out)
    add("emergence-point", cmd_emergence_point, "run one study at one training budget (a nested Snakemake run)",
        study, (["--scale"], {"required": True}), (["--cfg"], {"required": True, "help": "the resolved config (JSON)"}),
        (["--workdir"], {"required": True}), (["--root"], {"default": "."}), (["--cores"], {"type": int, "default": 1}),
        (["--snakefile"], {"default": "Snakefile"}))
    add("emergence", cmd_emergence, "a study's claims at each budget: CSV and figure", study,
        (["--cfg"], {"required": True}), (["--points"], {"nargs": "+", "required": True, "help": "scale=workdir"}),
        out, (["--figure"], {"required": True}))
    add("report", cmd_report, "execute notebooks/report.ipynb (papermill) and render it to HTML",
        (["--notebook"], {"default": "notebooks/report.ipynb"}), (["--out-html"], {"required": True}),
        (["--executed"], {"required": True, "help": "where the executed notebook goes (kept when a cell fails)"}),
        (["--params-json"], {"default": "{}", "help": "JSON object of notebook parameters"}),
        (["--cwd"], {"default": ".", "help": "the notebook's working directory (the repo root)"}))
    return p


# Commands that run as torchrun processes when compute.nproc > 1 (one DDP training job).
DISTRIBUTED_COMMANDS = {"train"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.cmd in DISTRIBUTED_COMMANDS:
        from . import compute

        settings = compute.from_env()
        if compute.wants_relaunch(settings):
            cmd = compute.torchrun_argv(settings["nproc"], argv)
            print(f"compute.nproc={settings['nproc']}: running as {' '.join(cmd)}", file=sys.stderr, flush=True)
            os.execv(cmd[0], cmd)  # same pid: Snakemake's signals reach torchrun, which stops its workers
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("alembic", "mlflow", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from .data.store import WriteError

    try:
        args.fn(args)
    except WriteError as err:  # a full disk or a file-size limit: the path and the fix, not a traceback
        log.error("%s", err.strerror)
        return 1
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0
