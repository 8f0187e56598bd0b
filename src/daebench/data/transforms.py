"""Image array helpers: deterministic resizing and tensor conversion.

Resizing is done in NumPy (float64, separable, antialiased, PIL-style
kernels) rather than with torch or PIL so that the bytes written by
``prepare`` depend only on NumPy arithmetic, not on which resampling library
or version happens to be installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["from_tensor", "pad_images", "resize_images", "to_tensor"]

# Images per chunk when resizing, to bound the float64 working set
# (a full CIFAR-10 in float64 would need ~1.5 GB).
_CHUNK = 4096


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    # Keys cubic with a = -0.5, the kernel PIL uses for BICUBIC.
    x = np.abs(x)
    out = np.zeros_like(x)
    m1 = x < 1
    m2 = (x >= 1) & (x < 2)
    out[m1] = ((a + 2) * x[m1] - (a + 3)) * x[m1] ** 2 + 1
    out[m2] = (((x[m2] - 5) * x[m2] + 8) * x[m2] - 4) * a
    return out


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - np.abs(x), 0.0, None)


_KERNELS = {"bicubic": _cubic, "bilinear": _triangle}


def _weights(in_size: int, out_size: int, kernel: str) -> np.ndarray:
    """Dense (out_size, in_size) resampling matrix.

    When downsampling the kernel is stretched by the scale factor
    (antialiasing); rows are renormalised, which is how PIL treats borders.
    """
    fn = _KERNELS[kernel]
    scale = in_size / out_size
    support_scale = max(scale, 1.0)
    centers = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    src = np.arange(in_size, dtype=np.float64) + 0.5
    w = fn((src[None, :] - centers[:, None]) / support_scale)
    return w / w.sum(axis=1, keepdims=True)


def resize_images(
    images: np.ndarray, size: int | tuple[int, int], kernel: str = "bicubic"
) -> np.ndarray:
    """Resize a batch of NHWC images with an antialiased separable filter.

    Parameters
    ----------
    images : ndarray, shape (N, H, W, C)
        Any real dtype; values are treated as intensities.
    size : int or (int, int)
        Output (H, W); an int means square.
    kernel : {"bicubic", "bilinear"}

    Returns
    -------
    ndarray, float64, shape (N, size_h, size_w, C)
        Not clipped or rounded; callers quantise once at the end.
    """
    if kernel not in _KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; known: {sorted(_KERNELS)}")
    if images.ndim != 4:
        raise ValueError(f"expected NHWC images, got shape {images.shape}")
    out_h, out_w = (size, size) if isinstance(size, int) else size
    n, h, w, c = images.shape
    wh = _weights(h, out_h, kernel)
    ww = _weights(w, out_w, kernel)
    out = np.empty((n, out_h, out_w, c), dtype=np.float64)
    for start in range(0, n, _CHUNK):
        chunk = images[start : start + _CHUNK].astype(np.float64)
        tmp = np.einsum("oh,nhwc->nowc", wh, chunk)
        out[start : start + _CHUNK] = np.einsum("pw,nowc->nopc", ww, tmp)
    return out


def quantize(images: np.ndarray) -> np.ndarray:
    """Round half-to-even and clip float intensities to uint8."""
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def pad_images(images: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad NHWC images symmetrically to ``size`` x ``size``."""
    _, h, w, _ = images.shape
    if size < h or size < w:
        raise ValueError(f"cannot pad {h}x{w} images to smaller size {size}")
    top, left = (size - h) // 2, (size - w) // 2
    pad = ((0, 0), (top, size - h - top), (left, size - w - left), (0, 0))
    return np.pad(images, pad, mode="constant", constant_values=0)


def to_tensor(images: Any) -> torch.Tensor:
    """uint8 NHWC images -> float32 NCHW tensor in [-1, 1].

    Parameters
    ----------
    images : ndarray or torch.Tensor, uint8, shape (N, H, W, C)

    Returns
    -------
    torch.FloatTensor, shape (N, C, H, W)
    """
    import torch

    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.dtype != torch.uint8:
        raise TypeError(f"to_tensor expects uint8 images, got {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"to_tensor expects NHWC images, got shape {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2).to(torch.float32).div(127.5).sub(1.0).contiguous()


def from_tensor(x: Any) -> np.ndarray:
    """Inverse of :func:`to_tensor`: NCHW in [-1, 1] -> uint8 NHWC (rounded, clamped).

    Parameters
    ----------
    x : torch.Tensor or ndarray, shape (N, C, H, W)

    Returns
    -------
    ndarray, uint8, shape (N, H, W, C)
    """
    import torch

    t = torch.as_tensor(x).detach()
    if t.ndim != 4:
        raise ValueError(f"from_tensor expects NCHW input, got shape {tuple(t.shape)}")
    t = t.to(device="cpu", dtype=torch.float32)
    t = ((t + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return t.permute(0, 2, 3, 1).contiguous().numpy()
