"""Temporary siblings for atomic writes."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def open_temp_sibling(path: Path, suffix: str) -> tuple[int, Path]:
    """Create a new hidden file next to ``path``; return (fd, temp path).

    Unlike ``tempfile.mkstemp`` (mode 0600) the file gets the usual umask-based
    permissions, so the final file is readable by collaborators and by DVC.
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:  # pragma: no cover - astronomically unlikely
            continue
    raise FileExistsError(f"could not create a temporary file next to {path}")  # pragma: no cover
