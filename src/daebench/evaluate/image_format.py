"""The image formats the feature-based metrics (perceptual.py, fid.py, domain_classifier.py) accept, and
the conversions between them.

Image conventions accepted by every metric function:
- floating arrays (torch tensors or numpy, as a reconstruction file holds them): NCHW in [-1, 1] (the
  project-wide convention);
- uint8 arrays (numpy or torch): NHWC in [0, 255], i.e. the data module's
  format and what an image file holds.
FID inputs are converted to uint8 (round((x + 1) * 127.5)) because that is
what both FID protocols see when images are saved and re-read; 1-channel
images are repeated to RGB for the ImageNet networks. torch is imported only for torch inputs and outputs,
so the numpy scoring path (domain_numpy.py) never loads it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["float_nchw_array", "is_tensor", "to_float_nchw", "to_rgb", "to_rgb_uint8", "to_uint8_nhwc", "torch_device"]


def is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch")  # without importing torch


def _as_numpy(images: Any) -> np.ndarray:
    if is_tensor(images):
        return images.detach().cpu().numpy()
    if isinstance(images, np.ndarray):
        return images
    raise TypeError(f"unsupported image container {type(images)!r}")


def _check_float_nchw(shape: tuple) -> None:
    if len(shape) != 4 or shape[1] not in (1, 3):
        raise ValueError(f"float images must be NCHW with 1 or 3 channels, got shape {tuple(shape)}")


def to_uint8_nhwc(images: Any) -> np.ndarray:
    """uint8 NHWC numpy array from uint8 NHWC or float NCHW [-1, 1] (numpy or torch): round((x + 1) * 127.5)
    in float32."""
    arr = _as_numpy(images)
    if np.issubdtype(arr.dtype, np.floating):
        _check_float_nchw(arr.shape)
        q = np.round((np.clip(arr.astype(np.float32), -1, 1) + np.float32(1)) * np.float32(127.5))
        arr = q.astype(np.uint8).transpose(0, 2, 3, 1)
    elif arr.dtype != np.uint8:
        raise TypeError(f"unsupported image dtype {arr.dtype}: uint8 NHWC in [0, 255] or float NCHW in [-1, 1]")
    if arr.ndim == 3:  # N, H, W grayscale
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"expected NHWC with 1 or 3 channels, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def float_nchw_array(images: Any) -> np.ndarray:
    """float32 NCHW numpy array in [-1, 1] from either accepted format (uint8 u -> u / 127.5 - 1)."""
    arr = _as_numpy(images)
    if np.issubdtype(arr.dtype, np.floating):
        _check_float_nchw(arr.shape)
        return arr.astype(np.float32, copy=False)
    return to_uint8_nhwc(arr).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def to_float_nchw(images: Any):
    """float32 NCHW torch tensor in [-1, 1] from either accepted format."""
    import torch

    if torch.is_tensor(images) and images.is_floating_point():
        _check_float_nchw(tuple(images.shape))
        return images.float()
    return torch.from_numpy(float_nchw_array(images))


def torch_device(device: Any):
    """``device`` as a torch.device; None: CUDA when available, else the CPU."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def to_rgb(x: Any) -> Any:
    """A float NCHW batch with 3 channels: 1 channel is repeated (as a view), 3 are kept."""
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise ValueError(f"expected 1 or 3 channels, got {x.shape[1]}")
    return x


def to_rgb_uint8(arr: np.ndarray) -> np.ndarray:
    """A uint8 NHWC array with 3 channels: 1 channel is repeated, 3 are kept."""
    return np.ascontiguousarray(np.repeat(arr, 3, axis=-1)) if arr.shape[-1] == 1 else arr
