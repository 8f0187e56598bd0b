"""Dataset registry, :func:`download` (the network step) and :func:`prepare`, the one entry point that
writes a dataset.

Sources: embedded (digits), downloaded (mnist, cifar10, lsun_bedroom128), read from a local copy named by
``dataset_paths.<name>`` (celeba64, imagenet32, ffhq128, lsun_bedroom128), and ``images``: your own folder of
image files or ``.npz`` (:mod:`daebench.data.user_images`; size, channels and fitting from ``data.images``).

The workflow runs them as two jobs: ``download`` on the submit node (a Snakemake local rule: compute
nodes often have no network) for the datasets :func:`needs_download` names, then ``prepare`` with
``download=False`` wherever the scheduler puts it (decoding LSUN is hours of CPU work).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import digits, imagenet32, user_images, vision
from . import images as local_images
from .store import MANIFEST_NAME, SPLITS, save_npz, write_manifest

__all__ = ["DATASETS", "DatasetInfo", "download", "needs_download", "needs_path", "prepare"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset known to :func:`prepare`."""

    name: str
    description: str
    channels: int
    native_size: int
    default_image_size: int
    label_names: tuple[str, ...]
    split: str  # "official", "stratified-seeded", "seeded" or "official-or-seeded"
    base_url: str | None  # None: embedded, no download
    files: Mapping[str, str] = field(default_factory=dict)  # file name -> "algo:hex"
    builder: Callable[..., dict] | None = field(default=None, repr=False, compare=False)
    # Read from a local copy named by ``dataset_paths.<name>`` (an LSUN path may be left null: downloaded).
    local: bool = False
    # What to put under ``dataset_paths.<name>`` (local datasets): the error text when the copy is missing.
    hint: str | None = field(default=None, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def needs_download(self) -> bool:
        return bool(self.files)


_DIGIT_NAMES = tuple(str(i) for i in range(10))


def _build_digits(*, seed, test_fraction, image_size, **_: Any) -> dict:
    return digits.build_digits(seed=seed, test_fraction=test_fraction, image_size=image_size)


def _build_mnist(*, download_dir, image_size, base_url, checksums, progress, offline, **_: Any) -> dict:
    return vision.build_mnist(download_dir=download_dir, image_size=image_size,
                              base_url=base_url, checksums=checksums, progress=progress, offline=offline)


def _build_cifar10(*, download_dir, image_size, base_url, checksums, progress, offline, **_: Any) -> dict:
    return vision.build_cifar10(download_dir=download_dir, image_size=image_size,
                                base_url=base_url, checksums=checksums, progress=progress, offline=offline)


_CELEBA_HINT = (
    "celeba64 needs the CelebA images (distributed through Google Drive, "
    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html, so they are not downloaded here): set "
    "dataset_paths.celeba64 in params.yaml (or your --configfile) to the img_align_celeba folder (202,599 aligned "
    "and cropped 178x218 JPEGs) or to img_align_celeba.zip; put list_eval_partition.txt beside it for the official "
    "train/test split (otherwise a seeded split of data.test_fraction) - see docs/scale.md, 'Paper-scale presets'.")
_FFHQ_HINT = (
    "ffhq128 needs the FFHQ images (distributed through Google Drive, https://github.com/NVlabs/ffhq-dataset, so "
    "they are not downloaded here): set dataset_paths.ffhq128 in params.yaml (or your --configfile) to a folder "
    "(searched recursively) or a .zip of the PNGs of the images1024x1024 or thumbnails128x128 release; the split "
    "is a seeded one of data.test_fraction - see docs/scale.md, 'Paper-scale presets'.")
_LSUN_HINT = (
    "lsun_bedroom128 reads dataset_paths.lsun_bedroom128: the bedroom_train_lmdb folder of the LSUN release "
    "(needs `python -m pip install lmdb`) or a folder / .zip of images exported from it; left null, "
    f"{local_images.LSUN_BEDROOM_ARCHIVE} (about 43 GB) is downloaded from {local_images.LSUN_URL} (or "
    "data.base_url) - see docs/scale.md, 'Paper-scale presets'.")


def _build_celeba64(*, path, image_size, seed, test_fraction, max_train, max_test, progress, scratch_dir,
                    **_: Any) -> dict:
    size = 64 if image_size is None else int(image_size)
    return local_images.build_image_dataset(
        "celeba64", path=path, image_size=size, seed=seed, test_fraction=test_fraction, max_train=max_train,
        max_test=max_test, progress=progress, hint=_CELEBA_HINT, crop=local_images.celeba_crop_box,
        official="celeba", scratch_dir=scratch_dir,
        preprocessing=f"RGB; DiffAE's CelebA crop (128x128 at rows 57-185, cols 25-153 of the 218x178 aligned "
                      f"images; other sizes: centre square); antialiased bicubic resize to {size}; uint8")


def _build_ffhq128(*, path, image_size, seed, test_fraction, max_train, max_test, progress, scratch_dir,
                   **_: Any) -> dict:
    size = 128 if image_size is None else int(image_size)
    return local_images.build_image_dataset(
        "ffhq128", path=path, image_size=size, seed=seed, test_fraction=test_fraction, max_train=max_train,
        max_test=max_test, progress=progress, hint=_FFHQ_HINT, scratch_dir=scratch_dir,
        preprocessing=f"RGB; centre square; antialiased bicubic resize to {size} (none for 128x128 thumbnails); uint8")


def _lsun_checksum(checksums: dict | None) -> str | None:
    checksums = dict(checksums or {})
    unknown = sorted(set(checksums) - {local_images.LSUN_BEDROOM_ARCHIVE})
    if unknown:
        raise ValueError(f"checksums given for unknown lsun_bedroom128 files {unknown}; "
                         f"expected names: {[local_images.LSUN_BEDROOM_ARCHIVE]}")
    return checksums.get(local_images.LSUN_BEDROOM_ARCHIVE)


def _build_lsun_bedroom128(*, path, image_size, seed, test_fraction, max_train, max_test, progress, download_dir,
                           base_url, checksums, offline, scratch_dir, **_: Any) -> dict:
    size = 128 if image_size is None else int(image_size)
    checksum = _lsun_checksum(checksums)
    return local_images.build_image_dataset(
        "lsun_bedroom128", path=path, image_size=size, seed=seed, test_fraction=test_fraction, max_train=max_train,
        max_test=max_test, progress=progress, hint=_LSUN_HINT, scratch_dir=scratch_dir,
        download=lambda: local_images.lsun_download(download_dir, base_url, checksum, progress, offline=offline),
        preprocessing=f"RGB; centre square; antialiased bicubic resize to {size}; uint8")


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        name="digits",
        description="scikit-learn 8x8 handwritten digits (1,797 images), upsampled; embedded",
        channels=1, native_size=8, default_image_size=digits.DEFAULT_SIZE,
        label_names=_DIGIT_NAMES, split="stratified-seeded", base_url=None,
        builder=_build_digits,
    ),
    "mnist": DatasetInfo(
        name="mnist",
        description="MNIST 28x28 handwritten digits, zero-padded to 32x32 by default",
        channels=1, native_size=28, default_image_size=32,
        label_names=_DIGIT_NAMES, split="official", base_url=vision.MNIST_URL,
        files=dict(vision.MNIST_FILES), builder=_build_mnist,
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        description="CIFAR-10 32x32 colour images, 10 classes",
        channels=3, native_size=32, default_image_size=32,
        label_names=vision.CIFAR10_LABELS, split="official", base_url=vision.CIFAR10_URL,
        files=dict(vision.CIFAR10_FILES), builder=_build_cifar10,
    ),
    "celeba64": DatasetInfo(
        name="celeba64",
        description="CelebA aligned faces (202,599), DiffAE's 128x128 crop resized to 64x64; local copy",
        channels=3, native_size=128, default_image_size=64,
        label_names=("face",), split="official-or-seeded", base_url=None, builder=_build_celeba64, local=True,
        hint=_CELEBA_HINT,
    ),
    "lsun_bedroom128": DatasetInfo(
        name="lsun_bedroom128",
        description="LSUN Bedroom (3,033,042 training images), centre square resized to 128x128",
        channels=3, native_size=256, default_image_size=128,
        label_names=("bedroom",), split="seeded", base_url=local_images.LSUN_URL,
        builder=_build_lsun_bedroom128, local=True, hint=_LSUN_HINT,
    ),
    "imagenet32": DatasetInfo(
        name="imagenet32",
        description="Downsampled ImageNet 32x32 (Chrabaszcz et al. 2017), 1000 classes; local copy",
        channels=3, native_size=32, default_image_size=32,
        label_names=tuple(str(i) for i in range(imagenet32.NUM_CLASSES)), split="official", base_url=None,
        builder=imagenet32.build_imagenet32, local=True, hint=imagenet32.HINT,
    ),
    "ffhq128": DatasetInfo(
        name="ffhq128",
        description="FFHQ faces (70,000), resized to 128x128; local copy",
        channels=3, native_size=1024, default_image_size=128,
        label_names=("face",), split="seeded", base_url=None, builder=_build_ffhq128, local=True, hint=_FFHQ_HINT,
    ),
    # Your own data. channels, label_names and the size are the defaults: the prepared set's own (data.images,
    # the class folders or npz labels) are in its manifest (the builder returns them).
    "images": DatasetInfo(
        name="images",
        description="Your own images: a folder of image files (optionally class subfolders) or an .npz; local copy",
        channels=3, native_size=user_images.DEFAULT_SIZE, default_image_size=user_images.DEFAULT_SIZE,
        label_names=user_images.UNLABELLED, split="stratified-seeded", base_url=None,
        builder=user_images.build_user_images, local=True, hint=user_images.HINT,
    ),
}


def needs_download(name: str, path: str | os.PathLike | None = None) -> bool:
    """Whether preparing ``name`` reads files :func:`download` fetches: mnist and cifar10 always, lsun_bedroom128
    when no local copy (``path``, from ``dataset_paths``) is given; the embedded and local-copy datasets never."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    if name == "lsun_bedroom128":
        return path is None or str(path).strip() == ""
    return DATASETS[name].needs_download


def needs_path(name: str) -> bool:
    """Whether ``name`` can only be read from a local copy (``dataset_paths.<name>``): celeba64, imagenet32,
    ffhq128 and images, which have no public download; lsun_bedroom128 without a path is downloaded instead."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return DATASETS[name].local and not needs_download(name, None)


def download(name: str, *, download_dir: str | os.PathLike = "resources/downloads", base_url: str | None = None,
             checksums: dict | None = None, path: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Fetch and verify the source files of ``name`` into ``<download_dir>/<name>/`` (LSUN: also extract
    its LMDB), so that :func:`prepare` with ``download=False`` finds them. Returns the verified records by
    file name, as the manifest will carry them.

    Raises
    ------
    ValueError
        Unknown dataset, or one that downloads nothing (see :func:`needs_download`).
    DownloadError
        A file could not be downloaded or verified.
    """
    if not needs_download(name, path):
        raise ValueError(f"dataset {name!r} has nothing to download"
                         + (f" (it is read from dataset_paths.{name} = {str(path)!r})" if path else
                            " (embedded, or read from a local copy named by dataset_paths)"))
    if name == "lsun_bedroom128":
        _, records = local_images.lsun_download(Path(download_dir), base_url, _lsun_checksum(checksums), progress)
        return records
    return vision.fetch_sources(name, download_dir=download_dir, base_url=base_url, checksums=checksums,
                                progress=progress)


def _check_optional_positive(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                              or value < 1):
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")


def _subset(images: np.ndarray, labels: np.ndarray, n: int | None, seed: int, stream: int):
    if n is None or n >= len(labels):
        return images, labels
    # Own stream per split so max_train does not change which test images are kept.
    idx = local_images.subset_indices(len(labels), n, seed, stream)
    return images[idx], labels[idx]


def prepare(
    name: str,
    out_dir: str | os.PathLike,
    *,
    download_dir: str | os.PathLike = "resources/downloads",
    seed: int = 0,
    test_fraction: float = 0.2,
    image_size: int | None = None,
    base_url: str | None = None,
    checksums: dict | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
    progress: bool = True,
    path: str | os.PathLike | None = None,
    download: bool = True,
    channels: int | None = None,
    fit: str | None = None,
) -> dict:
    """Build a dataset and write ``train.npz``, ``test.npz`` and ``manifest.json``.

    Parameters
    ----------
    name : {"digits", "mnist", "cifar10", "celeba64", "lsun_bedroom128", "imagenet32", "ffhq128", "images"}
    out_dir : path
        Destination directory (created if needed).
    download_dir : path
        Where source archives are cached, under ``<download_dir>/<name>/``.
    seed : int
        Seeds the digits split and the ``max_*`` subsets.
    test_fraction : float
        Test share for datasets without an official split (digits, stratified; the image
        folders, seeded); recorded as ``None`` for official splits, where it is ignored.
    image_size : int, optional
        Output height = width; dataset default when None (digits 16,
        mnist 32 by zero padding, cifar10 32, images 32: ``data.images.image_size``).
    base_url : str, optional
        URL prefix replacing the default mirror (file names are appended).
    checksums : dict, optional
        File name -> expected checksum (``"md5:..."``, ``"sha256:..."`` or bare hex),
        overriding the pinned ones.
    max_train, max_test : int, optional
        Keep the first N of a seeded permutation (order then restored), for smoke runs.
    progress : bool
        Show download progress bars.
    path : path, optional
        The local copy of a dataset that reads one (``DatasetInfo.local``: celeba64, ffhq128,
        imagenet32, lsun_bedroom128, images), from ``dataset_paths.<name>``; ignored by the others. Left
        None, lsun_bedroom128 is downloaded and the others raise an error naming what to put where.
    download : bool
        Fetch missing source files. False: they must already be in ``download_dir`` (put there by
        :func:`download`), else a DownloadError says so; the workflow's preprocessing job runs this way.
    channels, fit : optional
        ``images`` only (``data.images.channels``: 1 or 3, default 3; ``data.images.fit``: resize, crop or
        none, default resize); ignored by the others.

    Returns
    -------
    dict
        The manifest, as written to ``out_dir/manifest.json``.

    Raises
    ------
    ValueError
        Unknown dataset name or invalid argument.
    DownloadError
        A source file could not be downloaded, verified or parsed (``LocalDataError``, a subclass: a
        local copy is missing, incomplete or unreadable; ``images``: ``ImageSourceError``, also a
        ValueError, naming the bad file).

    On an error, a directory this call created is removed again. An existing one is left as it was when the
    builder fails (bad input: nothing is written before the builder returns); a failure while writing leaves
    it without ``manifest.json``, so it reads as not prepared.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    info = DATASETS[name]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    _check_optional_positive("image_size", image_size)
    _check_optional_positive("max_train", max_train)
    _check_optional_positive("max_test", max_test)
    seed = int(seed)
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        for stale in out.glob(".scratch-*"):  # left by a run that was killed (no cleanup on SIGKILL)
            shutil.rmtree(stale, ignore_errors=True)
        # Image-folder datasets decode into memory-mapped scratch files here (same file system as the output),
        # removed once the splits are written: preparing a set larger than memory needs disk, not memory.
        with tempfile.TemporaryDirectory(dir=out, prefix=".scratch-") as scratch:
            built = info.builder(seed=seed, test_fraction=float(test_fraction), image_size=image_size,
                                 download_dir=Path(download_dir), base_url=base_url,
                                 checksums=checksums, progress=progress, path=path if info.local else None,
                                 max_train=max_train, max_test=max_test, offline=not download,
                                 scratch_dir=Path(scratch), channels=channels, fit=fit)
            manifest = _write_prepared(info, out, built, seed, max_train, max_test)
            del built  # drop the memory maps before their files are removed
    except BaseException:
        if created:  # nothing was there: leave nothing (an existing directory keeps its files; parents stay)
            shutil.rmtree(out, ignore_errors=True)
        raise
    log.info("prepared %s in %s: %s", name, out, manifest["counts"])
    return manifest


def _write_prepared(info: DatasetInfo, out: Path, built: dict, seed: int, max_train: int | None,
                    max_test: int | None) -> dict:
    """Subset, check and write a builder's splits and the manifest into ``out``."""
    arrays = {
        "train": _subset(*built["train"], max_train, seed, stream=1),
        "test": _subset(*built["test"], max_test, seed, stream=2),
    }
    # A builder whose channels and classes depend on its input (images) returns them.
    channels = built.get("channels", info.channels)
    label_names = tuple(built.get("label_names", info.label_names))
    shape = arrays["train"][0].shape[1:]
    for split, (images, labels) in arrays.items():
        assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[1:] == shape, split
        assert labels.dtype == np.int64 and labels.shape == (len(images),), split
        assert images.shape[-1] == channels, split

    # Drop the old commit marker first: until the new one lands, the directory reads as
    # "not prepared" rather than as an old manifest pointing at new arrays.
    (out / MANIFEST_NAME).unlink(missing_ok=True)

    splits = {}
    for split in SPLITS:
        images, labels = arrays[split]
        fname = f"{split}.npz"
        digest = save_npz(out / fname, images=images, labels=labels)
        splits[split] = {
            "file": fname,
            "sha256": digest,
            "count": len(labels),
            "class_counts": np.bincount(labels, minlength=len(label_names)).tolist(),
        }

    manifest = {
        "format_version": FORMAT_VERSION,
        "dataset": info.name,
        "description": info.description,
        "source": built["source"],
        "source_checksums": {
            fname: {k: v for k, v in rec.items() if k in ("url", "algorithm", "checksum", "note")}
            for fname, rec in built["verified"].items()
        },
        "preprocessing": built["preprocessing"],
        "image_shape": [int(d) for d in shape],
        "layout": "NHWC",
        "dtype": "uint8",
        "label_dtype": "int64",
        "num_classes": len(label_names),
        "label_names": list(label_names),
        "split": built["split"],
        "seed": seed,
        "test_fraction": built["test_fraction"],
        "max_train": max_train,
        "max_test": max_test,
        "counts": {split: splits[split]["count"] for split in SPLITS},
        "splits": splits,
    }
    write_manifest(out, manifest)
    return manifest
