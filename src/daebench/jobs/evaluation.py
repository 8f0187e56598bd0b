"""Evaluation jobs every image study shares: reconstruct the test split with a trained model, train the
domain feature classifier, score reconstructions; and their slices."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .base import as_json, save_npz, write_json
from .data import data_slice
from .training import train_slice

log = logging.getLogger("daebench")


def reconstruct(cfg: dict, data: Path, out: Path, method: str, mode: str, model: Path, progress: bool = True) -> None:
    from ..checkpoint import load_checkpoint, resolve_device
    from ..evaluate.reconstruction import reconstruct_split, save_grid
    from ..tracking import start_run

    ev = cfg["eval"]
    # the NFE budget and sampler options: Table 4's slices name DDIM steps and clip_x0 directly (their
    # cache keys predate the sampler block), the other studies' carry ``nfe`` and a ``sampler`` block
    nfe, sampler = (ev["ddim_steps"], {"clip_x0": ev["clip_x0"]}) if "ddim_steps" in ev else (ev["nfe"], ev["sampler"])
    ckpt = load_checkpoint(Path(model))
    trained_by = ckpt.get("mlflow_run_id")  # the training run, so MLflow can set these numbers beside its lr
    with start_run(name=f"{method}/reconstruct-{mode}-nfe{nfe}", rule="reconstruct", dataset=cfg["dataset"],
                   params={**cfg, "mode": mode}, tags={"daebench.training_run_id": trained_by or ""}) as run:
        res = reconstruct_split(ckpt, Path(data), cfg["method"], mode, nfe=nfe, sampler=sampler,
                                n_images=ev["n_images"], batch_size=ev["batch_size"], seed=ev["seed"],
                                device=resolve_device(cfg.get("device", "auto")), progress=progress)
        out = Path(out)
        save_npz(out, original=res["original"], recon=res["recon"], labels=res["labels"],
                 meta=json.dumps({"seconds": res["seconds"], "nfe": res["nfe"], "mode": mode, **res["cost"],
                                  "sampler": sampler, "ddim_steps": nfe, "n_params": res["n_params"],
                                  "mlflow_run_id": run.run_id, "training_run_id": trained_by,
                                  **({"kl_nats": res["kl_nats"]} if res["kl_nats"] is not None else {})}))
        grid = out.with_suffix(".png")
        save_grid(grid, [res["original"], res["recon"]])
        run.log_metrics({"seconds": res["seconds"], "nfe": res["nfe"],
                         "images_per_s": len(res["recon"]) / max(res["seconds"], 1e-9)})
        run.log_artifact(grid)
    log.info("reconstructed %d images (%s, %d NFE) in %.1fs -> %s", len(res["recon"]), mode, res["nfe"],
             res["seconds"], out)


def train_classifier(cfg: dict, data: Path, out: Path, progress: bool = True) -> None:
    from ..data import load_split
    from ..evaluate.features import save_classifier
    from ..evaluate.features import train_classifier as fit

    c = cfg["classifier"]
    xtr, ytr = load_split(data, "train", mmap=True)  # batches converted one by one (paper-scale sets)
    xte, yte = load_split(data, "test")
    model, info = fit(xtr, ytr, steps=c["steps"], batch_size=c["batch_size"], lr=c["lr"], seed=c["seed"],
                      test_images=xte, test_labels=yte)
    save_classifier(Path(out), model, info)
    log.info("feature classifier: %s", info)


def metrics(cfg: dict, out: Path, method: str, mode: str, recon: Path, classifier: Path,
            progress: bool = True) -> None:
    import numpy as np

    from ..evaluate.scoring import score_reconstructions
    from ..tracking import start_run

    with np.load(recon) as f:  # which training run made the model (absent in reconstructions made before)
        trained_by = json.loads(str(f["meta"])).get("training_run_id")
    with start_run(name=f"{method}/metrics-{mode}", rule="metrics", dataset=cfg["dataset"],
                   params={**cfg, "method": method, "mode": mode},
                   tags={"daebench.training_run_id": trained_by or ""}) as run:
        result = score_reconstructions(Path(recon), Path(classifier), Path(cfg["weights_dir"]), cfg.get("intervals"))
        values = {k: v for k, v in result["metrics"].items() if v is not None}
        run.log_metrics(values)
        if trained_by:  # and on the training run, where MLflow's compare view sets them against its params; one
            # model is scored by several studies (Table 4's 32 images at 8 steps, DBAE's 16 at 5): named apart
            what = f"{mode}-{result['ddim_steps']}steps-n{result['n_images']}"
            run.log_metrics({f"eval/{what}/{k}": v for k, v in values.items()}, run_id=trained_by)
        result.update(method=method, mode=mode, mlflow_run_id=run.run_id, training_run_id=trained_by)
    write_json(out, result)
    log.info("%s %s: %s", method, mode, result["metrics"])


# --- slices ---------------------------------------------------------------------------------------------


def classifier_slice(config: dict, dataset: str) -> dict:
    return {**data_slice(config, dataset), "classifier": config["metrics"]["classifier"]}


def recon_slice(config: dict, dataset: str, method: str, ev: dict, upto: int | None = None) -> dict:
    # a reconstruction job: the model it reads (as trained up to phase ``upto``), how it samples, its eval settings
    out = {**train_slice(config, dataset, method, upto), "device": config["train"]["device"], "eval": ev}
    if "sample_schedule" in config["methods"][method]:
        out["method"] = {**out["method"], "sample_schedule": config["methods"][method]["sample_schedule"]}
    return out


def weights_state(config: dict) -> list:
    # Names and sizes of the pretrained metric files: fetching them reruns the metric jobs.
    d = config["metrics"]["weights_dir"]
    if not os.path.isdir(d):
        return []
    return sorted((f, os.path.getsize(os.path.join(d, f))) for f in os.listdir(d) if not f.startswith("."))


def metrics_slice(config: dict, dataset: str) -> dict:
    # what every scoring job reads besides its input files: the pretrained weights present
    return {"dataset": dataset, "weights_dir": config["metrics"]["weights_dir"], "weights": weights_state(config)}


def metrics_cfg(config: dict, wildcards) -> str:
    # a reconstruction's scoring job also draws the bootstrap resamples its claims pair across rows
    iv = config["intervals"]
    return as_json({**metrics_slice(config, wildcards.dataset),
                    "intervals": {"resamples": iv["resamples"], "seed": iv["seed"]}})


def fetch_weights(dest: str, names: list | None = None, progress: bool = True) -> None:
    from ..evaluate.weights import fetch_weights as fetch

    fetch(Path(dest), names or None)
