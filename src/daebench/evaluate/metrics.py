"""Per-image reconstruction metrics: MSE, PSNR and SSIM.

Every function takes two batches of images in [-1, 1], NCHW (any channel
count, normally 1 or 3), as numpy arrays or torch tensors, and returns a 1-D
float64 array of length B of the same kind (a tensor on the inputs' device);
the caller averages. The computation is numpy's, so a scoring job that needs
no network never imports torch (issue 29: that import is most of its cost).
Images are mapped to [0, 1] and clamped there (the protocol scores the image
as it would be displayed/saved, so a sampler overshooting [-1, 1] is not
rewarded or punished for invisible values); data_range is therefore 1.

SSIM follows Wang et al., "Image quality assessment: from error visibility to
structural similarity", IEEE TIP 2004, with the settings scikit-image uses
for `structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1.0, channel_axis=-1)`: an 11-tap
Gaussian window (sigma 1.5, truncate 3.5), K1 = 0.01, K2 = 0.03, population
(not sample) covariances, the SSIM map averaged after cropping
(win_size - 1) // 2 = 5 pixels from every side, then averaged over channels.
Because the crop equals the window radius, the cropped map never touches
the padded border, so a *valid* convolution reproduces scikit-image exactly
without emulating scipy's 'reflect' padding.  Images must therefore be at
least 11x11 (16x16 gives a 6x6 map).

Computation is in float64: SSIM's variance terms (E[x^2] - E[x]^2) cancel
catastrophically in float32 for flat regions, and the cost is negligible at
the image sizes of these papers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .image_format import is_tensor as _is_tensor

__all__ = [
    "PSNR_MAX_DB",
    "SSIM_K1",
    "SSIM_K2",
    "SSIM_SIGMA",
    "SSIM_TRUNCATE",
    "SSIM_WIN_SIZE",
    "l2",
    "mse",
    "psnr",
    "ssim",
    "to_unit_range",
]

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # scipy.ndimage / skimage default
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # 5, as scipy computes it
SSIM_WIN_SIZE = 2 * SSIM_RADIUS + 1  # 11
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# PSNR of a pixel-perfect reconstruction is +inf; one such image would turn
# the table's mean into inf and hide every other image.  We floor the MSE at
# 1e-10, capping PSNR at 100 dB: far above anything measurable on 8-bit data
# (uniform quantisation noise alone gives ~59 dB), so the cap never binds for
# an imperfect reconstruction and an exact one reads as an obvious ceiling.
PSNR_MAX_DB = 100.0
_MSE_FLOOR = 10.0 ** (-PSNR_MAX_DB / 10.0)


def _pair(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    if not all(_is_tensor(a) or isinstance(a, np.ndarray) for a in (x, y)):
        raise TypeError("metrics expect numpy arrays or torch tensors")
    if tuple(x.shape) != tuple(y.shape):
        raise ValueError(f"image batches differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if len(x.shape) != 4:
        raise ValueError(
            f"expected NCHW images, got shape {tuple(x.shape)}; "
            "channels-last arrays must be permuted to NCHW before scoring"
        )
    return to_unit_range(x), to_unit_range(y)


def _like(value: np.ndarray, x: Any) -> Any:
    """``value`` as the caller's kind: a float64 tensor on x's device for a tensor x."""
    if not _is_tensor(x):
        return value
    import torch

    return torch.from_numpy(value).to(x.device)


def to_unit_range(x: Any) -> np.ndarray:
    """[-1, 1] -> [0, 1] in float64, clamped."""
    a = x.detach().cpu().double().numpy() if _is_tensor(x) else np.asarray(x, dtype=np.float64)
    return np.clip((a + 1.0) * 0.5, 0.0, 1.0)


def _mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a - b) ** 2).reshape(len(a), -1).mean(axis=1)


def mse(x: Any, y: Any) -> Any:
    """Mean squared error per image on [0, 1] images. Returns shape [B]."""
    return _like(_mse(*_pair(x, y)), x)


def l2(x: Any, y: Any) -> Any:
    """Euclidean distance ||x - y||_2 per image on [0, 1] images (ScoreVAE Tables 1-2's "L_2", our
    reading: the per-image norm, not its square, averaged by the caller). Returns shape [B]."""
    a, b = _pair(x, y)
    return _like(np.sqrt(((a - b) ** 2).reshape(len(a), -1).sum(axis=1)), x)


def psnr(x: Any, y: Any) -> Any:
    """Peak signal-to-noise ratio per image in dB, data_range 1.

    10 * log10(1 / MSE) with MSE on [0, 1]; identical images give
    PSNR_MAX_DB (100 dB) instead of inf (see the note on _MSE_FLOOR).
    """
    return _like(-10.0 * np.log10(np.maximum(_mse(*_pair(x, y)), _MSE_FLOOR)), x)


def _gaussian_1d() -> np.ndarray:
    # Same taps as scipy.ndimage.gaussian_filter1d(sigma=1.5, truncate=3.5).
    r = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    k = np.exp(-0.5 * (r / SSIM_SIGMA) ** 2)
    return k / k.sum()


_KERNEL = _gaussian_1d()


def _blur_valid(img: np.ndarray) -> np.ndarray:
    """Separable Gaussian filter, valid region only, over the last two axes (float64)."""
    n = len(_KERNEL)
    h, w = img.shape[-2] - n + 1, img.shape[-1] - n + 1
    out = sum(k * img[..., i:i + h, :] for i, k in enumerate(_KERNEL))  # along H
    return sum(k * out[..., :, i:i + w] for i, k in enumerate(_KERNEL))  # along W


def ssim(x: Any, y: Any) -> Any:
    """Structural similarity per image (mean over channels). Returns shape [B].

    Matches skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1)
    applied to the HWC [0, 1] version of each image.
    """
    a, bb = _pair(x, y)
    b, c, h, w = a.shape
    if h < SSIM_WIN_SIZE or w < SSIM_WIN_SIZE:
        raise ValueError(f"SSIM needs images of at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE}, got {h}x{w}")
    # Channels are scored independently (the blur acts on H, W only); the five moments blurred at once.
    mu_a, mu_b, e_aa, e_bb, e_ab = _blur_valid(np.stack([a, bb, a * a, bb * bb, a * bb]))
    var_a = e_aa - mu_a * mu_a
    var_b = e_bb - mu_b * mu_b
    cov_ab = e_ab - mu_a * mu_b
    c1 = (SSIM_K1 * 1.0) ** 2
    c2 = (SSIM_K2 * 1.0) ** 2
    num = (2.0 * mu_a * mu_b + c1) * (2.0 * cov_ab + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    per_channel = (num / den).reshape(b, c, -1).mean(axis=2)
    return _like(per_channel.mean(axis=1), x)
