"""Genotype data for the DDVI clustering experiment: simulated populations or 1000 Genomes.

DDVI (§5.3 and appendix G) clusters 1000 Genomes individuals by ancestry. Appendix G:
"we first pre-process it by running a PCA and keep only the first 1000 principal
components of the data points. We further divide the features by 30". This module
produces exactly that input, a ``[n_individuals, k]`` float32 matrix of PCA scores
divided by ``scale``, plus integer population labels for the clustering metrics.

Two sources:

* ``"simulated"`` (default): an msprime coalescent simulation of ``populations``
  populations that split from one ancestral population ``split_time`` generations
  ago and exchange migrants symmetrically since. It needs no network, runs in well
  under a second at the defaults and gives clearly but imperfectly separated
  clusters (nearest-centroid accuracy on the top 10 PCs ~0.97), so the pipeline can
  run and be tested offline.
* ``"1000_genomes"``: the phase-3 release (chromosome 22 by default), downloaded with
  :func:`daebench.data.download.fetch` into ``<download_dir>/1000_genomes/``; labels
  are the super-population (5 classes) or population (26 classes) from the panel file.

Genotype PCA follows EIGENSOFT (Patterson, Price & Reich 2006): monomorphic sites are
dropped, and each SNP is centred by its mean count ``2p`` and divided by
``sqrt(p(1-p))``; the scores are the left singular vectors times the singular values.

Config: ``prepare_genotypes(cfg, out_dir)`` takes ``ddvi.genotypes`` as the workflow validates it
(workflow/schemas/params.schema.yaml holds every key's type, default and description: source,
pca_components, scale, simulated.*, 1000_genomes.*). This module keeps no defaults of its own.

No checksum of the 1000 Genomes files is pinned here (none was known for certain
when this was written). With a null checksum the file is downloaded atomically but
unverified, and its sha256 is recorded in ``manifest.json`` under
``source_checksums``; copy it into ``checksums`` to pin it for later runs.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import platform
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from .download import DownloadError, fetch, parse_downloaded
from .store import MANIFEST_NAME, IntegrityError, read_manifest, save_npz, verify_file, write_manifest

__all__ = [
    "GENOTYPES_FILE",
    "SOURCES",
    "THOUSAND_GENOMES",
    "build_1000_genomes",
    "load_genotypes",
    "parse_vcf_genotypes",
    "pca_features",
    "prepare_genotypes",
    "read_panel",
    "simulate_genotypes",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
GENOTYPES_FILE = "genotypes.npz"
SOURCES = ("simulated", "1000_genomes")
LABEL_COLUMNS = ("super_pop", "pop")

THOUSAND_GENOMES: dict[str, str] = {
    "base_url": "https://ftp.1000genomes.ebi.ac.uk/vol1/ftp/release/20130502/",
    "vcf": "ALL.chr22.phase3_shapeit2_mvncall_integrated_v5b.20130502.genotypes.vcf.gz",
    "panel": "integrated_call_samples_v3.20130502.ALL.panel",
}

_KG_DIR = "1000_genomes"
_BASES = frozenset(b"ACGTacgt")


# --------------------------------------------------------------------------- simulation

def simulate_genotypes(
    *,
    populations: int,
    samples_per_population: int,
    sequence_length: float,
    mutation_rate: float,
    recombination_rate: float,
    population_size: float,
    migration_rate: float,
    split_time: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Simulate diploid genotypes of ``populations`` related populations with msprime.

    Demography: populations ``pop0``..``pop{K-1}``, each of (diploid) size
    ``population_size``, split from one ancestral population of the same size
    ``split_time`` generations ago and since exchange migrants at the symmetric rate
    ``migration_rate`` (fraction of a population replaced per generation by migrants
    from each other population). Mutations use the binary model, so every site is
    biallelic. Ancestry and mutations are both seeded with ``seed`` (1 <= seed < 2**32,
    msprime's range); results depend on the msprime version.

    Returns
    -------
    G : ndarray, uint8, shape (n_individuals, n_sites)
        Derived-allele count (0, 1 or 2) of each individual at each variable site.
    labels : ndarray, int64, shape (n_individuals,)
        Population index of each individual (individuals are grouped by population).
    names : list of str
        Population names, indexed by label.
    """
    import msprime  # lazy: only the simulated source needs it

    _require_int("populations", populations, minimum=1)
    _require_int("samples_per_population", samples_per_population, minimum=1)
    _require_int("seed", seed, minimum=1)
    if seed >= 2**32:
        raise ValueError(f"seed must be < 2**32 (msprime), got {seed!r}")
    for key, value, positive in (("sequence_length", sequence_length, True),
                                 ("population_size", population_size, True),
                                 ("split_time", split_time, True),
                                 ("mutation_rate", mutation_rate, False),
                                 ("recombination_rate", recombination_rate, False),
                                 ("migration_rate", migration_rate, False)):
        _require_number(key, value, positive=positive)

    names = [f"pop{i}" for i in range(populations)]
    demography = msprime.Demography()
    for name in names:
        demography.add_population(name=name, initial_size=float(population_size))
    demography.add_population(name="ancestral", initial_size=float(population_size))
    if populations > 1 and migration_rate > 0:
        demography.set_symmetric_migration_rate(names, float(migration_rate))
    # The split also ends migration between the derived populations (they become inactive).
    demography.add_population_split(time=float(split_time), derived=names, ancestral="ancestral")

    ts = msprime.sim_ancestry(
        samples={name: int(samples_per_population) for name in names},
        demography=demography,
        ploidy=2,
        sequence_length=float(sequence_length),
        recombination_rate=float(recombination_rate),
        random_seed=int(seed),
    )
    ts = msprime.sim_mutations(ts, rate=float(mutation_rate), model=msprime.BinaryMutationModel(),
                               random_seed=int(seed))

    node_pop = ts.tables.nodes.population
    pop_index = {pop.metadata["name"]: pop.id for pop in ts.populations()}
    label_of = {pop_index[name]: i for i, name in enumerate(names)}
    individuals = list(ts.individuals())
    nodes = np.array([ind.nodes for ind in individuals], dtype=np.int32)  # (n_individuals, 2)
    labels = np.array([label_of[int(node_pop[pair[0]])] for pair in nodes], dtype=np.int64)
    # (n_sites, 2 n_individuals) haplotype alleles 0/1, columns in the order of ``nodes``.
    haplotypes = ts.genotype_matrix(samples=nodes.reshape(-1))
    G = haplotypes.T.reshape(len(individuals), 2, ts.num_sites).sum(axis=1, dtype=np.uint8)
    log.info("simulated %d individuals x %d sites in %d populations", G.shape[0], G.shape[1], populations)
    return G, labels, names


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
    _require_int("n_components", n_components, minimum=1)
    _require_number("scale", scale, positive=True)
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


# --------------------------------------------------------------------------- VCF / panel

@contextlib.contextmanager
def _open_text_or_gzip(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """Open a file for binary line reading, gunzipping it if it starts with the gzip magic."""
    with open(path, "rb") as probe:
        gz = probe.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
        yield fh


def _gt_counts(fields: list[bytes], gt_index: int, where: str) -> np.ndarray:
    """Alt-allele count per sample from VCF sample columns; -1 marks a missing genotype."""
    out = np.empty(len(fields), dtype=np.int16)
    for i, field in enumerate(fields):
        gt = field.split(b":")[gt_index] if gt_index else field.split(b":", 1)[0]
        alleles = gt.replace(b"|", b"/").split(b"/")
        if b"." in alleles:
            out[i] = -1
            continue
        count = 0
        for allele in alleles:
            if allele == b"1":
                count += 1
            elif allele != b"0":
                raise ValueError(f"{where}: unexpected allele {allele.decode(errors='replace')!r} in GT "
                                 f"{gt.decode(errors='replace')!r} of a biallelic site")
        out[i] = count
    return out


def _fast_gt_counts(rest: bytes, n: int) -> np.ndarray | None:
    """Vectorised path for ``FORMAT == GT`` with every call diploid ``a|b`` / ``a/b`` of 0/1/.."""
    if len(rest) != 4 * n - 1:
        return None
    cells = np.frombuffer(rest + b"\t", dtype=np.uint8).reshape(n, 4)
    a, sep, b, tab = cells[:, 0], cells[:, 1], cells[:, 2], cells[:, 3]
    if not (np.all(tab == ord("\t")) and np.all((sep == ord("|")) | (sep == ord("/")))):
        return None
    ok = (a == ord("0")) | (a == ord("1")) | (a == ord("."))
    ok &= (b == ord("0")) | (b == ord("1")) | (b == ord("."))
    if not np.all(ok):
        return None
    counts = (a == ord("1")).astype(np.int16) + (b == ord("1"))
    counts[(a == ord(".")) | (b == ord("."))] = -1
    return counts


def parse_vcf_genotypes(
    path: str | os.PathLike, *, max_sites: int | None = None, thin: int = 1, progress: bool = False
) -> tuple[np.ndarray, list[str]]:
    """Read alt-allele counts of biallelic SNPs from a VCF (plain or gzip/bgzip), streaming.

    Sample ids come from the ``#CHROM`` header line. A record is a candidate when its
    FILTER is ``PASS`` or ``.``, REF and ALT are single bases (A/C/G/T) and ALT has no
    comma; indels, multi-allelic sites, symbolic ALTs and ``ALT = .`` are skipped.
    Every ``thin``-th candidate is kept (the 1st, the (thin+1)-th, ...), and reading
    stops once ``max_sites`` sites are kept. The GT subfield (``0|1``, ``1/1``, a
    haploid ``1``, ...) gives the count of ALT alleles. A genotype with any missing
    allele (``.``, ``./.``, ``.|1``) is imputed with the site's mean count over the
    non-missing genotypes, rounded to the nearest integer (ties to even); a kept site
    where every genotype is missing is dropped (and does not count toward max_sites).
    ``progress`` shows a tqdm bar of kept sites (reading a whole chromosome takes minutes).

    Returns
    -------
    G : ndarray, uint8, shape (n_samples, n_sites)
    samples : list of str

    Raises
    ------
    ValueError
        A malformed file (no header, wrong column count, no GT field, an allele other
        than 0/1 at a biallelic site).
    """
    _require_int("thin", thin, minimum=1)
    if max_sites is not None:
        _require_int("max_sites", max_sites, minimum=1)
    name = Path(path).name
    samples: list[str] | None = None
    columns: list[np.ndarray] = []
    candidates = 0
    with _open_text_or_gzip(path) as fh, _site_bar(max_sites, name, progress) as bar:
        for lineno, raw in enumerate(fh, start=1):
            if max_sites is not None and len(columns) >= max_sites:
                break
            line = raw.rstrip(b"\r\n")
            if not line or line.startswith(b"##"):
                continue
            if line.startswith(b"#"):
                header = line[1:].split(b"\t")
                if header[:1] != [b"CHROM"] or len(header) < 10 or header[8] != b"FORMAT":
                    raise ValueError(f"{name}:{lineno}: header line does not look like "
                                     "#CHROM POS ID REF ALT QUAL FILTER INFO FORMAT <samples>")
                samples = [s.decode() for s in header[9:]]
                continue
            if samples is None:
                raise ValueError(f"{name}:{lineno}: data line before the #CHROM header line")
            parts = line.split(b"\t", 9)
            if len(parts) != 10:
                raise ValueError(f"{name}:{lineno}: expected at least 10 tab-separated columns")
            ref, alt, filt, fmt = parts[3], parts[4], parts[6], parts[8]
            if not (len(ref) == 1 and len(alt) == 1 and ref[0] in _BASES and alt[0] in _BASES):
                continue
            if filt not in (b"PASS", b"."):
                continue
            candidates += 1
            if (candidates - 1) % thin:
                continue
            where = f"{name}:{lineno}"
            rest = parts[9]
            counts = _fast_gt_counts(rest, len(samples)) if fmt == b"GT" else None
            if counts is None:
                keys = fmt.split(b":")
                if b"GT" not in keys:
                    raise ValueError(f"{where}: FORMAT {fmt.decode(errors='replace')!r} has no GT field")
                fields = rest.split(b"\t")
                if len(fields) != len(samples):
                    raise ValueError(f"{where}: {len(fields)} sample columns, header names {len(samples)}")
                counts = _gt_counts(fields, keys.index(b"GT"), where)
            missing = counts < 0
            if missing.any():
                if missing.all():
                    continue
                counts[missing] = int(np.rint(counts[~missing].mean()))
            columns.append(counts.astype(np.uint8))
            if bar is not None:
                bar.update(1)
    if samples is None:
        raise ValueError(f"{name}: no #CHROM header line found; is this a VCF file?")
    G = np.stack(columns, axis=1) if columns else np.zeros((len(samples), 0), dtype=np.uint8)
    log.info("%s: kept %d of %d biallelic SNPs (thin=%d) for %d samples", name, G.shape[1], candidates,
             thin, len(samples))
    return G, samples


def _site_bar(total: int | None, desc: str, enabled: bool) -> Any:
    if not enabled:
        return contextlib.nullcontext(None)
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress is cosmetic
        return contextlib.nullcontext(None)
    return tqdm(total=total, unit="site", desc=desc, leave=False)


def read_panel(path: str | os.PathLike) -> dict[str, tuple[str, str]]:
    """Read a 1000 Genomes panel file into ``{sample: (pop, super_pop)}``.

    The file is tab-separated with a header naming at least ``sample``, ``pop`` and
    ``super_pop`` (the phase-3 file is ``sample pop super_pop gender``, with trailing tabs).
    """
    name = Path(path).name
    with open(path, encoding="utf-8") as fh:
        header = [h.strip() for h in fh.readline().rstrip("\r\n").split("\t")]
        missing = [c for c in ("sample", "pop", "super_pop") if c not in header]
        if missing:
            raise ValueError(f"{name}: header {header} lacks column(s) {missing}")
        i_s, i_p, i_sp = (header.index(c) for c in ("sample", "pop", "super_pop"))
        width = max(i_s, i_p, i_sp) + 1
        panel: dict[str, tuple[str, str]] = {}
        for lineno, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            row = [f.strip() for f in line.rstrip("\r\n").split("\t")]
            if len(row) < width:
                raise ValueError(f"{name}:{lineno}: expected {width} tab-separated columns, got {len(row)}")
            panel[row[i_s]] = (row[i_p], row[i_sp])
    if not panel:
        raise ValueError(f"{name}: no samples listed")
    return panel


# --------------------------------------------------------------------------- 1000 Genomes download

def build_1000_genomes(
    *,
    download_dir: str | os.PathLike,
    base_url: str | None = None,
    checksums: dict[str, str | None] | None = None,
    max_sites: int | None = 20000,
    thin: int = 1,
    label: str = "super_pop",
    progress: bool = True,
    vcf_file: str | None = None,
    panel_file: str | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """Download (or reuse) the 1000 Genomes VCF and panel, and parse genotypes and labels.

    Files go to ``<download_dir>/1000_genomes/<file name>``; a present file is reused
    without a request (verified first when a checksum is given). ``checksums`` maps
    ``"vcf"``/``"panel"`` to ``"md5:<hex>"``/``"sha256:<hex>"`` or None (download
    unverified and record the sha256 in ``info["verified"]``).

    Returns
    -------
    G : ndarray, uint8, shape (n_samples, n_sites)
    labels : ndarray, int64, shape (n_samples,)
        Index into ``names`` of each sample's ``label`` column in the panel.
    names : list of str
        Sorted distinct label values.
    info : dict
        ``source`` (base URL), ``files``, ``verified`` (per-file url/algorithm/checksum),
        ``label``, ``max_sites``, ``thin``.
    """
    if label not in LABEL_COLUMNS:
        raise ValueError(f"label must be one of {list(LABEL_COLUMNS)}, got {label!r}")
    checksums = dict(checksums or {})
    unknown = sorted(set(checksums) - {"vcf", "panel"})
    if unknown:
        raise ValueError(f"checksums given for unknown 1000 Genomes file role(s) {unknown}; expected 'vcf', 'panel'")
    files = {"vcf": vcf_file or THOUSAND_GENOMES["vcf"], "panel": panel_file or THOUSAND_GENOMES["panel"]}
    base = (base_url or THOUSAND_GENOMES["base_url"]).rstrip("/") + "/"
    folder = Path(download_dir) / _KG_DIR
    records: dict[str, dict[str, Any]] = {}
    for role in ("panel", "vcf"):
        # no published checksum known: fetch records the sha256 actually used, for the manifest
        records[role] = fetch(base + files[role], folder / files[role], checksums.get(role) or None,
                              progress=progress)

    errors = (OSError, EOFError, zlib.error, ValueError)
    panel = parse_downloaded(folder / files["panel"], records["panel"], "1000 Genomes panel file", read_panel,
                             errors)
    G, samples = parse_downloaded(
        folder / files["vcf"], records["vcf"], "VCF file",
        lambda p: parse_vcf_genotypes(p, max_sites=max_sites, thin=thin, progress=progress), errors)
    absent = [s for s in samples if s not in panel]
    if absent:
        raise DownloadError(f"{len(absent)} sample(s) of {files['vcf']} are not in {files['panel']} "
                            f"(first: {absent[:5]}); the VCF and the panel do not belong together")
    column = 0 if label == "pop" else 1
    values = [panel[s][column] for s in samples]
    names = sorted(set(values))
    index = {v: i for i, v in enumerate(names)}
    labels = np.array([index[v] for v in values], dtype=np.int64)
    info = {
        "source": base,
        "files": files,
        "verified": {files[role]: records[role] for role in ("vcf", "panel")},
        "label": label,
        "max_sites": max_sites,
        "thin": thin,
    }
    return G, labels, names, info


# --------------------------------------------------------------------------- prepare / load

def _require_int(key: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")


def _require_number(key: str, value: Any, *, positive: bool) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if not ok or not np.isfinite(value) or (value <= 0 if positive else value < 0):
        raise ValueError(f"{key} must be a finite {'positive' if positive else 'non-negative'} number, "
                         f"got {value!r}")


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
