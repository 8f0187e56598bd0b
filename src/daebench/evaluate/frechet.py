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


def frechet_distance_eig(f1: np.ndarray, f2: np.ndarray) -> float:
    """The Frechet distance of frechet_distance with tr sqrtm(S1 S2) taken as the sum of the square roots of
    the eigenvalues of S1 S2 (real and >= 0 for covariance matrices; round-off negatives clamped): the same
    value to round-off (a test compares them) at half scipy's sqrtm cost, which matters for the bootstrap's
    thousand resamples per scoring job."""
    mu1, s1 = np.mean(f1, axis=0), np.atleast_2d(np.cov(f1, rowvar=False))
    mu2, s2 = np.mean(f2, axis=0), np.atleast_2d(np.cov(f2, rowvar=False))
    diff = np.atleast_1d(mu1) - np.atleast_1d(mu2)
    ev = np.linalg.eigvals(s1.dot(s2)).real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(ev, 0.0, None)).sum())
