"""Embedded default dataset: scikit-learn's 8x8 handwritten digits.

The 1,797 images ship inside scikit-learn, so this needs no network. They
are scaled from 0..16 to 0..255, upsampled once with an antialiased bicubic
filter (a single quantisation at the end), and split with a seeded,
stratified split implemented here rather than with ``train_test_split`` so
the split cannot change with the scikit-learn version.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from .transforms import quantize, resize_images

__all__ = ["build_digits", "load_digits_raw", "stratified_split"]

NATIVE_SIZE = 8
DEFAULT_SIZE = 16


def load_digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """Return scikit-learn's digits as (float64 N x 8 x 8 in 0..16, int64 labels)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.asarray(bunch.images, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split; returns sorted (train_idx, test_idx).

    The test size is ``ceil(test_fraction * N)`` (as scikit-learn does) and is
    shared between classes by largest remainder, so every class keeps its
    proportion to within one example.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    n_test = math.ceil(test_fraction * labels.size)
    exact = counts * (n_test / labels.size)
    alloc = np.floor(exact).astype(np.int64)
    # Ties broken by class order (stable sort) so the allocation is seed-free.
    order = np.argsort(-(exact - alloc), kind="stable")
    alloc[order[: n_test - alloc.sum()]] += 1
    alloc = np.minimum(alloc, counts - 1)  # keep every class present in train too
    rng = np.random.default_rng(seed)
    test_parts = []
    for cls, k in zip(classes, alloc):
        idx = np.flatnonzero(labels == cls)
        test_parts.append(rng.permutation(idx)[:k])
    test_idx = np.sort(np.concatenate(test_parts))
    mask = np.ones(labels.size, dtype=bool)
    mask[test_idx] = False
    return np.flatnonzero(mask), test_idx


def build_digits(*, seed: int, test_fraction: float, image_size: int | None) -> dict:
    """Produce the digits splits and their provenance.

    Returns
    -------
    dict
        ``train``/``test`` as (uint8 NHWC, int64) pairs plus ``source``,
        ``verified`` and ``preprocessing`` entries for the manifest.
    """
    size = DEFAULT_SIZE if image_size is None else int(image_size)
    raw, labels = load_digits_raw()
    # Fingerprint of the embedded source, so a changed scikit-learn copy shows up in the manifest.
    source_sha = hashlib.sha256(
        np.ascontiguousarray(raw).tobytes() + np.ascontiguousarray(labels).tobytes()
    ).hexdigest()
    scaled = raw[..., None] * (255.0 / 16.0)
    if size != NATIVE_SIZE:
        scaled = resize_images(scaled, size, kernel="bicubic")
    images = quantize(scaled)
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    import sklearn

    return {
        "train": (images[train_idx], labels[train_idx]),
        "test": (images[test_idx], labels[test_idx]),
        "source": "sklearn embedded",
        "verified": {
            "sklearn.datasets.load_digits": {
                "algorithm": "sha256",
                "checksum": source_sha,
                "note": "sha256 of float64 images (1797x8x8) + int64 targets; "
                f"scikit-learn {sklearn.__version__}",
            }
        },
        "split": "stratified-seeded",
        "test_fraction": float(test_fraction),
        "preprocessing": (
            f"0..16 scaled to 0..255, bicubic antialiased resize {NATIVE_SIZE}->{size}, "
            "rounded and clipped to uint8"
            if size != NATIVE_SIZE
            else "0..16 scaled to 0..255, rounded to uint8"
        ),
    }
