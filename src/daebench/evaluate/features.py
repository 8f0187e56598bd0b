"""The feature-based metrics of the metrics tables: what each column means (``COLUMN_DESCRIPTIONS``, shown
in the report) and the versions and settings recorded next to every table (``protocol_info``).

The metrics themselves live by job: LPIPS in perceptual.py, the two FID protocols (torch-fidelity and
clean-fid) in fid.py, the domain classifier and the substitutes measured in its features (``fd_domain``,
``featdist_domain``, used when the pretrained weights are absent) in domain_classifier.py, the accepted
image formats in image_format.py. Their public functions are re-exported here, where the scoring code and
the jobs call them (``features.lpips_distance``, ``features.train_classifier``, ...).

No metric downloads anything: LPIPS/FID load their pretrained files from ``weights_dir`` (see
weights.py) and raise WeightsMissing otherwise.
"""

from __future__ import annotations

import os

import torch

from daebench.evaluate.domain_classifier import (
    domain_features,
    feature_distance_domain,
    frechet_distance_domain,
    load_classifier,
    save_classifier,
    train_classifier,
)
from daebench.evaluate.fid import fid_cf, fid_tf
from daebench.evaluate.image_format import to_float_nchw, to_uint8_nhwc
from daebench.evaluate.perceptual import lpips_distance
from daebench.evaluate.weights import DEFAULT_WEIGHTS_DIR, WeightsMissing

__all__ = [
    "COLUMN_DESCRIPTIONS",
    "WeightsMissing",
    "domain_features",
    "feature_distance_domain",
    "fid_cf",
    "fid_tf",
    "frechet_distance_domain",
    "load_classifier",
    "lpips_distance",
    "protocol_info",
    "save_classifier",
    "to_float_nchw",
    "to_uint8_nhwc",
    "train_classifier",
]

COLUMN_DESCRIPTIONS: dict[str, str] = {
    "psnr": "Peak signal-to-noise ratio in dB between input and reconstruction on [0, 1] images "
    "(data range 1, capped at 100 dB for exact reconstructions); higher is better.",
    "ssim": "Structural similarity (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, matching "
    "scikit-image) between input and reconstruction, averaged over channels; higher is better.",
    "mse": "Mean squared error between input and reconstruction on [0, 1] images; lower is better.",
    "lpips": "LPIPS v0.1 perceptual distance (lpips package, AlexNet trunk, inputs in [-1, 1], "
    "images under 32 px bilinearly upsampled to 32) between input and reconstruction; lower is better.",
    "fid_tf": "Frechet Inception Distance from torch-fidelity (TF-compatible InceptionV3, 2048-d pool "
    "features) between generated samples and the fixed reference set; lower is better.",
    "fid_cf": "Frechet Inception Distance from clean-fid (mode recorded, 'clean' by default: PIL "
    "bicubic resize to 299) between generated samples and the fixed reference set; lower is better.",
    "fd_domain": "Frechet distance in the penultimate features of a small classifier trained by the "
    "pipeline on the same dataset, computed through clean-fid's custom_feat_extractor; NOT an FID, "
    "not comparable to published FIDs; lower is better.",
    "featdist_domain": "Per-pair Euclidean distance between unit-normalised penultimate features of the "
    "domain classifier (an LPIPS-like distance, in [0, 2]) between input and reconstruction; NOT LPIPS; "
    "lower is better.",
}


def protocol_info(weights_dir: str | os.PathLike = DEFAULT_WEIGHTS_DIR) -> dict:
    """Versions and settings to record next to every metrics table."""
    from importlib import metadata

    from daebench.evaluate.weights import available

    def ver(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    return {
        "torch": torch.__version__,
        "lpips": ver("lpips"),
        "clean-fid": ver("clean-fid"),
        "torch-fidelity": ver("torch-fidelity"),
        "scikit-image": ver("scikit-image"),
        "ssim": "gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, data_range 1",
        "psnr": "data_range 1, capped at 100 dB",
        "lpips_net": "alex v0.1, normalize=False, min side 32",
        "fid_cf_mode": "clean",
        "fid_tf_extractor": "inception-v3-compat",
        "weights_available": available(weights_dir),
    }
