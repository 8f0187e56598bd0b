"""Genotype data for the DDVI clustering experiment: simulated populations or 1000 Genomes, as PCA features.

DDVI (§5.3 and appendix G) clusters 1000 Genomes individuals by ancestry. Appendix G:
"we first pre-process it by running a PCA and keep only the first 1000 principal
components of the data points. We further divide the features by 30". This module
produces exactly that input, a ``[n_individuals, k]`` float32 matrix of PCA scores
divided by ``scale``, plus integer population labels for the clustering metrics,
written as ``genotypes.npz`` + ``manifest.json`` and read back after a checksum.

Two sources:

* ``"simulated"`` (default): an msprime coalescent simulation of ``populations``
  related populations (genotype_simulation.py); no network needed.
* ``"1000_genomes"``: the phase-3 release (chromosome 22 by default), downloaded and
  parsed by thousand_genomes.py; labels are the super-population (5 classes) or
  population (26 classes) from the panel file.

Genotype PCA follows EIGENSOFT (Patterson, Price & Reich 2006): monomorphic sites are
dropped, and each SNP is centred by its mean count ``2p`` and divided by
``sqrt(p(1-p))``; the scores are the left singular vectors times the singular values.

Config: ``prepare_genotypes(cfg, out_dir)`` takes ``ddvi.genotypes`` as the workflow validates it
(workflow/schemas/params.schema.yaml holds every key's type, default and description: source,
pca_components, scale, simulated.*, 1000_genomes.*). This module keeps no defaults of its own.
"""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from ._checks import require_int, require_number
from .genotype_simulation import simulate_genotypes
from .store import MANIFEST_NAME, IntegrityError, read_manifest, save_npz, verify_file, write_manifest
from .thousand_genomes import THOUSAND_GENOMES, build_1000_genomes

__all__ = [
    "GENOTYPES_FILE",
    "SOURCES",
    "THOUSAND_GENOMES",
    "build_1000_genomes",
    "load_genotypes",
    "pca_features",
    "prepare_genotypes",
    "simulate_genotypes",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
GENOTYPES_FILE = "genotypes.npz"
SOURCES = ("simulated", "1000_genomes")


# --------------------------------------------------------------------------- PCA

def pca_features(G: np.ndarray, *, n_components: int, scale: float) -> tuple[np.ndarray, dict]:
    """PCA scores of a genotype matrix, divided by ``scale`` (DDVI appendix G).

    Monomorphic sites (all counts equal, including all 0 or all 2) are dropped. Each
    remaining SNP j is standardised EIGENSOFT-style: ``(g - 2 p_j) / sqrt(p_j (1 - p_j))``
    with ``p_j = mean(g_j) / 2``; this is the same as sklearn's PCA of that matrix. The
    scores ``U S`` of the SVD ``X = U S V^T`` (computed from the eigendecomposition of the
    smaller of ``X X^T`` and ``X^T X``) are kept for k = min(n_components, n - 1, n_sites)
    components; each component's sign is fixed so that its largest-|loading| SNP has a
    positive loading.

    Returns
    -------
    features : ndarray, float32, shape (n_individuals, k)
    info : dict
        ``k``, ``n_sites`` (used), ``n_sites_dropped`` (monomorphic),
        ``explained_variance_ratio`` (list, kept components, relative to the total
        variance), ``explained_variance_ratio_sum``, ``standardisation`` and ``scale``.
    """
    G = np.asarray(G)
    if G.ndim != 2:
        raise ValueError(f"G must be 2-D (individuals x sites), got shape {G.shape}")
    require_int("n_components", n_components, minimum=1)
    require_number("scale", scale, positive=True)
    n = G.shape[0]
    if n < 2:
        raise ValueError(f"PCA needs at least 2 individuals, got {n}")
    X = G.astype(np.float64)
    polymorphic = np.ptp(X, axis=0) > 0 if X.shape[1] else np.zeros(0, dtype=bool)
    X = X[:, polymorphic]
    m = X.shape[1]
    if m == 0:
        raise ValueError(f"all {G.shape[1]} sites are monomorphic; nothing to run PCA on")
    p = X.mean(axis=0) / 2.0
    X -= 2.0 * p
    X /= np.sqrt(p * (1.0 - p))
    k = int(min(n_components, n - 1, m))

    # Eigendecomposition of the smaller Gram matrix instead of a full SVD: the same
    # components (X = U S V^T, X X^T = U S^2 U^T) at a fraction of the cost, which matters
    # for 1000 Genomes (2504 x tens of thousands of SNPs).
    if m >= n:
        gram = X @ X.T
        total = float(np.trace(gram))  # = sum of squares of X, without another n x m temporary
        evals, evecs = np.linalg.eigh(gram)
        order = np.argsort(evals)[::-1][:k]
        S = np.sqrt(np.clip(evals[order], 0.0, None))
        U = evecs[:, order]
        V = (X.T @ U) / np.where(S > 0, S, 1.0)
    else:
        gram = X.T @ X
        total = float(np.trace(gram))
        evals, evecs = np.linalg.eigh(gram)
        order = np.argsort(evals)[::-1][:k]
        S = np.sqrt(np.clip(evals[order], 0.0, None))
        V = evecs[:, order]
        U = (X @ V) / np.where(S > 0, S, 1.0)
    signs = np.sign(V[np.argmax(np.abs(V), axis=0), np.arange(k)])
    signs[signs == 0] = 1.0
    scores = (U * (S * signs)) / float(scale)

    ratio = (S**2 / total) if total > 0 else np.zeros(k)
    info = {
        "k": k,
        "n_sites": int(m),
        "n_sites_dropped": int(G.shape[1] - m),
        "explained_variance_ratio": [float(r) for r in ratio],
        "explained_variance_ratio_sum": float(np.sum(ratio)),
        "standardisation": "centred by 2p, divided by sqrt(p(1-p)) (EIGENSOFT)",
        "scale": float(scale),
    }
    return scores.astype(np.float32), info


# --------------------------------------------------------------------------- prepare / load

CONFIG_KEYS = ("source", "pca_components", "scale", "simulated", "1000_genomes")


def _validated(cfg: dict) -> dict[str, Any]:
    """``cfg`` as the workflow validated it; a missing key means it was not (the schema fills every one)."""
    missing = [k for k in CONFIG_KEYS if k not in (cfg or {})]
    if missing:
        raise ValueError(f"genotypes config lacks {', '.join(missing)}: pass ddvi.genotypes as daebench.config "
                         "validates it (workflow/schemas/params.schema.yaml fills the defaults)")
    if cfg["source"] not in SOURCES:
        raise ValueError(f"unknown genotypes source {cfg['source']!r}; known sources: {', '.join(SOURCES)}")
    kg = {**cfg["1000_genomes"], "download_dir": os.fspath(cfg["1000_genomes"]["download_dir"])}  # JSON-able
    return {**cfg, "1000_genomes": kg}


def _versions(source: str) -> dict[str, str]:
    versions = {"numpy": np.__version__, "python": platform.python_version()}
    if source == "simulated":
        import msprime
        import tskit

        versions.update(msprime=msprime.__version__, tskit=tskit.__version__)
    return versions


def prepare_genotypes(cfg: dict, out_dir: str | os.PathLike, *, progress: bool = True) -> dict:
    """Build genotypes, run the PCA of DDVI appendix G and write ``genotypes.npz`` + ``manifest.json``.

    ``genotypes.npz`` holds ``features`` (float32 [n, k], PCA scores / scale) and
    ``labels`` (int64 [n]); ``manifest.json`` is removed first and written last (the
    commit marker) and records the source, label names, sizes, explained variance, the
    npz ``sha256`` and the resolved cfg. See the module docstring for the cfg keys.

    Returns
    -------
    dict
        The manifest as written.
    """
    rcfg = _validated(cfg)
    source = rcfg["source"]
    if source == "simulated":
        G, labels, names = simulate_genotypes(**rcfg["simulated"])
        extra: dict[str, Any] = {"source_checksums": {}, "demography": (
            "populations split from one ancestral population at split_time generations, "
            "symmetric migration since; msprime binary mutation model, diploid")}
    else:
        kg = rcfg["1000_genomes"]
        G, labels, names, info = build_1000_genomes(
            download_dir=kg["download_dir"], base_url=kg["base_url"], checksums=kg["checksums"],
            max_sites=kg["max_sites"], thin=kg["thin"], label=kg["label"], progress=progress,
            vcf_file=kg["vcf_file"], panel_file=kg["panel_file"])
        extra = {
            "source_url": info["source"],
            "source_checksums": {
                fname: {k: v for k, v in rec.items() if k in ("url", "algorithm", "checksum", "note")}
                for fname, rec in info["verified"].items()
            },
        }
    features, pca = pca_features(G, n_components=rcfg["pca_components"], scale=rcfg["scale"])

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    digest = save_npz(out / GENOTYPES_FILE, features=features, labels=labels)
    manifest = {
        "format_version": FORMAT_VERSION,
        "dataset": "genotypes",
        "source": source,
        **extra,
        "file": GENOTYPES_FILE,
        "sha256": digest,
        "arrays": {"features": f"float32 [{features.shape[0]}, {features.shape[1]}]",
                   "labels": f"int64 [{labels.shape[0]}]"},
        "label_names": list(names),
        "num_classes": len(names),
        "class_counts": np.bincount(labels, minlength=len(names)).tolist(),
        "n_individuals": int(G.shape[0]),
        "n_sites_raw": int(G.shape[1]),
        "n_sites": pca["n_sites"],
        "k": pca["k"],
        "explained_variance_ratio": pca["explained_variance_ratio"],
        "explained_variance_ratio_sum": pca["explained_variance_ratio_sum"],
        "preprocessing": (f"drop monomorphic SNPs; {pca['standardisation']}; PCA (SVD) keeping "
                          f"k={pca['k']} components; scores divided by {pca['scale']:g} (DDVI appendix G)"),
        "versions": _versions(source),
        "cfg": rcfg,
    }
    write_manifest(out, manifest)
    log.info("prepared genotypes (%s) in %s: %d individuals, %d sites, k=%d", source, out, G.shape[0],
             pca["n_sites"], pca["k"])
    return manifest


def load_genotypes(out_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load ``features``, ``labels`` and label names after checking the npz sha256.

    Raises
    ------
    FileNotFoundError
        No manifest, or the npz it lists is missing.
    IntegrityError
        The npz does not match the sha256 in the manifest, or holds unexpected arrays.
    """
    manifest = read_manifest(out_dir)
    if manifest.get("dataset") != "genotypes" or "sha256" not in manifest or "file" not in manifest:
        raise ValueError(f"{Path(out_dir) / MANIFEST_NAME} is not a genotypes manifest "
                         f"(dataset={manifest.get('dataset')!r}); run prepare_genotypes into {out_dir}")
    path = Path(out_dir) / manifest["file"]
    verify_file(path, manifest["sha256"], Path(out_dir) / MANIFEST_NAME, "the genotypes prepare step",
                f"Delete {path} and rerun the genotypes prepare step.")
    with np.load(path, allow_pickle=False) as npz:
        features = npz["features"]
        labels = npz["labels"]
    names = list(manifest["label_names"])
    if (features.dtype != np.float32 or features.ndim != 2 or labels.dtype != np.int64
            or labels.shape != (features.shape[0],) or (labels.size and labels.max() >= len(names))):
        raise IntegrityError(f"{path} has unexpected arrays: features {features.dtype}{features.shape}, "
                             f"labels {labels.dtype}{labels.shape} for {len(names)} label names")
    return features, labels, names
