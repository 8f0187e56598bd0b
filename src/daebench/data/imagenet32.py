"""ImageNet 32x32: the official downsampled ImageNet (Chrabaszcz, Loshchilov & Hutter 2017, "A Downsampled
Variant of ImageNet as an Alternative to the CIFAR datasets"), read from a local copy.

The files come from image-net.org (login required, so nothing is downloaded here):
``Imagenet32_train_npz.zip`` (``train_data_batch_1.npz`` .. ``train_data_batch_10.npz``) and
``Imagenet32_val_npz.zip`` (``val_data.npz``), or the pickled release ``Imagenet32_train.zip`` /
``Imagenet32_val.zip`` (the same names without ``.npz``, each a pickled dict). Every batch holds
``data``: uint8 (N, 3072), each row the R, G and B planes of a 32x32 image in turn (as CIFAR), and
``labels``: the class, 1-based (1..1000); the train batches also carry ``mean``, unused here.
The official split is kept: the 1,281,167 training images, and the 50,000 validation images as the
test split. Labels are stored 0-based.

``dataset_paths.imagenet32`` names a folder searched recursively for those files, extracted or still
inside their .zip archives (read without extracting). Where both forms exist the .npz files win.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np

from .images import LocalDataError, local_path

__all__ = ["TRAIN_BATCHES", "VAL_BATCH", "build_imagenet32", "find_imagenet32_files", "read_imagenet32_batch"]

TRAIN_BATCHES = tuple(f"train_data_batch_{i}" for i in range(1, 11))
VAL_BATCH = "val_data"
NUM_CLASSES = 1000
SIDE = 32

HINT = ("imagenet32 needs the downsampled ImageNet 32x32 files (image-net.org, 'Download downsampled image data', "
        "login required, so they are not downloaded here): set dataset_paths.imagenet32 in params.yaml (or your "
        "--configfile) to a folder holding Imagenet32_train_npz.zip and Imagenet32_val_npz.zip, or their extracted "
        "train_data_batch_1.npz .. train_data_batch_10.npz and val_data.npz (the pickled release Imagenet32_train.zip "
        "/ Imagenet32_val.zip works too) - see docs/scale.md, 'Paper-scale presets'.")


def read_imagenet32_batch(raw: bytes, what: str, npz: bool) -> tuple[np.ndarray, np.ndarray]:
    """One batch file's bytes -> (uint8 NHWC images, int64 0-based labels). ValueError if malformed."""
    if npz:
        with np.load(io.BytesIO(raw), allow_pickle=False) as f:
            if "data" not in f or "labels" not in f:
                raise ValueError(f"{what}: npz lacks 'data'/'labels' (has {sorted(f.files)})")
            data, labels = f["data"], f["labels"]
    else:
        from .vision import _NumpyOnlyUnpickler

        obj = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
        if not isinstance(obj, dict):
            raise ValueError(f"{what}: expected a pickled dict, got {type(obj).__name__}")
        obj = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
        if "data" not in obj or "labels" not in obj:
            raise ValueError(f"{what}: pickle lacks 'data'/'labels' (has {sorted(obj)})")
        data, labels = obj["data"], obj["labels"]
    data = np.asarray(data)
    labels = np.asarray(labels).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE:
        raise ValueError(f"{what}: data has dtype {data.dtype} shape {data.shape}, expected uint8 (N, 3072) "
                         "(is this the 32x32 release? Imagenet64 rows have 12288 values)")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{what}: labels {labels.dtype} {labels.shape} do not match data {data.shape}")
    if labels.size and (labels.min() < 1 or labels.max() > NUM_CLASSES):
        raise ValueError(f"{what}: labels span {labels.min()}..{labels.max()}, expected 1-based 1..{NUM_CLASSES}")
    images = data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)  # channel planes -> NHWC
    return np.ascontiguousarray(images), labels.astype(np.int64) - 1


def find_imagenet32_files(root: Path) -> tuple[dict[str, tuple[str, bool, Callable[[], bytes]]], Callable[[], None]]:
    """Batch name -> (where, is_npz, reader) for every batch under ``root`` (files or .zip members);
    also returns a function closing the zip archives opened."""
    wanted = set(TRAIN_BATCHES) | {VAL_BATCH}
    found: dict[str, tuple[str, bool, Callable[[], bytes]]] = {}
    archives: list[zipfile.ZipFile] = []

    def consider(name: str, where: str, reader: Callable[[], bytes]) -> None:
        npz = name.endswith(".npz")
        stem = name[:-4] if npz else name
        if stem in wanted and (stem not in found or (npz and not found[stem][1])):
            found[stem] = (where, npz, reader)

    for p in sorted(root.rglob("*")) if root.is_dir() else [root]:
        if not p.is_file():
            continue
        if p.suffix.lower() == ".zip":
            try:
                zf = zipfile.ZipFile(p)
            except zipfile.BadZipFile as exc:
                raise LocalDataError(f"{p} is not a readable zip archive ({exc}). {HINT}") from exc
            archives.append(zf)
            for m in sorted(zf.namelist()):
                consider(PurePosixPath(m).name, f"{p}:{m}", lambda zf=zf, m=m: zf.read(m))
        else:
            consider(p.name, str(p), p.read_bytes)

    def close() -> None:
        for zf in archives:
            zf.close()

    return found, close


def build_imagenet32(*, path: str | os.PathLike | None, image_size: int | None, **_) -> dict:
    """Read the official train and validation batches; ``image_size`` other than 32 resizes (bicubic)."""
    from .vision import _final_size

    root = local_path("imagenet32", path, HINT)
    found, close = find_imagenet32_files(root)
    try:
        missing = [b for b in (*TRAIN_BATCHES, VAL_BATCH) if b not in found]
        if missing:
            raise LocalDataError(f"dataset_paths.imagenet32 ({root}) lacks {', '.join(missing)} (.npz or pickled, "
                                 f"as files or inside a .zip); found: {', '.join(sorted(found)) or 'none'}. {HINT}")
        splits = {}
        for split, batches in (("train", TRAIN_BATCHES), ("test", (VAL_BATCH,))):
            parts = []
            for b in batches:
                where, npz, reader = found[b]
                try:
                    parts.append(read_imagenet32_batch(reader(), where, npz))
                except (ValueError, KeyError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
                    raise LocalDataError(f"{where} is not a readable downsampled-ImageNet batch "
                                         f"({type(exc).__name__}: {exc}); replace it with a good copy") from exc
            splits[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        kinds = sorted({"npz" if found[b][1] else "pickle" for b in found})
        wheres = sorted({found[b][0].split(":")[0] for b in found})
    finally:
        close()
    size = SIDE if image_size is None else int(image_size)
    out, how = {}, ""
    for split, (images, labels) in splits.items():
        images, how = _final_size(images, size, native=SIDE, pad_to=None)
        out[split] = (images, labels)
    return {
        **out,
        "source": f"local copy {root.resolve()} ({'/'.join(kinds)} batches from {len(wheres)} file(s))",
        "verified": {},
        "split": "official (train batches 1-10; validation as test)",
        "test_fraction": None,
        "preprocessing": how,
    }
