"""Small CNN classifier used as the domain feature extractor.

Where the ImageNet Inception / AlexNet weights are unavailable, the metric
protocol replaces them with features of a classifier trained by the pipeline
on the evaluated dataset itself (the same idea as the "domain-specific" FID
variants computed with an MNIST classifier, e.g. in the WAE and DDVI
literature).  The network only has to give a stable, semantically organised
embedding, so it is deliberately small: it trains on CPU in seconds.

Sizes are derived from the data (channels, resolution, number of classes),
never from the config, so a checkpoint's JSON config fully determines the
architecture.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DomainClassifier", "classifier_config"]


def classifier_config(
    in_channels: int,
    image_size: int,
    num_classes: int,
    base_channels: int = 16,
    feature_dim: int = 128,
) -> dict:
    """Architecture config for an image of side image_size.

    One stride-2 stage per halving down to a 4x4 map (at most 4 stages), so
    16x16 digits get 2 downsamplings and 32x32 / 64x64 images get 3 / 4.
    """
    if image_size < 4:
        raise ValueError(f"image_size must be >= 4, got {image_size}")
    n_down = max(0, min(4, int(math.log2(image_size)) - 2))
    widths = [min(base_channels * 2**i, 256) for i in range(n_down + 1)]
    return {
        "in_channels": int(in_channels),
        "image_size": int(image_size),
        "num_classes": int(num_classes),
        "widths": widths,
        "feature_dim": int(feature_dim),
    }


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        # GroupNorm rather than BatchNorm: features must not depend on the
        # composition of the evaluated batch (or on train/eval mode).
        self.norm1 = nn.GroupNorm(min(8, cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(min(8, cout), cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.norm1(self.conv1(x)))
        return F.silu(self.norm2(self.conv2(x)))


class DomainClassifier(nn.Module):
    """conv blocks -> global average pool -> penultimate features -> linear head.

    Input: float NCHW images in [-1, 1] with `in_channels` channels.
    """

    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        widths = list(config["widths"])
        cin = config["in_channels"]
        blocks = []
        for i, w in enumerate(widths):
            blocks.append(_Block(cin, w))
            if i < len(widths) - 1:
                blocks.append(nn.AvgPool2d(2))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.proj = nn.Linear(widths[-1], config["feature_dim"])
        self.head = nn.Linear(config["feature_dim"], config["num_classes"])

    @property
    def in_channels(self) -> int:
        return int(self.config["in_channels"])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer embedding, shape [B, feature_dim].

        SiLU rather than ReLU keeps every unit alive, so the feature
        covariance used by the Frechet distance has no dead (zero-variance)
        dimensions.
        """
        h = self.blocks(x).mean(dim=(2, 3))
        return F.silu(self.proj(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
