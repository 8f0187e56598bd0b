"""Image array helpers: deterministic resizing and tensor conversion.

Resizing is done in NumPy (float64, separable, antialiased, PIL-style
kernels) rather than with torch or PIL so that the bytes written by
``prepare`` depend only on NumPy arithmetic, not on which resampling library
or version happens to be installed.
"""

from __future__ import annotations

import mmap
import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["UInt8Images", "from_tensor", "pad_images", "resize_images", "to_tensor"]

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


class UInt8Images:
    """A training set kept as uint8 NHWC images and converted batch by batch.

    ``images`` may be an ndarray, a read-only ``np.memmap`` (``load_split(..., mmap=True)``: a set
    larger than memory) or a uint8 torch tensor (e.g. already on the GPU). :meth:`batch` gathers the
    requested rows as uint8, moves them to the training device and only there converts them to float:
    the whole set never exists as float32 (4x its size), and the host-to-device copy moves a quarter of
    the bytes. The values equal ``to_tensor(images)[idx]`` bit for bit (the same elementwise float32
    operations).

    Rows of a memory-mapped file are read with positional reads (``os.preadv``) rather than through the
    mapping: on kernels whose page cache holds large folios a page fault maps a whole folio (measured: about
    2 MB per randomly chosen 12 KB row), so random batches would map the file into the process in 2 MB
    pieces, and the resident size (which batch schedulers police) would climb towards the file's size.
    Reads copy just the rows; the page cache still serves repeated reads.
    """

    def __init__(self, images: Any):
        import torch

        if not isinstance(images, (np.ndarray, torch.Tensor)):
            raise TypeError(f"UInt8Images expects an ndarray, memmap or tensor, got {type(images).__name__}")
        if images.dtype not in (np.uint8, torch.uint8):
            raise TypeError(f"UInt8Images expects uint8 images, got {images.dtype}")
        if images.ndim != 4:
            raise ValueError(f"UInt8Images expects NHWC images, got shape {tuple(images.shape)}")
        self.images = images
        self._row_bytes = int(np.prod(images.shape[1:]))
        # A whole np.memmap (its base is the mmap itself, not a parent array: then ``offset`` is where its
        # data starts) whose rows lie C-ordered in the file can be read by position.
        self._file = None
        if (isinstance(images, np.memmap) and isinstance(images.base, mmap.mmap) and images.filename
                and images.flags.c_contiguous):
            self._file = (images.filename, int(images.offset))
        self._fd: int | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """NCHW shape of the float set this stands for."""
        n, h, w, c = self.images.shape
        return int(n), int(c), int(h), int(w)

    @property
    def nbytes(self) -> int:
        return len(self) * self._row_bytes

    @property
    def device(self) -> torch.device:
        import torch

        return self.images.device if isinstance(self.images, torch.Tensor) else torch.device("cpu")

    def _read(self, out: np.ndarray, starts: Any, counts: Any) -> np.ndarray:
        """Fill ``out`` with runs of rows (``counts[i]`` rows from row ``starts[i]``) by positional reads."""
        if self._fd is None:
            self._fd = os.open(self._file[0], os.O_RDONLY)
        flat = out.reshape(-1)
        pos = 0
        for start, count in zip(starts, counts):
            want = int(count) * self._row_bytes
            got = os.preadv(self._fd, [memoryview(flat[pos:pos + want])], self._file[1] + int(start) * self._row_bytes)
            if got != want:
                raise OSError(f"{self._file[0]}: read {got} of {want} bytes at row {start}; the file is truncated")
            pos += want
        return out

    def rows(self, idx: Any) -> np.ndarray:
        """Images ``idx`` (in that order) as a new uint8 NHWC array."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if self._file is None:
            return np.asarray(self.images[idx])  # a memmap's fancy indexing copies just these rows
        n = len(self)
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} images")
        idx = idx % n if len(idx) else idx
        out = np.empty((len(idx), *self.images.shape[1:]), dtype=np.uint8)
        return self._read(out, idx, np.ones(len(idx), dtype=np.int64))

    def to(self, device: torch.device | str, chunk_bytes: int = 256 << 20) -> UInt8Images:
        """The whole uint8 set on ``device`` (the small-set fast path), copied in chunks so a memory-mapped
        source is never read whole into host memory first."""
        import torch

        if isinstance(self.images, torch.Tensor):
            return UInt8Images(self.images.to(device))
        out = torch.empty(tuple(self.images.shape), dtype=torch.uint8, device=device)
        step = max(1, chunk_bytes // max(1, self._row_bytes))
        for start in range(0, len(self), step):
            stop = min(len(self), start + step)
            if self._file is None:
                chunk = np.array(self.images[start:stop])
            else:
                chunk = self._read(np.empty((stop - start, *self.images.shape[1:]), np.uint8), [start], [stop - start])
            out[start:stop].copy_(torch.from_numpy(chunk))
        return UInt8Images(out)

    def batch(self, idx: Any, device: torch.device | str | None = None, *, pin: bool = False) -> torch.Tensor:
        """Images ``idx`` (in that order) as a float32 NCHW tensor in [-1, 1] on ``device`` (default: where
        the images are). ``pin``: stage the uint8 rows in pinned memory, so a copy to the GPU is asynchronous."""
        import torch

        if isinstance(self.images, torch.Tensor):
            x = self.images[torch.as_tensor(idx, device=self.images.device)]
        else:
            x = torch.from_numpy(self.rows(torch.as_tensor(idx).cpu().numpy()))
            if pin:
                x = x.pin_memory()
        if device is not None:
            x = x.to(device, non_blocking=pin)
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
