"""Score a reconstruction file with the fixed metric protocol (docs/architecture.md, "Metric protocol"):
PSNR/SSIM/MSE/L2 always; LPIPS and FID (tf, cf) when the pretrained weights are in weights_dir;
the domain-feature metrics (own column names, never labelled FID/LPIPS) always, so runs with
and without the weights stay comparable with each other. Without the weights nothing here imports torch
(metrics.py and domain_numpy.py are numpy): the scoring job's start-up is its imports (issue 29)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from . import domain_numpy, metrics, stats, weights
from .protocol import protocol_info

log = logging.getLogger(__name__)


PER_IMAGE = {"psnr": metrics.psnr, "ssim": metrics.ssim, "mse": metrics.mse, "l2": metrics.l2}


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation with no fixed point: image i is compared with image pi(i) != i (chance level)."""
    rng = np.random.default_rng(seed)
    while True:
        p = rng.permutation(n)
        if n < 2 or not (p == np.arange(n)).any():
            return p


def score_reconstructions(recon_path: Path, classifier_path: Path, weights_dir: Path,
                          intervals: dict | None = None) -> dict:
    """The metrics of a reconstruction file, plus what the claims' intervals need (``intervals``: {resamples,
    seed}): each per-image metric image by image (``per_image``), the same metric between each test image and
    the reconstruction of another one (``chance``: what a decoder that ignores z scores), and the distribution
    metric on ``resamples`` bootstrap resamples of the image pairs (``bootstrap``)."""
    iv = {"resamples": stats.RESAMPLES, "seed": stats.SEED, **(intervals or {})}
    with np.load(recon_path) as f:
        x, y = f["original"], f["recon"]
        meta = json.loads(str(f["meta"]))
    # Chance: each test image against the reconstruction of *another* test image. A decoder that ignores z
    # scores the same on both pairings, however blurry or sharp its output (against another real image
    # instead, a blurry mean image already "beats chance" in PSNR), so beating this is using z.
    perm = derangement(len(x), iv["seed"])
    other = y[perm]
    per_image = {k: fn(x, y) for k, fn in PER_IMAGE.items()}
    chance = {k: fn(x, other) for k, fn in PER_IMAGE.items()}
    out = {k: float(v.mean()) for k, v in per_image.items()}
    if meta.get("kl_nats") is not None:  # what q(z|x_0) keeps of these images (the reconstruction job measured it)
        out["kl"] = float(meta["kl_nats"])
    have = weights.available(weights_dir)
    notes = {}
    if any(have.get(k) for k in ("alexnet", "inception_tf", "inception_cf")):  # the ImageNet networks: torch
        import torch

        from . import features

        xt, yt, ot = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(other)
    if have.get("alexnet"):
        per_image["lpips"] = features.lpips_distance(xt, yt, weights_dir).cpu().numpy()
        chance["lpips"] = features.lpips_distance(xt, ot, weights_dir).cpu().numpy()
        out["lpips"] = float(per_image["lpips"].mean())
    else:
        notes["lpips"] = weights.missing_message(weights_dir, ["alexnet"])
    # Distribution metrics compare the reconstructions with the originals they came from.
    if have.get("inception_tf"):
        out["fid_tf"], _ = features.fid_tf(xt, yt, weights_dir)
    else:
        notes["fid_tf"] = weights.missing_message(weights_dir, ["inception_tf"])
    if have.get("inception_cf"):
        out["fid_cf"], notes["fid_cf_mode"] = features.fid_cf(xt, yt, weights_dir)
    else:
        notes["fid_cf"] = weights.missing_message(weights_dir, ["inception_cf"])
    clf = domain_numpy.load_features(classifier_path)
    idx = stats.bootstrap_indices(len(x), iv["resamples"], iv["seed"])
    out["fd_domain"], fd_reps = domain_numpy.frechet_distance_domain(x, y, clf, resamples=idx)
    fx, fy = domain_numpy.domain_features(clf, x), domain_numpy.domain_features(clf, y)  # once each: the
    # chance pairing is a permutation of the reconstructions, so of their features
    per_image["featdist_domain"] = domain_numpy.unit_feature_distance(fx, fy)
    chance["featdist_domain"] = domain_numpy.unit_feature_distance(fx, fy[perm])
    out["featdist_domain"] = float(per_image["featdist_domain"].mean())
    missing = [name for name in notes if name in ("lpips", "fid_tf", "fid_cf")]
    if missing:  # one line: which metrics, where the weights should be, and the command that fetches them
        log.warning("%s not computed: pretrained weights missing or failing their sha256 in %s (python -m daebench "
                    "fetch-weights --dest %s; "
                    "details in this job's output JSON, not_computed)", ", ".join(missing), weights_dir, weights_dir)
    return {"metrics": out, "n_images": int(x.shape[0]), "image_shape": list(x.shape[1:]),
            "ddim_steps": meta["ddim_steps"], "nfe": meta["nfe"],
            "cost": {k: meta[k] for k in ("nfe_encoder", "nfe_endpoint", "nfe_decode") if k in meta},
            "reconstruct_seconds": meta["seconds"], "reconstruct_run_id": meta["mlflow_run_id"],
            "n_params": meta.get("n_params"),
            "not_computed": notes, "protocol": protocol_info(weights_dir),
            "per_image": {k: [float(a) for a in v] for k, v in per_image.items()},
            "chance": {k: [float(a) for a in v] for k, v in chance.items()},
            "bootstrap": {"resamples": iv["resamples"], "seed": iv["seed"], "n": int(x.shape[0]),
                          "fd_domain": [float(a) for a in fd_reps]}}
