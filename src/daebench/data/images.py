"""Paper-scale image datasets read from image files: CelebA 64, FFHQ 128 and LSUN Bedroom 128.

A source is a folder (searched recursively for .png/.jpg/.jpeg/.webp files), a .zip archive of
images (read without extracting) or an LMDB database of encoded images (LSUN's release format; needs
the optional ``lmdb`` package). Files are taken in sorted order of their relative path, so the
arrays depend only on the files, never on the file system's listing order.

Each image is decoded to RGB, cropped to a square (the centre square, or a fixed box such as
DiffAE's CelebA crop) and resized to the target size with the antialiased bicubic filter of
:mod:`daebench.data.transforms` (NumPy float64, one rounding at the end). The train/test split is the
dataset's official one where the source carries it (CelebA's ``list_eval_partition.txt``), otherwise
a seeded random split of ``test_fraction``. ``max_train``/``max_test`` are applied *before* decoding,
with the same seeded rule :func:`daebench.data.prepare` uses, so a capped LSUN never decodes its
three million images.

Only LSUN has a public download (http://dl.yf.io/lsun/, no login, no published checksum: the sha256
of the file used is recorded in the manifest). CelebA and FFHQ are distributed through Google Drive,
so they are read from a local copy whose location the user gives (``dataset_paths.<name>``).
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .download import DownloadError, fetch
from .transforms import _weights, quantize

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageSource",
    "LocalDataError",
    "build_image_dataset",
    "celeba_crop_box",
    "center_crop_box",
    "local_path",
    "open_source",
    "read_images",
    "seeded_split",
    "subset_indices",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
_CHUNK = 256  # images decoded (and resized) per batch


class LocalDataError(DownloadError):
    """A dataset's local copy is missing, incomplete or unreadable."""


# --------------------------------------------------------------------------- where the data is

def local_path(name: str, path: str | os.PathLike | None, hint: str) -> Path:
    """The local copy ``dataset_paths.<name>`` names, checked to exist; errors say what to put where."""
    if path is None or str(path).strip() == "":
        raise LocalDataError(f"{hint}")
    p = Path(os.path.expanduser(str(path)))
    if not p.exists():
        raise LocalDataError(f"dataset_paths.{name} is {str(path)!r}, which does not exist "
                             f"(resolved to {p.resolve()}). {hint}")
    return p


# --------------------------------------------------------------------------- sources

@dataclass
class ImageSource:
    """Encoded images of one local copy, by name in sorted order; ``read(name)`` gives the file's bytes."""

    description: str
    names: list[str]
    read: Callable[[str], bytes]
    close: Callable[[], None] = lambda: None


def _folder_source(root: Path) -> ImageSource:
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    return ImageSource(f"folder {root.resolve()}", names, lambda n: (root / n).read_bytes())


def _zip_source(path: Path) -> ImageSource:
    zf = zipfile.ZipFile(path)
    names = sorted(n for n in zf.namelist()
                   if not n.endswith("/") and PurePosixPath(n).suffix.lower() in IMAGE_EXTENSIONS
                   and not PurePosixPath(n).name.startswith(".") and "__MACOSX" not in n)
    return ImageSource(f"zip archive {path.resolve()}", names, zf.read, zf.close)


def _lmdb_source(path: Path) -> ImageSource:
    try:
        import lmdb
    except ImportError:
        raise LocalDataError(
            f"{path} is an LMDB database (LSUN's release format), which needs the lmdb package: "
            "`python -m pip install lmdb`, or export the images to a folder with LSUN's "
            "`python data.py export <db> --out_dir <folder>` and point dataset_paths at that folder") from None
    env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False, max_readers=1)
    txn = env.begin(write=False)
    names = [k.decode("ascii") for k in txn.cursor().iternext(keys=True, values=False)]  # sorted by key

    def read(name: str) -> bytes:
        value = txn.get(name.encode("ascii"))
        if value is None:  # pragma: no cover - the key came from this database
            raise KeyError(name)
        return bytes(value)

    def close() -> None:
        txn.abort()
        env.close()

    return ImageSource(f"LMDB {path.resolve()}", names, read, close)


def open_source(path: Path) -> ImageSource:
    """A folder of images, a .zip of images, or an LMDB directory (holding ``data.mdb``)."""
    if path.is_file() and path.suffix.lower() == ".zip":
        return _zip_source(path)
    if path.is_dir() and (path / "data.mdb").is_file():
        return _lmdb_source(path)
    if path.is_dir():
        return _folder_source(path)
    raise LocalDataError(f"{path} is neither a folder of images, a .zip archive of images nor an LMDB directory")


# --------------------------------------------------------------------------- crop, resize

def center_crop_box(h: int, w: int) -> tuple[int, int, int]:
    """(top, left, side) of the central square."""
    s = min(h, w)
    return (h - s) // 2, (w - s) // 2, s


def celeba_crop_box(h: int, w: int) -> tuple[int, int, int]:
    """DiffAE's CelebA crop (``d2c_crop``, from D2C): the 128x128 square at rows 57-185, columns 25-153 of
    the 218x178 aligned-and-cropped images (centre (row 121, col 89)); other sizes: the central square."""
    if (h, w) == (218, 178):
        return 57, 25, 128
    return center_crop_box(h, w)


def _decode(data: bytes, name: str, crop: Callable[[int, int], tuple[int, int, int]]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            a = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise LocalDataError(f"cannot decode image {name!r} ({type(exc).__name__}: {exc}); replace or remove it")
    top, left, s = crop(a.shape[0], a.shape[1])
    return a[top:top + s, left:left + s]


def resize_crops(crops: list[np.ndarray], size: int) -> np.ndarray:
    """Square HWC uint8 crops (any sizes) -> [N, size, size, C]; runs of equal crop size share one resampling
    matrix (_resize_batch)."""
    out, i = [], 0
    while i < len(crops):
        j = i
        while j < len(crops) and crops[j].shape == crops[i].shape:
            j += 1
        out.append(_resize_batch(np.stack(crops[i:j]), size))
        i = j
    return np.concatenate(out)


def _resize_batch(batch: np.ndarray, size: int) -> np.ndarray:
    """Square NHWC uint8 batch -> size x size, antialiased bicubic (the kernel of transforms.resize_images),
    by two BLAS contractions in float64, rounded once."""
    s = batch.shape[1]
    if s == size:
        return batch
    w = _weights(s, size, "bicubic")  # (size, s), rows sum to 1
    x = batch.astype(np.float64)
    rows = np.tensordot(w, x, axes=([1], [1]))      # (size, N, s, C)
    both = np.tensordot(w, rows, axes=([1], [2]))   # (size_w, size_h, N, C)
    return quantize(both.transpose(2, 1, 0, 3))


def read_images(source: ImageSource, names: Sequence[str], size: int,
                crop: Callable[[int, int], tuple[int, int, int]] = center_crop_box,
                progress: bool = False, workers: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Decode, crop and resize ``names`` of ``source`` into a uint8 (N, size, size, 3) array, in order: ``out``
    when given (e.g. a memory-mapped file, for a set larger than memory), else a new array."""
    shape = (len(names), size, size, 3)
    if out is None:
        out = np.empty(shape, dtype=np.uint8)
    elif out.shape != shape or out.dtype != np.uint8:
        raise ValueError(f"read_images: out is {out.dtype}{out.shape}, expected uint8{shape}")
    workers = workers or min(8, os.cpu_count() or 1)
    try:
        from ..progress import tqdm
        bar = tqdm(total=len(names), desc="images", unit="img", disable=not progress, leave=False)
    except ImportError:  # pragma: no cover - progress is cosmetic
        bar = None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(names), _CHUNK):
            chunk = list(names[start:start + _CHUNK])
            raw = [source.read(n) for n in chunk]  # sequential: zip and LMDB handles stay in one thread
            crops = list(pool.map(_decode, raw, chunk, [crop] * len(chunk)))
            out[start:start + len(crops)] = resize_crops(crops, size)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return out


# --------------------------------------------------------------------------- split and caps

def subset_indices(n_total: int, n: int | None, seed: int, stream: int) -> np.ndarray:
    """The sorted indices :func:`daebench.data.prepare` keeps of ``n_total`` items under a cap ``n``: the first
    ``n`` of a permutation seeded by ``[seed, stream]`` (stream 1 train, 2 test)."""
    if n is None or n >= n_total:
        return np.arange(n_total)
    rng = np.random.default_rng([seed, stream])
    return np.sort(rng.permutation(n_total)[:n])


def seeded_split(n_total: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices: ``round(test_fraction * n)`` test items (at least 1), from a permutation
    seeded by ``[seed, 0]``."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if n_total < 2:
        raise LocalDataError(f"need at least 2 images for a train/test split, found {n_total}")
    n_test = min(max(1, round(test_fraction * n_total)), n_total - 1)
    perm = np.random.default_rng([seed, 0]).permutation(n_total)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _celeba_partition(names: Sequence[str], where: Path) -> dict[str, int] | None:
    """CelebA's list_eval_partition.txt (``000001.jpg 0``; 0 train, 1 val, 2 test) beside the images or one
    folder up, by file name; None when absent."""
    folder = where if where.is_dir() else where.parent
    for cand in (folder / "list_eval_partition.txt", folder.parent / "list_eval_partition.txt"):
        if cand.is_file():
            table = {}
            for line in cand.read_text().split("\n"):
                parts = line.split()
                if len(parts) == 2 and parts[1] in ("0", "1", "2"):
                    table[parts[0]] = int(parts[1])
            log.info("official CelebA split from %s", cand)
            return table
    return None


# --------------------------------------------------------------------------- one builder for all

def build_image_dataset(name: str, *, path: str | os.PathLike | None, image_size: int, seed: int,
                        test_fraction: float, max_train: int | None, max_test: int | None, progress: bool,
                        hint: str, crop: Callable[[int, int], tuple[int, int, int]] = center_crop_box,
                        official: str | None = None, download: Callable[[], tuple[Path, dict]] | None = None,
                        preprocessing: str = "", scratch_dir: Path | None = None) -> dict:
    """Read an image dataset from ``path`` (or from ``download()`` when ``path`` is None and one exists).

    ``official``: "celeba" reads CelebA's list_eval_partition.txt when present (train 0, test 2).
    ``scratch_dir``: decode each split into a memory-mapped ``.npy`` there instead of into memory (the
    caller writes the split out and removes the directory), so a full LSUN (146 GB as uint8) is prepared in
    bounded memory.
    Returns the builder dict :func:`daebench.data.prepare` expects (labels are all 0: one class).
    """
    verified: dict[str, Any] = {}
    if path is None and download is not None:
        where, verified = download()
    else:
        where = local_path(name, path, hint)
    source = open_source(where)
    try:
        names = source.names
        if not names:
            raise LocalDataError(f"{source.description} holds no {'/'.join(IMAGE_EXTENSIONS)} images. {hint}")
        split_name, frac = "seeded", float(test_fraction)
        part = _celeba_partition(names, where) if official == "celeba" else None
        if part is not None:
            keys = [PurePosixPath(n).name for n in names]
            missing = [k for k in keys if k not in part]
            if missing:
                raise LocalDataError(f"list_eval_partition.txt beside {where} does not list {len(missing)} of the "
                                     f"images (e.g. {missing[0]!r}); remove it for a seeded split, or fix the folder")
            train = np.array([i for i, k in enumerate(keys) if part[k] == 0], dtype=np.int64)
            test = np.array([i for i, k in enumerate(keys) if part[k] == 2], dtype=np.int64)
            split_name, frac = "official (list_eval_partition.txt: train = 0, test = 2; val unused)", None
        else:
            train, test = seeded_split(len(names), frac, seed)
        train = train[subset_indices(len(train), max_train, seed, 1)]
        test = test[subset_indices(len(test), max_test, seed, 2)]
        log.info("%s: %d images in %s; decoding %d train + %d test", name, len(names), source.description,
                 len(train), len(test))
        arrays = {}
        for split, idx in (("train", train), ("test", test)):
            out = None
            if scratch_dir is not None and len(idx):  # (a memmap cannot have zero bytes)
                out = np.lib.format.open_memmap(Path(scratch_dir) / f"{split}.npy", mode="w+", dtype=np.uint8,
                                                shape=(len(idx), image_size, image_size, 3))
            arrays[split] = read_images(source, [names[i] for i in idx], image_size, crop, progress, out=out)
    finally:
        source.close()
    return {
        "train": (arrays["train"], np.zeros(len(train), dtype=np.int64)),
        "test": (arrays["test"], np.zeros(len(test), dtype=np.int64)),
        "source": f"{source.description} ({len(names)} images)",
        "verified": verified,
        "split": split_name,
        "test_fraction": frac,
        "preprocessing": preprocessing or f"RGB, square crop, antialiased bicubic resize to {image_size}, uint8",
    }


# --------------------------------------------------------------------------- LSUN download

LSUN_URL = "http://dl.yf.io/lsun/scenes/"
LSUN_BEDROOM_ARCHIVE = "bedroom_train_lmdb.zip"  # ~43 GB, 3,033,042 images; no published checksum


def lsun_download(download_dir: Path, base_url: str | None, checksum: str | None,
                  progress: bool, offline: bool = False) -> tuple[Path, dict]:
    """Fetch bedroom_train_lmdb.zip (unless present; ``offline``: it must be) and extract its LMDB once;
    returns (lmdb dir, records)."""
    folder = Path(download_dir) / "lsun_bedroom128"
    url = ((base_url.rstrip("/") + "/") if base_url else LSUN_URL) + LSUN_BEDROOM_ARCHIVE
    archive = folder / LSUN_BEDROOM_ARCHIVE
    record = fetch(url, archive, checksum, progress=progress, offline=offline)
    db = folder / "bedroom_train_lmdb"
    done = folder / ".bedroom_train_lmdb.extracted"
    if not (done.is_file() and done.read_text().strip() == record["checksum"]):
        tmp = folder / ".bedroom_train_lmdb.partial"
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        try:
            with zipfile.ZipFile(archive) as zf:
                members = [m for m in zf.namelist() if m.endswith(".mdb")]
                if not any(PurePosixPath(m).name == "data.mdb" for m in members):
                    raise LocalDataError(f"{archive} holds no data.mdb (members: {zf.namelist()[:5]}); it is not "
                                         "LSUN's LMDB archive. Delete it and rerun, or check data.base_url")
                tmp.mkdir(parents=True)
                for m in members:
                    with zf.open(m) as src, open(tmp / PurePosixPath(m).name, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 24)
        except zipfile.BadZipFile as exc:
            raise LocalDataError(f"{archive} is not a readable zip ({exc}); delete it and rerun") from exc
        shutil.rmtree(db, ignore_errors=True)
        os.replace(tmp, db)
        done.write_text(record["checksum"] + "\n")
    return db, {LSUN_BEDROOM_ARCHIVE: record}
