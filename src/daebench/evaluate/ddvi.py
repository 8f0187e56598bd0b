"""Metrics of the DDVI study (`ddvi_denoising_diffusion_variational_inference` §5.1-5.3).

- ELBO: §5.1 averages the reconstruction log-likelihood across pixels (``elbo``); ``elbo_nats`` is the
  plain ELBO. Monte Carlo over ``elbo_samples`` posterior draws per test example.
- MMD between decoded prior samples E[x | z], z ~ p(z), and test images: the biased (V-statistic)
  squared MMD with the kernel sum_sigma exp(-||a - b||^2 / (2 sigma^2)), sigma in [2, 5, 10, 20, 40, 80]
  (§5.1 footnote), on pixel vectors in [0, 1]. A set against itself scores exactly 0.
- Latent NLL: a Gaussian KDE (Scott's bandwidth) fitted on the codes of the test data, scored on
  samples of the prior: -mean log KDE(z), z ~ p(z). Low when the codes cover the prior.
- KNN accuracy (§5.2): k = 20 nearest neighbours on the codes, fitted on the training codes.
- Clustering (§5.3): purity, completeness and NMI of the learned clusters against the populations, and
  ``clusters_used``: how many mixture components receive at least one individual.
"""
from __future__ import annotations

import numpy as np
import torch

from ..methods.priors import KDE, scott_bandwidth

MMD_SIGMAS = (2.0, 5.0, 10.0, 20.0, 40.0, 80.0)


def mmd2(a: torch.Tensor, b: torch.Tensor, sigmas=MMD_SIGMAS) -> float:
    """Biased squared MMD with a sum of Gaussian kernels; exactly 0 when a and b are the same set."""
    a, b = a.double().flatten(1), b.double().flatten(1)

    def k(u, v):
        sq = torch.cdist(u, v).square()
        return sum(torch.exp(-sq / (2 * s**2)) for s in sigmas)

    return float(k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean())


def latent_nll(codes: torch.Tensor, prior_samples: torch.Tensor) -> float:
    kde = KDE(codes, [scott_bandwidth(codes)])
    return float(-kde.log_prob(prior_samples.float()).mean())


def knn_accuracy(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray, k: int) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    return float(KNeighborsClassifier(n_neighbors=k).fit(z_train, y_train).score(z_test, y_test))


def purity(labels: np.ndarray, clusters: np.ndarray) -> float:
    """sum over clusters of the largest class count in the cluster, over N."""
    total = 0
    for c in np.unique(clusters):
        total += np.bincount(labels[clusters == c]).max()
    return float(total / len(labels))


def clustering_scores(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import completeness_score, normalized_mutual_info_score

    return {"cluster_purity": purity(labels, clusters),
            "cluster_completeness": float(completeness_score(labels, clusters)),
            "nmi": float(normalized_mutual_info_score(labels, clusters)),
            "clusters_used": len(np.unique(clusters))}
