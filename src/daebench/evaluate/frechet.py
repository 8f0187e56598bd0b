"""The Frechet distance between two feature sets (Heusel et al., NeurIPS 2017, eq. 6:
||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))), as clean-fid computes it, shared by the FIDs (fid.py) and
the domain classifier's ``fd_domain`` (domain_numpy.py). numpy and scipy only: a scoring job that needs no
network imports neither torch nor cleanfid.fid (which imports torchvision)."""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("daebench")

__all__ = ["frechet_distance", "frechet_distance_eig"]


def frechet_distance(f1: np.ndarray, f2: np.ndarray, eps: float = 1e-6) -> float:
    """cleanfid.fid.fid_from_feats (0.1.35) step for step: np.mean / np.cov statistics, scipy's sqrtm of
    the covariance product (an eps ridge if it is singular), its real part if the imaginary one is negligible.
    Kept here so a job does not import cleanfid.fid (which imports torchvision); a test compares the two."""
    from scipy import linalg

    mu1, s1 = np.mean(f1, axis=0), np.atleast_2d(np.cov(f1, rowvar=False))
    mu2, s2 = np.mean(f2, axis=0), np.atleast_2d(np.cov(f2, rowvar=False))
    diff = np.atleast_1d(mu1) - np.atleast_1d(mu2)
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        log.warning("Frechet distance: singular covariance product; adding %g to the diagonals", eps)
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Frechet distance: imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _trace_sqrt_product(f1: np.ndarray, f2: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> float:
    """tr sqrtm(S1 S2) for the sample covariances S1 = A^T A, S2 = B^T B (A, B the centred features over
    sqrt(n - 1)). With fewer images than features (a smoke run's 32, a small bootstrap) both are singular and
    any eigenvalue route puts round-off under a square root (sqrt(1e-14) per zero eigenvalue); there the
    nonzero eigenvalues of S1 S2 are those of M M^T with M = A B^T, so the trace is M's nuclear norm, from an
    n1 x n2 SVD that keeps its zeros. Otherwise S1 S2 is similar to C S2 C with C = S1^(1/2), whose
    eigenvalues are symmetric and real."""
    n1, n2, d = len(f1), len(f2), f1.shape[1]
    if min(n1, n2) <= d:
        a = (f1 - f1.mean(axis=0)) / np.sqrt(n1 - 1)
        b = (f2 - f2.mean(axis=0)) / np.sqrt(n2 - 1)
        return float(np.linalg.svd(a @ b.T, compute_uv=False).sum())
    lam, u = np.linalg.eigh(s1)
    c = (u * np.sqrt(np.clip(lam, 0.0, None))) @ u.T
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(c @ s2 @ c), 0.0, None)).sum())


def frechet_distance_eig(f1: np.ndarray, f2: np.ndarray) -> float:
    """The Frechet distance of frechet_distance with tr sqrtm(S1 S2) from symmetric eigenvalues or singular
    values (_trace_sqrt_product) instead of scipy's sqrtm: the same value to round-off where the covariances
    have full rank, closer to the exact one where they do not (tests: against sqrtm, and against the closed
    form for f2 = c f1 + m), at a quarter of sqrtm's cost, which matters for the bootstrap's thousand
    resamples per scoring job."""
    f1, f2 = np.asarray(f1, dtype=np.float64), np.asarray(f2, dtype=np.float64)
    mu1, s1 = np.mean(f1, axis=0), np.atleast_2d(np.cov(f1, rowvar=False))
    mu2, s2 = np.mean(f2, axis=0), np.atleast_2d(np.cov(f2, rowvar=False))
    diff = np.atleast_1d(mu1) - np.atleast_1d(mu2)
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * _trace_sqrt_product(f1, f2, s1, s2))
