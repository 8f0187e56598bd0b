"""The image formats the feature-based metrics (perceptual.py, fid.py, domain_classifier.py) accept, and
the conversions between them.

Image conventions accepted by every metric function:
- floating torch tensors: NCHW in [-1, 1] (the project-wide convention);
- uint8 arrays (numpy or torch): NHWC in [0, 255], i.e. the data module's
  format and what an image file holds.
FID inputs are converted to uint8 (round((x + 1) * 127.5)) because that is
what both FID protocols see when images are saved and re-read; 1-channel
images are repeated to RGB for the ImageNet networks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["to_float_nchw", "to_rgb", "to_rgb_uint8", "to_uint8_nhwc", "torch_device"]


def to_uint8_nhwc(images: Any) -> np.ndarray:
    """uint8 NHWC numpy array from uint8 NHWC (numpy/torch) or float NCHW [-1, 1] torch."""
    if torch.is_tensor(images):
        if images.dtype == torch.uint8:
            arr = images.detach().cpu().numpy()
        elif images.is_floating_point():
            if images.dim() != 4:
                raise ValueError(f"float images must be NCHW, got shape {tuple(images.shape)}")
            q = torch.round((images.detach().float().clamp(-1, 1) + 1) * 127.5)
            arr = q.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        else:
            raise TypeError(f"unsupported tensor dtype {images.dtype}")
    elif isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise TypeError(
                "numpy images must be uint8 NHWC in [0, 255]; pass float images as a torch tensor NCHW in [-1, 1]"
            )
        arr = images
    else:
        raise TypeError(f"unsupported image container {type(images)!r}")
    if arr.ndim == 3:  # N, H, W grayscale
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"expected NHWC with 1 or 3 channels, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def to_float_nchw(images: Any) -> torch.Tensor:
    """float32 NCHW tensor in [-1, 1] from either accepted format."""
    if torch.is_tensor(images) and images.is_floating_point():
        if images.dim() != 4:
            raise ValueError(f"float images must be NCHW, got shape {tuple(images.shape)}")
        return images.float()
    arr = to_uint8_nhwc(images)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def torch_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch.device; None: CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """A float NCHW batch with 3 channels: 1 channel is repeated (as a view), 3 are kept."""
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise ValueError(f"expected 1 or 3 channels, got {x.shape[1]}")
    return x


def to_rgb_uint8(arr: np.ndarray) -> np.ndarray:
    """A uint8 NHWC array with 3 channels: 1 channel is repeated, 3 are kept."""
    return np.ascontiguousarray(np.repeat(arr, 3, axis=-1)) if arr.shape[-1] == 1 else arr
