"""Attributes of handwritten digits derived from the embedded data, standing in for CelebA's 40 binary
labels (DBAE Table 1 AP and Table 3 TAD/ATTRS) and LFW's continuous attributes (Table 1 Pearson r,
MSE). Defined for digit datasets (digits, mnist) only.

Continuous, from the image's ink distribution I(y, x) >= 0 (pixel value, uint8):
  ink     -- total ink  sum I / (H W 255)                    (stroke thickness and size)
  slant   -- shear  cov(x, y) / var(y) of ink coordinates    (positive: top leans right)
  width   -- horizontal spread  std of ink x / W
  height  -- vertical spread    std of ink y / H
  top     -- centre of mass height  1 - mean ink y / H       (ink high in the frame)
Binary: each continuous attribute above its median over the split it is computed on (thick, slanted,
wide, tall, high), plus four from the digit class: even, large (>= 5), loop (0, 4, 6, 8, 9: a closed
stroke), prime (2, 3, 5, 7). The class attributes are mutually informative by construction; TAD
drops attributes that another explains (entropy reduction > 0.2), as on CelebA.

Your own images (``dataset: images``) have no attribute labels: the same five image statistics, split at
their medians, stand in, plus one indicator per class where the data carry two or more classes. They are
statistics of the pixels, not semantic attributes: a probe or TAD on them says how linearly z encodes ink,
shape and class, nothing more. (CelebA's 40 labels are not read yet, so the CelebA presets skip these tables.)
"""
from __future__ import annotations

import numpy as np

DIGIT_DATASETS = ("digits", "mnist")
GENERIC_DATASETS = ("images",)  # attributes from image statistics and the dataset's own classes
CONTINUOUS = ("ink", "slant", "width", "height", "top")
BINARY_FROM_CONTINUOUS = {"thick": "ink", "slanted": "slant", "wide": "width", "tall": "height", "high": "top"}
CLASS_SETS = {"even": {0, 2, 4, 6, 8}, "large": {5, 6, 7, 8, 9}, "loop": {0, 4, 6, 8, 9}, "prime": {2, 3, 5, 7}}


def continuous_attributes(images: np.ndarray) -> dict[str, np.ndarray]:
    """images: uint8 NHWC. Returns name -> float array [N]."""
    x = images.astype(np.float64).mean(axis=3)  # N, H, W
    _n, h, w = x.shape
    mass = x.sum(axis=(1, 2)).clip(min=1e-9)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    my = (x * ys).sum(axis=(1, 2)) / mass
    mx = (x * xs).sum(axis=(1, 2)) / mass
    dy, dx = ys[None] - my[:, None, None], xs[None] - mx[:, None, None]
    vy = (x * dy**2).sum(axis=(1, 2)) / mass
    vx = (x * dx**2).sum(axis=(1, 2)) / mass
    cxy = (x * dx * dy).sum(axis=(1, 2)) / mass
    # image y grows downwards; slant > 0 when the top of the stroke leans right
    return {"ink": mass / (h * w * 255.0), "slant": -cxy / np.maximum(vy, 1e-9), "width": np.sqrt(vx) / w,
            "height": np.sqrt(vy) / h, "top": 1.0 - my / h}


def binary_attributes(images: np.ndarray, labels: np.ndarray, dataset: str) -> dict[str, np.ndarray]:
    if dataset not in DIGIT_DATASETS + GENERIC_DATASETS:
        raise ValueError(f"binary attributes are defined for digit datasets ({', '.join(DIGIT_DATASETS)}) and your "
                         f"own images, not {dataset!r}; the linear probe's AP and TAD/ATTRS need them")
    cont = continuous_attributes(images)
    out = {name: (cont[src] > np.median(cont[src])).astype(np.int64) for name, src in BINARY_FROM_CONTINUOUS.items()}
    if dataset in DIGIT_DATASETS:
        for name, classes in CLASS_SETS.items():
            out[name] = np.isin(labels, sorted(classes)).astype(np.int64)
    elif len(np.unique(labels)) > 1:
        for c in np.unique(labels):
            out[f"class_{int(c)}"] = (labels == c).astype(np.int64)
    return out
