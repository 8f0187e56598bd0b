"""On-disk format of a prepared dataset: ``train.npz``, ``test.npz``, ``manifest.json``.

Every file is written to a temporary name in the destination directory and
moved into place with :func:`os.replace`, so an interrupted run never leaves a
file that looks complete. ``manifest.json`` is removed before and written
after the arrays: it is the commit marker, and it carries the sha256 that
:func:`load_split` checks.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._fs import open_temp_sibling
from .download import file_digest

__all__ = [
    "MANIFEST_NAME",
    "SPLITS",
    "IntegrityError",
    "atomic_path",
    "load_split",
    "read_manifest",
    "save_npz",
    "sha256_file",
    "verify_file",
    "write_manifest",
]

MANIFEST_NAME = "manifest.json"
SPLITS = ("train", "test")

# A fixed timestamp: np.savez stamps members with the current time, which
# would change the npz bytes (and its sha256) on every run.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class IntegrityError(RuntimeError):
    """A prepared data file does not match its manifest."""


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    return file_digest(path, "sha256")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place on success.

    On any exception (KeyboardInterrupt included) the temporary file is
    removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_path = open_temp_sibling(path, ".tmp")
    os.close(fd)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> str:
    """Write an uncompressed, byte-reproducible ``.npz`` atomically.

    Stored (not deflated) so the bytes do not depend on the zlib build.
    Returns the sha256 of the written file.
    """
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, value in arrays.items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = 0o644 << 16
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(value), allow_pickle=False)
                zf.writestr(info, buf.getvalue())
        digest = sha256_file(tmp)
    return digest


def write_manifest(out_dir: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Atomically write ``manifest.json`` (sorted keys, so it is reproducible)."""
    path = Path(out_dir) / MANIFEST_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_manifest(data_dir: str | os.PathLike) -> dict[str, Any]:
    """Read ``manifest.json`` from a prepared dataset directory."""
    path = Path(data_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {data_dir} is not a prepared dataset (or preparation was "
            "interrupted). Run `daebench.data.prepare(...)` / the data rule to create it."
        )
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def verify_file(path: Path, sha256: str, manifest: Path, step: str, fix: str) -> None:
    """The file a manifest lists exists and has the sha256 recorded there; errors say how to rebuild it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is listed in {MANIFEST_NAME} but missing; rerun {step}")
    got = sha256_file(path)
    if got != sha256:
        raise IntegrityError(f"{path} is corrupted or was modified: sha256 {got} does not match {sha256} "
                             f"recorded in {manifest}. {fix}")


def load_split(data_dir: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load one split after checking its sha256 against the manifest.

    Parameters
    ----------
    data_dir : path
        Directory written by :func:`daebench.data.prepare`.
    split : {"train", "test"}

    Returns
    -------
    images : ndarray, uint8, shape (N, H, W, C)
    labels : ndarray, int64, shape (N,)

    Raises
    ------
    IntegrityError
        If the file's sha256 differs from the one recorded in the manifest.
    """
    manifest = read_manifest(data_dir)
    splits = manifest.get("splits", {})
    if split not in splits:
        raise ValueError(f"unknown split {split!r} in {data_dir}; available: {sorted(splits)}")
    entry = splits[split]
    path = Path(data_dir) / entry["file"]
    verify_file(path, entry["sha256"], Path(data_dir) / MANIFEST_NAME, "prepare",
                "Delete the directory and rerun prepare (or `dvc checkout` it).")
    with np.load(path, allow_pickle=False) as npz:
        images = npz["images"]
        labels = npz["labels"]
    if images.dtype != np.uint8 or images.ndim != 4 or labels.dtype != np.int64:
        raise IntegrityError(
            f"{path} has unexpected arrays: images {images.dtype}{images.shape}, "
            f"labels {labels.dtype}{labels.shape}"
        )
    return images, labels
