"""Paper-scale image datasets downloaded from their public mirrors: MNIST and CIFAR-10.

Both use the official train/test split and the checksums torchvision pins.
The archives are parsed here (idx format, pickled batches read straight out
of the tarball) so that no torchvision downloader, and no extraction to
disk, is involved.
"""

from __future__ import annotations

import gzip
import io
import logging
import pickle
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .download import DownloadError, fetch, parse_downloaded
from .transforms import pad_images, quantize, resize_images

__all__ = [
    "CIFAR10_FILES",
    "CIFAR10_LABELS",
    "CIFAR10_URL",
    "MNIST_FILES",
    "MNIST_URL",
    "build_cifar10",
    "build_mnist",
    "fetch_sources",
    "read_cifar10_archive",
    "read_idx",
]

log = logging.getLogger(__name__)

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "md5:9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "md5:ec29112dd5afa0611ce80d1b7f02629c",
}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FILES = {CIFAR10_ARCHIVE: "md5:c58f30108f718f92721af3b95e74349a"}
CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer",
                  "dog", "frog", "horse", "ship", "truck")
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"

# Errors that mean "this file is not a readable archive of the expected format".
_FORMAT_ERRORS = (OSError, EOFError, zlib.error, tarfile.TarError, pickle.UnpicklingError,
                  ValueError, KeyError, TypeError, IndexError, AttributeError)


# --------------------------------------------------------------------------- sources

def _resolve_sources(
    dataset: str, defaults: dict[str, str], base_url: str | None, checksums: dict | None
) -> dict[str, tuple[str, str]]:
    """Map file name -> (url, checksum) with user overrides applied."""
    checksums = dict(checksums or {})
    unknown = sorted(set(checksums) - set(defaults))
    if unknown:
        raise ValueError(f"checksums given for unknown {dataset} files {unknown}; "
                         f"expected names: {sorted(defaults)}")
    base = (base_url or "").rstrip("/") + "/" if base_url else None
    return {
        name: ((base or _DEFAULT_BASE[dataset]) + name, checksums.get(name, default))
        for name, default in defaults.items()
    }


def _fetch_all(dataset: str, sources: dict[str, tuple[str, str]], download_dir: Path,
               progress: bool, offline: bool = False) -> dict[str, dict[str, Any]]:
    folder = Path(download_dir) / dataset
    return {name: fetch(url, folder / name, checksum, progress=progress, offline=offline)
            for name, (url, checksum) in sources.items()}


def fetch_sources(dataset: str, *, download_dir: str | Path, base_url: str | None, checksums: dict | None,
                  progress: bool) -> dict[str, dict[str, Any]]:
    """The download step of mnist / cifar10: fetch and verify their files into ``<download_dir>/<dataset>/``
    (the builders then read them with ``offline=True``). Returns fetch's record per file."""
    files = {"mnist": MNIST_FILES, "cifar10": CIFAR10_FILES}
    if dataset not in files:
        raise ValueError(f"no download for {dataset!r} here; known: {sorted(files)}")
    return _fetch_all(dataset, _resolve_sources(dataset, files[dataset], base_url, checksums), Path(download_dir),
                      progress)


def _final_size(images: np.ndarray, size: int, native: int, pad_to: int | None) -> tuple[np.ndarray, str]:
    if size == native:
        return images, f"native {native}x{native}"
    if pad_to is not None and size == pad_to:
        return pad_images(images, size), f"zero-padded {native}->{size}"
    return quantize(resize_images(images, size, kernel="bicubic")), \
        f"bicubic antialiased resize {native}->{size}, rounded to uint8"


# --------------------------------------------------------------------------- MNIST

def read_idx(path: str | Path) -> np.ndarray:
    """Read a gzipped idx file (the MNIST format) into a uint8 array.

    Raises ValueError if the header or the payload length is wrong.
    """
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{Path(path).name}: not an idx file (bad magic {raw[:4]!r})")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise ValueError(f"{Path(path).name}: idx dtype 0x{dtype_code:02x} is not unsigned byte")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{Path(path).name}: idx header truncated")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if len(raw) - header != expected:
        raise ValueError(f"{Path(path).name}: idx payload has {len(raw) - header} bytes, "
                         f"header shape {shape} needs {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def build_mnist(*, download_dir: str | Path, image_size: int | None, base_url: str | None,
                checksums: dict | None, progress: bool, offline: bool = False) -> dict:
    """Download (unless ``offline``: then they must be there), verify and parse MNIST (official 60k/10k split).

    ``image_size`` None or 32 zero-pads 28->32 (2 px each side, the usual
    choice for 32x32 diffusion UNets); 28 keeps the native size; any other
    value resizes from 28 with an antialiased bicubic filter.
    """
    size = 32 if image_size is None else int(image_size)
    sources = _resolve_sources("mnist", MNIST_FILES, base_url, checksums)
    records = _fetch_all("mnist", sources, Path(download_dir), progress, offline)
    folder = Path(download_dir) / "mnist"

    def read(name: str, kind: str) -> np.ndarray:
        return parse_downloaded(folder / name, records[name], f"gzipped idx {kind} file", read_idx, _FORMAT_ERRORS)

    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read(f"{prefix}-images-idx3-ubyte.gz", "image")
        labels = read(f"{prefix}-labels-idx1-ubyte.gz", "label")
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DownloadError(
                f"MNIST {split} files in {folder} disagree: images {images.shape}, labels "
                f"{labels.shape}. Delete them and rerun, or place verified copies there.")
        if labels.size and labels.max() > 9:
            raise DownloadError(f"MNIST {split} labels in {folder} exceed 9; files are corrupted")
        splits[split] = (images[..., None], labels.astype(np.int64))
    out = {}
    for split, (images, labels) in splits.items():
        images, how = _final_size(images, size, native=28, pad_to=32)
        out[split] = (images, labels)
    return {
        **out,
        "source": sources["train-images-idx3-ubyte.gz"][0].rsplit("/", 1)[0] + "/",
        "verified": records,
        "split": "official",
        "test_fraction": None,
        "preprocessing": how,
    }


# --------------------------------------------------------------------------- CIFAR-10

def _numpy_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _numpy_scalar() -> Any:
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar
    return scalar


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else.

    The CIFAR batches are pickles; a plain ``pickle.load`` of a downloaded file
    would run whatever callable the file names.
    """

    _ALLOWED: ClassVar[dict[tuple[str, str], Callable[[], Any]]] = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy.core.multiarray", "scalar"): _numpy_scalar,
        ("numpy._core.multiarray", "scalar"): _numpy_scalar,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        # Protocol-2 pickles written by Python 3 encode bytes through this pure function.
        ("_codecs", "encode"): lambda: __import__("codecs").encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        getter = self._ALLOWED.get((module, name))
        if getter is None:
            raise pickle.UnpicklingError(
                f"refusing to unpickle global {module}.{name}: CIFAR batches only contain "
                "numpy arrays, lists and strings")
        return getter()


def _load_batch(raw: bytes, member: str) -> tuple[np.ndarray, np.ndarray]:
    # latin1 is what the Python-2-era CIFAR pickles need for their numpy payloads.
    obj = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    if not isinstance(obj, dict):
        raise TypeError(f"{member}: expected a dict, got {type(obj).__name__}")
    batch = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"] if "labels" in batch else batch["fine_labels"],
                        dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{member}: data has dtype {data.dtype} shape {data.shape}, "
                         "expected uint8 (N, 3072)")
    if labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise ValueError(f"{member}: labels shape {labels.shape} / range do not match the data")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # stored as channel planes
    return np.ascontiguousarray(images), labels


def read_cifar10_archive(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read the train and test splits out of ``cifar-10-python.tar.gz`` without extracting.

    Raises
    ------
    ValueError
        If a batch is missing or malformed (tarfile/gzip errors propagate as is).
    """
    wanted = {f"{_CIFAR_DIR}/{m}" for m in (*_CIFAR_TRAIN, _CIFAR_TEST)}
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with tarfile.open(path, mode="r:gz") as tf:
        for member in tf:  # one sequential pass over the gzip stream
            name = member.name.lstrip("./")
            if name in wanted and member.isfile():
                fh = tf.extractfile(member)
                assert fh is not None
                batches[name.rsplit("/", 1)[-1]] = _load_batch(fh.read(), name)
    missing = sorted(set(_CIFAR_TRAIN + (_CIFAR_TEST,)) - set(batches))
    if missing:
        raise ValueError(f"archive lacks {', '.join(f'{_CIFAR_DIR}/{m}' for m in missing)}")
    train = [batches[m] for m in _CIFAR_TRAIN]
    return {
        "train": (np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train])),
        "test": batches[_CIFAR_TEST],
    }


def build_cifar10(*, download_dir: str | Path, image_size: int | None, base_url: str | None,
                  checksums: dict | None, progress: bool, offline: bool = False) -> dict:
    """Download (unless ``offline``), verify and parse CIFAR-10 (official 50k/10k split, 32x32x3).

    ``image_size`` other than 32 resizes with an antialiased bicubic filter.
    """
    size = 32 if image_size is None else int(image_size)
    sources = _resolve_sources("cifar10", CIFAR10_FILES, base_url, checksums)
    records = _fetch_all("cifar10", sources, Path(download_dir), progress, offline)
    path = Path(download_dir) / "cifar10" / CIFAR10_ARCHIVE
    splits = parse_downloaded(path, records[CIFAR10_ARCHIVE], "CIFAR-10 python archive", read_cifar10_archive,
                              _FORMAT_ERRORS)
    out = {}
    how = ""
    for split, (images, labels) in splits.items():
        images, how = _final_size(images, size, native=32, pad_to=None)
        out[split] = (images, labels)
    return {
        **out,
        "source": sources[CIFAR10_ARCHIVE][0],
        "verified": records,
        "split": "official",
        "test_fraction": None,
        "preprocessing": how,
    }


_DEFAULT_BASE = {"mnist": MNIST_URL, "cifar10": CIFAR10_URL}
