"""Your own images: the dataset ``images``, read from a folder of image files or from one ``.npz`` file.

Selected with ``dataset: images``, located by ``dataset_paths.images``; ``data.images`` sets the output
``image_size`` (default 32), ``channels`` (1 or 3, default 3) and ``fit`` (default ``resize``).

Folder
    Image files (.png, .jpg, .jpeg, .webp) of any size, either all at the top level (no labels) or in one
    level of class subfolders (``cat/001.png``, ``dog/x.jpg``): the sorted subfolder names are the label
    names, and label ``i`` is the ``i``-th of them. Hidden files and folders (names starting with ".") and
    files with other extensions are skipped. Pillow decodes each image to RGB (channels 3) or to its luma
    ``L`` (channels 1); an alpha channel is dropped, EXIF orientation is not applied, and 16-bit or float
    images (Pillow modes I, I;16, F) are refused.
``.npz``
    ``images``: uint8 (0..255), or float (float16/32/64, finite) in [0, 1] or in [-1, 1]: an array whose
    minimum is >= 0 is read as [0, 1]. Other dtypes (int64, uint16, bool, ...) and other ranges (floats in
    0..255) are refused. Layout NHWC when the last axis has 1 or 3 entries, else NCHW when axis 1 has;
    (N, H, W) is one channel. ``labels`` (optional): integers >= 0, one per image; label names "0" .. "max".
    Channels are converted when they differ from ``data.images.channels``: 3 -> 1 by the ITU-R 601-2 luma
    weights (0.299, 0.587, 0.114; Pillow's "L"), 1 -> 3 by repetition.

Without labels the dataset is one class: every label is 0 and the label names are ``("image",)``. Everything
downstream works; the domain classifier (``fd_domain`` and the other domain-feature metrics) then trains on a
single class, so those metrics mean little, as for the face and bedroom sets.

``fit``
    ``resize``: the centre square, then the antialiased bicubic resize of :mod:`daebench.data.transforms`
    (as :mod:`daebench.data.images` does; float64, rounded once at the end); ``crop``: the centre
    ``image_size`` x ``image_size`` square, no resampling (smaller images are refused); ``none``: every image
    must already be ``image_size`` x ``image_size`` (values are kept exactly).

Split: seeded (``data.seed``, ``data.test_fraction``), stratified by label when there are labels
(:func:`daebench.data.digits.stratified_split`), else :func:`daebench.data.images.seeded_split`. ``max_train``
/ ``max_test`` are applied before decoding with the rule :func:`daebench.data.prepare` uses
(:func:`daebench.data.images.subset_indices`).

Provenance: the manifest's ``source_checksums`` records the sha256 of what was read: of the ``.npz`` file, or,
for a folder, over its image files in sorted order of relative path (for each: the path in UTF-8, a NUL
byte, its size as 8 bytes big-endian, its bytes). Every file's header is read up front (for the digest and
the size checks); pixels are decoded only for the images kept.

Bad input raises :class:`ImageSourceError` (a :class:`~daebench.data.images.LocalDataError` and a
``ValueError``) naming the file and saying how to fix it, before anything is written.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .digits import stratified_split
from .images import (
    IMAGE_EXTENSIONS,
    LocalDataError,
    center_crop_box,
    local_path,
    resize_crops,
    seeded_split,
    subset_indices,
)
from .transforms import quantize, resize_images

__all__ = ["DEFAULT_SIZE", "FITS", "HINT", "UNLABELLED", "ImageSourceError", "build_user_images", "folder_sha256"]

log = logging.getLogger(__name__)

NAME = "images"
DEFAULT_SIZE = 32
FITS = ("resize", "crop", "none")
UNLABELLED = ("image",)  # label names of a dataset without labels (one class, every label 0)
_CHUNK = 256  # images decoded (or converted) per batch
_MAX_CLASSES = 100_000  # npz labels are class indices; a larger one is an id, not a class
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # Pillow modes with more than 8 bits per sample

HINT = ("images reads your own data: set dataset_paths.images in params.yaml (or your --configfile) to a folder of "
        "PNG/JPEG images (all at its top level, or in one level of class subfolders whose sorted names become the "
        "labels) or to a .npz file with an `images` array (uint8, or float in [0, 1] or [-1, 1]; NHWC or NCHW) and "
        "optional integer `labels`; size, channels and fitting are data.images.image_size / channels / fit - see "
        "README, 'Your own images'.")


class ImageSourceError(LocalDataError, ValueError):
    """Input of the ``images`` dataset that cannot be used; the message names the file and the fix."""


# --------------------------------------------------------------------------- fitting to image_size

def _fit_box(fit: str, size: int) -> Callable[[int, int], tuple[int, int, int]]:
    """(h, w) -> (top, left, side) of the square kept before resizing to ``size``."""
    if fit == "resize":
        return center_crop_box
    return lambda h, w: ((h - size) // 2, (w - size) // 2, size)  # crop; none (h = w = size): the whole image


def _size_problem(fit: str, size: int, h: int, w: int) -> str | None:
    """Why an h x w image cannot be fitted to ``size`` under ``fit``; None when it can."""
    if fit == "none" and (h, w) != (size, size):
        return (f"is {w}x{h} pixels (width x height), but data.images.fit is none, which needs every image to be "
                f"{size}x{size} (data.images.image_size): set data.images.fit to resize or crop, or image_size to "
                f"the images' size")
    if fit == "crop" and min(h, w) < size:
        return (f"is {w}x{h} pixels (width x height), smaller than data.images.image_size {size}: data.images.fit "
                f"crop cuts the centre {size}x{size} square out of each image, without resampling; set "
                "data.images.fit to resize, or a smaller image_size")
    return None


# --------------------------------------------------------------------------- a folder of image files

def _scan_folder(root: Path) -> tuple[list[str], np.ndarray, tuple[str, ...] | None]:
    """Image files under ``root`` (sorted relative paths), their labels and the label names (None: no labels)."""
    files, dirs, skipped = [], [], 0
    for p in root.rglob("*"):
        parts = p.relative_to(root).parts
        if any(part.startswith(".") for part in parts):
            continue
        if p.is_dir():
            if len(parts) == 1:
                dirs.append(parts[0])
        elif p.suffix.lower() in IMAGE_EXTENSIONS:
            files.append(p.relative_to(root).as_posix())
        else:
            skipped += 1
    files.sort()
    if skipped:
        log.info("images: skipped %d files under %s that are not %s images", skipped, root, "/".join(IMAGE_EXTENSIONS))
    if not files:
        raise ImageSourceError(f"dataset_paths.images is the folder {root}, which holds no image files "
                               f"({'/'.join(IMAGE_EXTENSIONS)}) at its top level or in class subfolders. {HINT}")
    deep = [f for f in files if f.count("/") > 1]
    if deep:
        raise ImageSourceError(f"{root / deep[0]} is more than one folder deep in {root}: put the images at its top "
                               "level (no labels) or directly inside one level of class subfolders (<class>/<image>)")
    top = [f for f in files if "/" not in f]
    nested = [f for f in files if "/" in f]
    if top and nested:
        raise ImageSourceError(f"{root} mixes images at its top level (e.g. {root / top[0]}) with images in class "
                               f"subfolders (e.g. {root / nested[0]}): put every image in a class subfolder, or all "
                               "of them at the top level (then there are no labels)")
    if top:
        return files, np.zeros(len(files), dtype=np.int64), None
    classes = sorted(dirs)
    empty = sorted(set(classes) - {f.split("/", 1)[0] for f in files})
    if empty:
        raise ImageSourceError(f"class folder {root / empty[0]} holds no image files ({'/'.join(IMAGE_EXTENSIONS)}): "
                               "add images to it, or remove it (or rename it to start with '.') so it is no class")
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[f.split("/", 1)[0]] for f in files], dtype=np.int64)
    return files, labels, tuple(classes)


def _pil_errors() -> tuple[type[BaseException], ...]:
    """What Pillow raises for a file it cannot read or decode."""
    from PIL import Image, UnidentifiedImageError

    return (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError)


def _why(exc: BaseException) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):  # its message names a BytesIO, not the file
        return "Pillow does not recognise its format"
    return f"{type(exc).__name__}: {exc}"


def _header(data: bytes, file: Path) -> tuple[int, int]:
    """(height, width) of an encoded image, read from its header; errors name ``file``."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            mode = im.mode
    except _pil_errors() as exc:
        raise ImageSourceError(f"cannot read image {file} ({_why(exc)}): the file is not a readable image; replace "
                               "or remove it") from None
    if mode in _WIDE_MODES:
        raise ImageSourceError(f"{file} is a mode {mode} image (more than 8 bits per sample), which is not supported: "
                               "save it as 8-bit (e.g. PIL: im.convert('RGB') or im.convert('L')), or remove it")
    return h, w


def folder_sha256(root: Path, files: list[str], check: Callable[[bytes, Path], None] | None = None) -> str:
    """sha256 over ``files`` (relative paths, in the given order): for each, its path in UTF-8, NUL, its size as
    8 bytes big-endian and its bytes. ``check(bytes, path)`` is called on each file as it is read."""
    h = hashlib.sha256()
    for rel in files:
        path = root / rel
        data = path.read_bytes()
        h.update(rel.encode("utf-8") + b"\0" + len(data).to_bytes(8, "big"))
        h.update(data)
        if check is not None:
            check(data, path)
    return h.hexdigest()


@dataclass
class _Input:
    """One input, scanned and checked: labels of every image, and ``read(idx, out)`` to fill ``out``."""

    description: str
    labels: np.ndarray
    label_names: tuple[str, ...] | None  # None: no labels
    checksum_name: str
    checksum: str
    note: str
    read: Callable[[np.ndarray, np.ndarray], None]
    preprocessing: str


def _folder_input(root: Path, size: int, channels: int, fit: str, progress: bool) -> _Input:
    files, labels, names = _scan_folder(root)
    sizes: list[tuple[int, int]] = []

    def check(data: bytes, path: Path) -> None:
        h, w = _header(data, path)
        problem = _size_problem(fit, size, h, w)
        if problem:
            found = Counter(sizes + [(h, w)])
            seen = ", ".join(f"{w_}x{h_} ({n})" for (h_, w_), n in found.most_common(4))
            raise ImageSourceError(f"{path} {problem} (sizes read so far, width x height (files): {seen})")
        sizes.append((h, w))

    digest = folder_sha256(root, files, check)
    box = _fit_box(fit, size)
    mode = "RGB" if channels == 3 else "L"

    def decode(data: bytes, path: Path) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as im:
                a = np.asarray(im.convert(mode))
        except _pil_errors() as exc:
            raise ImageSourceError(f"cannot decode image {path} ({_why(exc)}): the file is damaged or truncated; "
                                   "replace or remove it") from None
        a = a[..., None] if a.ndim == 2 else a
        top, left, s = box(a.shape[0], a.shape[1])
        return a[top:top + s, left:left + s]

    def read(idx: np.ndarray, out: np.ndarray) -> None:
        bar = _bar(len(idx), progress)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for start in range(0, len(idx), _CHUNK):
                paths = [root / files[i] for i in idx[start:start + _CHUNK]]
                crops = list(pool.map(decode, [p.read_bytes() for p in paths], paths))
                out[start:start + len(crops)] = resize_crops(crops, size)
                if bar is not None:
                    bar.update(len(paths))
        if bar is not None:
            bar.close()

    kind = f"{len(names)} class subfolders" if names else "no class subfolders"
    return _Input(
        description=f"folder {root.resolve()} ({len(files)} images, {kind})",
        labels=labels, label_names=names, checksum_name=root.name or str(root), checksum=digest,
        note=("sha256 over the image files in sorted order of relative path: for each, the path (UTF-8), NUL, "
              "its size (8 bytes big-endian), its bytes"),
        read=read,
        preprocessing=(f"{'RGB' if channels == 3 else 'luma (L)'} (Pillow); " + _fit_text(fit, size) + "; uint8"),
    )


def _fit_text(fit: str, size: int) -> str:
    return {"resize": f"centre square, antialiased bicubic resize to {size}x{size}",
            "crop": f"centre {size}x{size} crop, no resampling",
            "none": f"as given ({size}x{size})"}[fit]


def _bar(total: int, progress: bool):
    try:
        from ..progress import tqdm
    except ImportError:  # pragma: no cover - progress is cosmetic
        return None
    return tqdm(total=total, desc="images", unit="img", disable=not progress, leave=False)


# --------------------------------------------------------------------------- one .npz file

def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    fix = f"save it with numpy.savez({path.name!r}, images=x, labels=y) (labels optional)"
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            npy = fh.read(6) == b"\x93NUMPY"
        raise ImageSourceError(f"{path} is {'a single .npy array' if npy else 'not an .npz file (no zip archive)'}, "
                               f"not an .npz archive of named arrays; {fix}")
    try:
        f = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ImageSourceError(f"cannot read {path} as a .npz file ({type(exc).__name__}: {exc}); {fix}") from None
    if not isinstance(f, np.lib.npyio.NpzFile):  # pragma: no cover - a zip archive loads as one
        raise ImageSourceError(f"{path} is not an .npz archive of named arrays; {fix}")
    with f:
        if "images" not in f.files:
            raise ImageSourceError(f"{path} has no `images` array (it holds: {', '.join(sorted(f.files)) or 'nothing'}); "
                                   f"{fix}")
        try:
            images = f["images"]
            labels = f["labels"] if "labels" in f.files else None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ImageSourceError(f"cannot read the arrays of {path} ({type(exc).__name__}: {exc}); store plain "
                                   f"numeric arrays (no Python objects): {fix}") from None
    return images, labels


def _npz_layout(x: np.ndarray, path: Path) -> tuple[np.ndarray, str]:
    """NHWC view of ``x`` and the layout it was read as."""
    if x.ndim == 3:
        return x[..., None], "NHW"
    if x.ndim == 4 and x.shape[-1] in (1, 3):
        return x, "NHWC"
    if x.ndim == 4 and x.shape[1] in (1, 3):
        return x.transpose(0, 2, 3, 1), "NCHW"
    raise ImageSourceError(f"{path}: `images` has shape {x.shape}; expected (N, H, W, C) or (N, C, H, W) with C = 1 or "
                           "3 channels, or (N, H, W) for one channel")


def _npz_scale(x: np.ndarray, path: Path) -> tuple[float, float, str]:
    """(scale, offset, range text): uint8 value = scale * (x + offset)."""
    if x.dtype == np.uint8:
        return 1.0, 0.0, "uint8 0..255"
    if not np.issubdtype(x.dtype, np.floating):
        raise ImageSourceError(f"{path}: `images` has dtype {x.dtype}, which is not accepted: store uint8 (0..255) or "
                               "float in [0, 1] or [-1, 1] (integer 0..255 values: images.astype(np.uint8))")
    if x.size and not np.isfinite(x).all():
        raise ImageSourceError(f"{path}: `images` ({x.dtype}) holds NaN or infinite values; replace them")
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if lo >= 0.0 and hi <= 1.0:
        return 255.0, 0.0, f"{x.dtype} in [0, 1]"
    if lo >= -1.0 and hi <= 1.0:
        return 127.5, 1.0, f"{x.dtype} in [-1, 1]"
    raise ImageSourceError(f"{path}: `images` is {x.dtype} with values in [{lo:g}, {hi:g}]; float images must lie in "
                           "[0, 1] or [-1, 1] (divide 0..255 values by 255, or store them as uint8)")


def _npz_labels(labels: np.ndarray | None, n: int, path: Path) -> tuple[np.ndarray, tuple[str, ...] | None]:
    if labels is None:
        return np.zeros(n, dtype=np.int64), None
    if labels.ndim != 1 or len(labels) != n:
        raise ImageSourceError(f"{path}: `labels` has shape {labels.shape}, but `images` holds {n} images; give one "
                               f"integer label per image (shape ({n},)), or leave `labels` out")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ImageSourceError(f"{path}: `labels` has dtype {labels.dtype}; labels must be integers (class indices "
                               "0, 1, ...): e.g. labels.astype(np.int64)")
    if n and int(labels.min()) < 0:
        raise ImageSourceError(f"{path}: `labels` holds negative values (min {int(labels.min())}); labels are class "
                               "indices 0, 1, ...")
    top = int(labels.max()) if n else 0
    if top >= _MAX_CLASSES:
        raise ImageSourceError(f"{path}: `labels` go up to {top}; labels are class indices 0 .. K-1 (at most "
                               f"{_MAX_CLASSES} classes): renumber them, e.g. np.unique(labels, return_inverse=True)[1]")
    return labels.astype(np.int64), tuple(str(i) for i in range(top + 1))


def _npz_input(path: Path, size: int, channels: int, fit: str) -> _Input:
    from .store import sha256_file

    raw, raw_labels = _load_npz(path)
    x, layout = _npz_layout(raw, path)
    n, h, w, c = x.shape
    if n == 0:
        raise ImageSourceError(f"{path}: `images` holds no images (shape {raw.shape}). {HINT}")
    scale, offset, value_range = _npz_scale(x, path)
    labels, names = _npz_labels(raw_labels, n, path)
    problem = _size_problem(fit, size, h, w)
    if problem:
        raise ImageSourceError(f"{path}: `images` (shape {raw.shape}, read as {layout}) {problem}")
    top, left, s = _fit_box(fit, size)(h, w)

    def read(idx: np.ndarray, out: np.ndarray) -> None:
        for start in range(0, len(idx), _CHUNK):
            chunk = x[idx[start:start + _CHUNK], top:top + s, left:left + s]
            exact = chunk.dtype == np.uint8 and c == channels and s == size
            if exact:  # values kept as they are
                out[start:start + len(chunk)] = chunk
                continue
            v = (chunk.astype(np.float64) + offset) * scale
            if c == 3 and channels == 1:
                v = v @ np.array([0.299, 0.587, 0.114])[:, None]
            elif c == 1 and channels == 3:
                v = np.repeat(v, 3, axis=-1)
            if s != size:
                v = resize_images(v, size, kernel="bicubic")
            out[start:start + len(chunk)] = quantize(v)

    conv = {(3, 1): "luma (0.299, 0.587, 0.114)", (1, 3): "grey repeated to RGB"}.get((c, channels), f"{c} channel(s)")
    return _Input(
        description=f"npz {path.resolve()} (images {raw.dtype}{list(raw.shape)} as {layout}"
                    f"{', labels' if names else ', no labels'})",
        labels=labels, label_names=names, checksum_name=path.name, checksum=sha256_file(path),
        note="sha256 of the .npz file", read=read,
        preprocessing=f"{value_range} -> 0..255; {conv}; {_fit_text(fit, size)}; rounded once to uint8",
    )


# --------------------------------------------------------------------------- the builder prepare() calls

def build_user_images(*, path: str | os.PathLike | None, image_size: int | None = None, channels: int | None = None,
                      fit: str | None = None, seed: int, test_fraction: float, max_train: int | None,
                      max_test: int | None, progress: bool = False, scratch_dir: Path | None = None,
                      **_: Any) -> dict:
    """Read the folder or ``.npz`` at ``path`` into the builder dict :func:`daebench.data.prepare` expects, with
    ``label_names`` and ``channels`` of this input. See the module docstring for what is accepted."""
    size = DEFAULT_SIZE if image_size is None else int(image_size)
    channels = 3 if channels is None else channels
    fit = "resize" if fit is None else fit
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(f"data.images.channels must be 1 or 3, got {channels!r}")
    if fit not in FITS:
        raise ValueError(f"data.images.fit must be one of {', '.join(FITS)}, got {fit!r}")
    where = local_path(NAME, path, HINT)
    if where.is_dir():
        src = _folder_input(where, size, channels, fit, progress)
    elif where.is_file() and where.suffix.lower() == ".npz":
        src = _npz_input(where, size, channels, fit)
    else:
        raise ImageSourceError(f"dataset_paths.images is {str(path)!r}, which is neither a folder nor a .npz file. "
                               f"{HINT}")

    n = len(src.labels)
    if n < 2:
        raise ImageSourceError(f"{src.description}: a train/test split needs at least 2 images; add images")
    if src.label_names is not None:
        train, test = stratified_split(src.labels, test_fraction, seed)
        split = "stratified-seeded (by label)"
    else:
        train, test = seeded_split(n, test_fraction, seed)
        split = "seeded (no labels: one class)"
    if not len(train) or not len(test):
        raise ImageSourceError(f"{src.description}: too few images per class for a train/test split with "
                               f"data.test_fraction = {test_fraction}; add images or change test_fraction")
    train = train[subset_indices(len(train), max_train, seed, 1)]
    test = test[subset_indices(len(test), max_test, seed, 2)]
    log.info("images: %s; decoding %d train + %d test", src.description, len(train), len(test))
    arrays = {}
    for name, idx in (("train", train), ("test", test)):
        shape = (len(idx), size, size, channels)
        if scratch_dir is not None and len(idx):  # a set larger than memory: decoded into a memory map
            out = np.lib.format.open_memmap(Path(scratch_dir) / f"{name}.npy", mode="w+", dtype=np.uint8, shape=shape)
        else:
            out = np.empty(shape, dtype=np.uint8)
        src.read(idx, out)
        arrays[name] = (out, src.labels[idx])
    return {
        **arrays,
        "source": src.description,
        "verified": {src.checksum_name: {"algorithm": "sha256", "checksum": src.checksum, "note": src.note}},
        "split": split,
        "test_fraction": float(test_fraction),
        "preprocessing": src.preprocessing,
        "label_names": src.label_names or UNLABELLED,
        "channels": channels,
    }
