"""Score a reconstruction file with the fixed metric protocol (docs/architecture.md, "Metric protocol"):
PSNR/SSIM/MSE/L2 always; LPIPS and FID (tf, cf) when the pretrained weights are in weights_dir;
the domain-feature metrics (own column names, never labelled FID/LPIPS) always, so runs with
and without the weights stay comparable with each other."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from . import features, metrics, weights

log = logging.getLogger(__name__)


def score_reconstructions(recon_path: Path, classifier_path: Path, weights_dir: Path) -> dict:
    with np.load(recon_path) as f:
        x = torch.from_numpy(f["original"])
        y = torch.from_numpy(f["recon"])
        meta = json.loads(str(f["meta"]))
    out = {
        "psnr": float(metrics.psnr(x, y).mean()),
        "ssim": float(metrics.ssim(x, y).mean()),
        "mse": float(metrics.mse(x, y).mean()),
        "l2": float(metrics.l2(x, y).mean()),
    }
    have = weights.available(weights_dir)
    notes = {}
    if have.get("alexnet"):
        out["lpips"] = float(features.lpips_distance(x, y, weights_dir).mean())
    else:
        notes["lpips"] = weights.missing_message(weights_dir, ["alexnet"])
    # Distribution metrics compare the reconstructions with the originals they came from.
    if have.get("inception_tf"):
        out["fid_tf"], _ = features.fid_tf(x, y, weights_dir)
    else:
        notes["fid_tf"] = weights.missing_message(weights_dir, ["inception_tf"])
    if have.get("inception_cf"):
        out["fid_cf"], notes["fid_cf_mode"] = features.fid_cf(x, y, weights_dir)
    else:
        notes["fid_cf"] = weights.missing_message(weights_dir, ["inception_cf"])
    clf = features.load_classifier(classifier_path)
    out["fd_domain"] = float(features.frechet_distance_domain(x, y, clf))
    out["featdist_domain"] = float(features.feature_distance_domain(x, y, clf).mean())
    for name, why in notes.items():
        if name in ("lpips", "fid_tf", "fid_cf"):
            log.warning("%s not computed: %s", name, why.splitlines()[0])
    return {"metrics": out, "n_images": int(x.shape[0]), "image_shape": list(x.shape[1:]),
            "ddim_steps": meta["ddim_steps"], "nfe": meta["nfe"],
            "cost": {k: meta[k] for k in ("nfe_encoder", "nfe_endpoint", "nfe_decode") if k in meta},
            "reconstruct_seconds": meta["seconds"], "reconstruct_run_id": meta["mlflow_run_id"],
            "n_params": meta.get("n_params"),
            "not_computed": notes, "protocol": features.protocol_info(weights_dir)}
