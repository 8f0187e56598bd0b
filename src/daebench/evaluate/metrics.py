"""Per-image reconstruction metrics: MSE, PSNR and SSIM.

Every function takes two batches of images in [-1, 1], NCHW (any channel
count, normally 1 or 3), and returns a 1-D float64 tensor of length B on the
inputs' device; the caller averages.  Images are mapped to [0, 1] and clamped
there (the protocol scores the image as it would be displayed/saved, so a
sampler overshooting [-1, 1] is not rewarded or punished for invisible
values); data_range is therefore 1.

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

import torch
import torch.nn.functional as F

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


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if not (torch.is_tensor(x) and torch.is_tensor(y)):
        raise TypeError("metrics expect torch tensors")
    if x.shape != y.shape:
        raise ValueError(f"image batches differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.dim() != 4:
        raise ValueError(
            f"expected NCHW images, got shape {tuple(x.shape)}; "
            "channels-last arrays must be permuted to NCHW before scoring"
        )


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] in float64, clamped."""
    return ((x.detach().to(torch.float64) + 1.0) * 0.5).clamp_(0.0, 1.0)


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image on [0, 1] images. Returns shape [B]."""
    _check_pair(x, y)
    d = to_unit_range(x) - to_unit_range(y)
    return d.pow(2).flatten(1).mean(dim=1)


def l2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distance ||x - y||_2 per image on [0, 1] images (ScoreVAE Tables 1-2's "L_2", our
    reading: the per-image norm, not its square, averaged by the caller). Returns shape [B]."""
    _check_pair(x, y)
    d = to_unit_range(x) - to_unit_range(y)
    return d.pow(2).flatten(1).sum(dim=1).sqrt()


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB, data_range 1.

    10 * log10(1 / MSE) with MSE on [0, 1]; identical images give
    PSNR_MAX_DB (100 dB) instead of inf (see the note on _MSE_FLOOR).
    """
    m = mse(x, y).clamp(min=_MSE_FLOOR)
    return -10.0 * torch.log10(m)


_KERNEL_CACHE: dict[tuple[torch.device], torch.Tensor] = {}


def _gaussian_1d(device: torch.device) -> torch.Tensor:
    # Same taps as scipy.ndimage.gaussian_filter1d(sigma=1.5, truncate=3.5).
    k = _KERNEL_CACHE.get((device,))
    if k is None:
        r = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64)
        k = torch.exp(-0.5 * (r / SSIM_SIGMA) ** 2)
        k = (k / k.sum()).to(device)
        _KERNEL_CACHE[(device,)] = k
    return k


def _blur_valid(img: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter, valid region only. img: [N, 1, H, W] float64."""
    k = _gaussian_1d(img.device)
    out = F.conv2d(img, k.view(1, 1, -1, 1))  # along H
    return F.conv2d(out, k.view(1, 1, 1, -1))  # along W


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Structural similarity per image (mean over channels). Returns shape [B].

    Matches skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1)
    applied to the HWC [0, 1] version of each image.
    """
    _check_pair(x, y)
    b, c, h, w = x.shape
    if h < SSIM_WIN_SIZE or w < SSIM_WIN_SIZE:
        raise ValueError(f"SSIM needs images of at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE}, got {h}x{w}")
    # Channels are scored independently, so fold them into the batch.
    a = to_unit_range(x).reshape(b * c, 1, h, w)
    bb = to_unit_range(y).reshape(b * c, 1, h, w)
    # One conv over the five stacked moments keeps it a single kernel launch.
    stack = torch.cat([a, bb, a * a, bb * bb, a * bb], dim=0)
    mu_a, mu_b, e_aa, e_bb, e_ab = _blur_valid(stack).chunk(5, dim=0)
    var_a = e_aa - mu_a * mu_a
    var_b = e_bb - mu_b * mu_b
    cov_ab = e_ab - mu_a * mu_b
    c1 = (SSIM_K1 * 1.0) ** 2
    c2 = (SSIM_K2 * 1.0) ** 2
    num = (2.0 * mu_a * mu_b + c1) * (2.0 * cov_ab + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    smap = num / den
    per_channel = smap.flatten(1).mean(dim=1).view(b, c)
    return per_channel.mean(dim=1)
