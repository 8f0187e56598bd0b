"""Sample-quality metrics for unconditional generation (DBAE §4.4, Table 4).

Improved precision and recall (Kynkaanniemi et al. 2019): each set's k-NN radii (k = 3, self
excluded) define a manifold; precision = share of generated samples inside the real manifold,
recall = share of real samples inside the generated one. Computed in whatever feature space is
passed (Inception where the weights exist; the domain classifier's otherwise, under its own name).

Inception score (Salimans et al. 2016) exp(E_x KL(p(y|x) || p(y))) from class logits; with the
domain classifier it is the digits' "classifier score" (is_domain), not the Inception score.
"""
from __future__ import annotations

import math

import torch


def knn_radii(feats: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(feats, feats)
    return d.kthvalue(k + 1, dim=1).values  # +1: the point itself at distance 0


def manifold_coverage(points: torch.Tensor, support: torch.Tensor, k: int) -> float:
    """Share of ``points`` within the k-NN radius of some point of ``support``."""
    radii = knn_radii(support, k)
    d = torch.cdist(points, support)
    return float((d <= radii[None]).any(dim=1).float().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    real, fake = real.double(), fake.double()
    return manifold_coverage(fake, real, k), manifold_coverage(real, fake, k)


def inception_score(logits: torch.Tensor, splits: int = 1) -> float:
    p = logits.double().softmax(dim=1)
    scores = []
    for chunk in p.chunk(splits):
        py = chunk.mean(0, keepdim=True)
        kl = (chunk * (chunk.clamp_min(1e-12).log() - py.clamp_min(1e-12).log())).sum(1).mean()
        scores.append(math.exp(float(kl)))
    return float(sum(scores) / len(scores))
