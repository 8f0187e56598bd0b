"""Each training step's examples: which ones (``batch_indices``, a function of the seed and the step alone, so
a resumed run replays the same data order), where the sources live (on the GPU, or pinned on the host), this
rank's shard of the global batch, and the batch on the training device."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.transforms import UInt8Images

__all__ = ["Batches", "batch_indices", "place_data", "step_batch", "take"]


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Examples of global step ``step``: consecutive slices of seeded per-epoch permutations."""
    start = step * batch_size
    out = []
    while len(out) < batch_size:
        epoch, pos = divmod(start + len(out), n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        out.extend(perm[pos:pos + batch_size - len(out)].tolist())
    return torch.tensor(out)


def _nbytes(source) -> int:
    return source.nbytes if isinstance(source, UInt8Images) else source.numel() * source.element_size()


def place_data(images, device: torch.device, on_device) -> tuple:
    """The training sources batches are cut from: on the GPU when asked (``auto``: when the set takes under a
    quarter of free memory), else on the host. A float tensor left on the host is pinned so copies overlap
    compute; a uint8 set (UInt8Images, counted at its uint8 size) stays as it is, since pinning would read a
    memory-mapped set whole: each batch is pinned on its way instead (``take``)."""
    sources = images if isinstance(images, tuple) else (images,)
    if device.type != "cuda":
        return sources
    if on_device == "auto":
        free, _ = torch.cuda.mem_get_info(device)
        on_device = sum(_nbytes(t) for t in sources) < free / 4
    if on_device:
        return tuple(t.to(device) for t in sources)
    return tuple(t if isinstance(t, UInt8Images) else t.pin_memory() for t in sources)


def take(source, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rows ``idx`` of one training source on ``device``; a uint8 set is gathered as uint8 and converted to
    float in [-1, 1] on the device, so only the batch ever exists as float."""
    if isinstance(source, UInt8Images):
        return source.batch(idx, device, pin=device.type == "cuda" and source.device.type == "cpu")
    return source[idx.to(source.device)].to(device, non_blocking=True)


@dataclass
class Batches:
    """Each step's examples: the placed sources, this rank's shard of the global batch, the data-order seed."""
    sources: tuple
    as_tuple: bool  # the caller passed a tuple of sources (data and labels): the loss gets a tuple
    batch_size: int
    shard: slice
    seed: int
    device: torch.device
    channels_last: bool


def step_batch(b: Batches, step: int):
    idx = batch_indices(len(b.sources[0]), b.batch_size, step, b.seed)[b.shard]
    x0 = tuple(take(t, idx, b.device) for t in b.sources)
    if b.channels_last:
        x0 = tuple(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in x0)
    return x0 if b.as_tuple else x0[0]
