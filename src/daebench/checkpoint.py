"""Checkpoint files and the training device: atomic writes, reads that name a damaged file, and the
``device`` setting resolved. A support module: torch, the standard library and ``data`` only."""
from __future__ import annotations

from pathlib import Path

import torch

from .data.store import atomic_path


def resolve_device(name: str, setting: str = "train.device") -> torch.device:
    """auto | cpu | cuda -> a device; ``setting`` names where the choice came from, for the error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{setting} is 'cuda' but no CUDA device is visible; use auto or cpu")
    return torch.device(name)


def atomic_save(obj: dict, path: Path) -> None:
    """torch.save to a temp file, fsync, then rename: a process killed mid-write (SIGKILL, OOM, preemption)
    leaves the previous file whole, and a node crash cannot leave a renamed but unwritten file. Temp files
    of writers killed earlier are removed."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)  # through a Python file: a full disk surfaces as an OSError (named by atomic_path)


class CorruptCheckpoint(RuntimeError):
    pass


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise CorruptCheckpoint(f"{path} is not a readable checkpoint (truncated or corrupted: {err}). Delete it "
                                "and rerun the job that writes it (Snakemake: --forcerun that rule)") from None


__all__ = ["CorruptCheckpoint", "atomic_save", "load_checkpoint", "resolve_device"]
