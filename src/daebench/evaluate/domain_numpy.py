"""The domain classifier's features and the metrics measured in them (``fd_domain``, ``featdist_domain``),
in numpy: the scoring jobs never import torch for them.

The network is nets/classifier.py's DomainClassifier (trained and saved by domain_classifier.py); this is its
``features`` forward pass on the CPU, read from the same checkpoint (tensorfile.py reads torch's format
without torch). One forward pass for every score: the torch model is used for training only, and
``ClassifierFeatures.from_model`` turns a trained model into this one (tests compare the two passes, and the
Frechet distance with clean-fid's own ``compute_fid`` run on the torch network). Why numpy: importing torch
is over a second of a scoring job that otherwise takes a fraction of one (issue 29), and these nets are
small enough (16-256 channels, 3x3 convolutions at 16-64 px) that numpy's matmul runs them as fast as
torch on the CPU.

Image formats (image_format.py): float NCHW in [-1, 1] (numpy or torch) or uint8 NHWC.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from .frechet import frechet_distance, frechet_distance_eig
from .image_format import float_nchw_array, to_uint8_nhwc
from .tensorfile import read_tensors

__all__ = ["ClassifierFeatures", "domain_features", "feature_distance_domain", "frechet_distance_domain",
           "load_features", "unit_feature_distance"]

GROUPNORM_EPS = 1e-5  # torch.nn.GroupNorm's default, which the classifier uses


def _conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Conv2d(kernel 3, padding 1, stride 1) on channel-first [C, B, H, W]: nine matmuls over shifted views,
    no im2col copy (memory stays that of the input)."""
    _, bsz, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((w.shape[0], bsz, h, wd), dtype=np.float32)
    for i in range(3):
        for j in range(3):
            out += np.tensordot(w[:, :, i, j], xp[:, :, i:i + h, j:j + wd], axes=1)
    return out + b[:, None, None, None]


def _group_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, groups: int) -> np.ndarray:
    c, bsz, h, w = x.shape
    g = x.reshape(groups, c // groups, bsz, h, w)
    mean = g.mean(axis=(1, 3, 4), keepdims=True)
    var = g.var(axis=(1, 3, 4), keepdims=True)  # biased, as torch's GroupNorm
    g = (g - mean) / np.sqrt(var + GROUPNORM_EPS)
    return g.reshape(c, bsz, h, w) * gamma[:, None, None, None] + beta[:, None, None, None]


def _silu(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(-x) = inf for very negative x gives x / inf = -0, the right limit
        return x / (1.0 + np.exp(-x))


def _avg_pool2(x: np.ndarray) -> np.ndarray:
    c, bsz, h, w = x.shape  # AvgPool2d(2): odd rows/columns at the end are dropped, as torch does
    x = x[:, :, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(c, bsz, h // 2, 2, w // 2, 2).mean(axis=(3, 5))


class ClassifierFeatures:
    """DomainClassifier.features as numpy: conv blocks (conv-GroupNorm-SiLU twice, 2x2 average pooling
    between blocks), global mean, SiLU(linear). ``state``: the model's state_dict as numpy arrays."""

    def __init__(self, config: dict, state: dict[str, np.ndarray], info: dict | None = None):
        self.config, self.info = dict(config), dict(info or {})
        self.in_channels, self.feature_dim = int(config["in_channels"]), int(config["feature_dim"])
        self.widths = list(config["widths"])
        missing = [k for k in self._keys() if k not in state]
        if missing:
            raise ValueError(f"classifier state lacks {missing[:4]} (not a DomainClassifier of config {config})")
        self.state = {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}

    def _keys(self) -> list[str]:
        keys = []
        for i in range(len(self.widths)):  # nn.Sequential: block, pool, block, pool, ..., block
            keys += [f"blocks.{2 * i}.{p}.{t}" for p in ("conv1", "norm1", "conv2", "norm2") for t in ("weight", "bias")]
        return keys + ["proj.weight", "proj.bias"]

    @classmethod
    def from_model(cls, model: Any) -> ClassifierFeatures:
        """From a torch DomainClassifier (its current weights)."""
        return cls(model.config, {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()},
                   getattr(model, "info", None))

    def _match_channels(self, x: np.ndarray) -> np.ndarray:
        c = x.shape[1]
        if c == self.in_channels:
            return x
        if c == 1:
            return np.repeat(x, self.in_channels, axis=1)
        if self.in_channels == 1:
            return x.mean(axis=1, keepdims=True)
        raise ValueError(f"cannot feed {c}-channel images to a {self.in_channels}-channel classifier")

    def __call__(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Penultimate features [B, feature_dim] (float32) of float NCHW images in [-1, 1]."""
        x = np.asarray(x, dtype=np.float32)
        out = [self._forward(self._match_channels(np.clip(x[i:i + batch_size], -1.0, 1.0)))
               for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.feature_dim), np.float32)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        s = self.state
        h = np.ascontiguousarray(x.transpose(1, 0, 2, 3))  # channel-first [C, B, H, W]: matmul-friendly
        for i, w in enumerate(self.widths):
            p = f"blocks.{2 * i}"
            for k in ("1", "2"):
                h = _conv3x3(h, s[f"{p}.conv{k}.weight"], s[f"{p}.conv{k}.bias"])
                h = _silu(_group_norm(h, s[f"{p}.norm{k}.weight"], s[f"{p}.norm{k}.bias"], min(8, w)))
            if i < len(self.widths) - 1:
                h = _avg_pool2(h)
        pooled = h.mean(axis=(2, 3)).T  # [B, C]
        return _silu(pooled @ s["proj.weight"].T + s["proj.bias"]).astype(np.float32)


def load_features(path: str | os.PathLike) -> ClassifierFeatures:
    """The feature extractor of a checkpoint written by domain_classifier.save_classifier (no torch import)."""
    payload = read_tensors(path)
    if not isinstance(payload, dict) or "state_dict" not in payload or "config" not in payload:
        raise ValueError(f"{path} is not a daebench domain-classifier checkpoint")
    return ClassifierFeatures(payload["config"], payload["state_dict"], payload.get("info"))


def domain_features(clf: ClassifierFeatures, images: Any) -> np.ndarray:
    """Features [B, F] of images in either accepted format (uint8 NHWC is mapped to [-1, 1] as u / 127.5 - 1)."""
    return clf(float_nchw_array(images))


def frechet_distance_domain(real: Any, fake: Any, clf: ClassifierFeatures,
                            resamples: np.ndarray | None = None) -> float | tuple[float, np.ndarray]:
    """Frechet distance between two image sets in the classifier's features: what clean-fid's ``compute_fid``
    with this network as ``custom_feat_extractor`` and an identity resize returns on folders of the images
    (a test compares them): images quantised to uint8 first, as for FID; the statistics and the matrix
    square root are clean-fid's (frechet.py). Round-off negatives are clamped to 0. With ``resamples``
    ([B, n] indices into the paired sets, stats.bootstrap_indices), also the B distances of the resampled
    pairs: (value, replicates)."""
    f1 = domain_features(clf, to_uint8_nhwc(real))  # float32, as clean-fid holds its features
    f2 = domain_features(clf, to_uint8_nhwc(fake))
    value = max(frechet_distance(f1, f2), 0.0)
    if resamples is None:
        return value
    # One distance per resample of the (real, fake) pairs: the same indices in every row's job, so a claim
    # compares two rows resample by resample (stats.paired_replicates).
    return value, np.array([max(frechet_distance_eig(f1[i], f2[i]), 0.0) for i in resamples])


def feature_distance_domain(x: Any, y: Any, clf: ClassifierFeatures) -> np.ndarray:
    """Per-pair ||f(x)/|f(x)| - f(y)/|f(y)| ||_2 in the classifier's features, shape [B] (float32).

    Unit-normalising before the distance follows LPIPS (which normalises each layer's activations across
    channels), so the scale of the features does not matter and the value lies in [0, 2]."""
    return unit_feature_distance(domain_features(clf, x), domain_features(clf, y))


def unit_feature_distance(fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    """feature_distance_domain on features already computed (paired rows)."""
    if fx.shape != fy.shape:
        raise ValueError(f"x and y must be paired batches, got {fx.shape} vs {fy.shape}")

    def unit(f):  # torch.nn.functional.normalize (eps 1e-12)
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)

    return np.linalg.norm(unit(fx) - unit(fy), axis=1)
