"""What each metric column means (``COLUMN_DESCRIPTIONS``, shown in the report) and the versions and settings
recorded next to every table (``protocol_info``). No torch import: a scoring job that needs no network reads
these too."""
from __future__ import annotations

import os

from daebench.evaluate.weights import DEFAULT_WEIGHTS_DIR

__all__ = ["COLUMN_DESCRIPTIONS", "protocol_info"]

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
    "pipeline on the same dataset, the value of clean-fid's compute_fid with that classifier as "
    "custom_feat_extractor (uint8 images, no resize); NOT an FID, "
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
        "torch": ver("torch"),
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
