"""On-disk format of a prepared dataset: ``train.npz``, ``test.npz``, ``manifest.json``.

The ``.npz`` files are zip archives whose members are *stored* (not deflated), so each ``.npy`` member
lies contiguous in the file: :func:`load_split` with ``mmap=True`` memory-maps the images in place
(a paper-scale split is never read whole into memory), and :func:`save_npz` writes members in chunks
(an array that is itself memory-mapped is never copied whole into memory either).

Every file is written to a temporary name in the destination directory and
moved into place with :func:`os.replace`, so an interrupted run never leaves a
file that looks complete. ``manifest.json`` is removed before and written
after the arrays: it is the commit marker, and it carries the sha256 that
:func:`load_split` checks.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import io
import json
import os
import shutil
import struct
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
    "WriteError",
    "atomic_path",
    "load_split",
    "open_npz_member",
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


class WriteError(OSError):
    """An output or checkpoint could not be written (disk full, file-size or quota limit); the message
    names the file, says that its previous version is untouched, and how much space is left."""


# errno values that mean "no room": disk full, file larger than RLIMIT_FSIZE, quota exceeded
_NO_ROOM = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def _remove_stale_temps(path: Path) -> None:
    """Temp siblings of ``path`` left by writers that were killed (SIGKILL, OOM, preemption) mid-write.

    Their names carry the writer's pid (:func:`open_temp_sibling`); one whose pid is still alive on this
    host is kept. One job writes each output, so a dead writer's temp is never some other job's work.
    """
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):
        try:
            pid = int(stale.name[len(path.name) + 2:].split(".", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # alive: another writer, leave it
        except ProcessLookupError:
            pass
        except PermissionError:  # alive, another user's
            continue
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def _no_room(err: BaseException) -> OSError | None:
    """The out-of-space OSError behind ``err``, if any. Writers in C++ (torch.save's zip writer) turn the
    failed Python ``write`` into a RuntimeError whose context holds the OSError."""
    seen = set()
    while err is not None and id(err) not in seen and not isinstance(err, WriteError):
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _NO_ROOM:
            return err
        err = err.__cause__ or err.__context__
    return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; fsync it and move it into place on success.

    The one way the project writes a file that a later step reads (outputs, checkpoints, tables,
    figures): a writer killed at any moment leaves either the previous file or the new one, never a
    part, and a node crash cannot leave a renamed but unwritten file. The temporary name ends with
    ``path``'s own suffix, so writers that pick a format by extension (``np.savez``, ``savefig``) keep it.

    On any exception (KeyboardInterrupt included) the temporary file is removed and ``path`` is left
    untouched; a full disk or a file-size limit becomes a :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    fd, tmp_path = open_temp_sibling(path, ".tmp" + path.suffix)
    os.close(fd)
    try:
        yield tmp_path
        fd = os.open(tmp_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_path, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        no_room = _no_room(err)
        if no_room is not None:
            free = shutil.disk_usage(path.parent).free
            raise WriteError(no_room.errno, f"could not write {path}: {no_room.strerror} ({free / 2**20:.0f} MiB free "
                                        f"on its file system). {path} was left as it was (its previous version, "
                                        "if any, is intact); free space or raise the limit, then rerun",
                             str(path)) from err
        raise


def _npy_header(array: np.ndarray) -> bytes:
    """The header np.save writes for ``array`` (format 1.0: every array a prepared dataset holds fits it)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(array))
    return buf.getvalue()


# Rows copied per write: bounds the memory of writing a memory-mapped array to about this many bytes.
_WRITE_BYTES = 64 << 20


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> str:
    """Write an uncompressed, byte-reproducible ``.npz`` atomically.

    Stored (not deflated) so the bytes do not depend on the zlib build, and so that
    :func:`open_npz_member` can memory-map a member. Each member is written in chunks of rows
    with its size declared up front, which gives the same bytes as ``ZipFile.writestr`` of the
    whole ``.npy`` (the format every prepared dataset so far was written in) without holding it.
    Returns the sha256 of the written file.
    """
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, value in arrays.items():
                value = np.ascontiguousarray(value)  # no copy when already C-ordered (a memmap stays mapped)
                header = _npy_header(value)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = 0o644 << 16
                # Known size: zipfile then decides zip64 and writes the local header as writestr does.
                info.file_size = len(header) + value.nbytes
                rows = max(1, _WRITE_BYTES // max(1, value[:1].nbytes))
                with zf.open(info, mode="w") as dest:
                    dest.write(header)
                    # rows of the C-ordered bytes (ascontiguousarray made every array at least 1-d)
                    flat = value.reshape(value.shape[0], int(np.prod(value.shape[1:])))
                    for start in range(0, len(flat), rows):
                        dest.write(memoryview(np.ascontiguousarray(flat[start:start + rows])).cast("B"))
        digest = sha256_file(tmp)
    return digest


# Local file header of a zip member (APPNOTE 4.3.7): 30 bytes, then the name and the extra field.
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_LOCAL_MAGIC = b"PK\x03\x04"


def open_npz_member(path: str | os.PathLike, key: str) -> np.ndarray:
    """Memory-map array ``key`` of a stored ``.npz`` read-only, without reading its data.

    Raises
    ------
    IntegrityError
        The member is missing, compressed, or its header is not an ``.npy`` header.
    """
    path = Path(path)
    with zipfile.ZipFile(path) as zf:
        try:
            info = zf.getinfo(f"{key}.npy")
        except KeyError:
            raise IntegrityError(f"{path} has no array {key!r} (members: {zf.namelist()})") from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise IntegrityError(f"{path}: {key}.npy is compressed and cannot be memory-mapped; rewrite it with "
                             "daebench.data.store.save_npz (rerun prepare)")
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size))
        if fields[0] != _LOCAL_MAGIC:
            raise IntegrityError(f"{path}: no local zip header for {key}.npy at byte {info.header_offset}")
        # The local extra field (zip64 sizes) may differ from the central directory's: read its own length.
        fh.seek(info.header_offset + _LOCAL_HEADER.size + fields[10] + fields[11])
        try:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(fh)
        except ValueError as err:
            raise IntegrityError(f"{path}: {key}.npy does not start with an .npy header ({err})") from None
        offset = fh.tell()
    if dtype.hasobject:
        raise IntegrityError(f"{path}: {key}.npy holds Python objects, which a prepared dataset never does")
    if int(np.prod(shape)) == 0:  # mmap cannot map zero bytes
        return np.empty(shape, dtype=dtype)
    mapped = np.memmap(path, dtype=dtype, mode="r", shape=shape or (1,), offset=offset, order="F" if fortran else "C")
    return mapped if shape else np.array(mapped[0])  # np.memmap turns shape () into (1,)


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


def load_split(data_dir: str | os.PathLike, split: str, *, mmap: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Load one split after checking its sha256 against the manifest.

    Parameters
    ----------
    data_dir : path
        Directory written by :func:`daebench.data.prepare`.
    split : {"train", "test"}
    mmap : bool
        Memory-map the images read-only (:func:`open_npz_member`) instead of reading them: pages are
        read when indexed, so a split larger than memory can be trained on batch by batch. The values
        are the same as with ``mmap=False``. The checksum is still verified (reading the file once,
        in chunks, through the page cache rather than into this process).

    Returns
    -------
    images : ndarray (a read-only ``np.memmap`` with ``mmap=True``), uint8, shape (N, H, W, C)
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
    if mmap:
        images = open_npz_member(path, "images")
        labels = np.array(open_npz_member(path, "labels"))
    else:
        with np.load(path, allow_pickle=False) as npz:
            images = npz["images"]
            labels = npz["labels"]
    if images.dtype != np.uint8 or images.ndim != 4 or labels.dtype != np.int64:
        raise IntegrityError(
            f"{path} has unexpected arrays: images {images.dtype}{images.shape}, "
            f"labels {labels.dtype}{labels.shape}"
        )
    return images, labels
