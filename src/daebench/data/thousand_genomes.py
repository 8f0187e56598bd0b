"""The ``1000_genomes`` genotypes source: the phase-3 release, downloaded, and the streaming parsers of its
VCF and panel files.

The files (chromosome 22 by default) are downloaded with :func:`daebench.data.download.fetch` into
``<download_dir>/1000_genomes/``; labels are the super-population (5 classes) or population (26 classes)
from the panel file. The dataset built from them: genotypes.py.

No checksum of the 1000 Genomes files is pinned in the defaults (``1000_genomes.checksums`` null), because
no published checksum is known for certain to match the release's files. With a null checksum the file is
downloaded atomically but unverified, and its sha256 is recorded in ``manifest.json`` under
``source_checksums``; copy it into ``checksums`` to pin it for later runs.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from ._checks import require_int
from .download import DownloadError, fetch, parse_downloaded

__all__ = ["LABEL_COLUMNS", "THOUSAND_GENOMES", "build_1000_genomes", "parse_vcf_genotypes", "read_panel"]

log = logging.getLogger("daebench.data.genotypes")  # one logger for the genotypes dataset, whichever module logs

LABEL_COLUMNS = ("super_pop", "pop")

THOUSAND_GENOMES: dict[str, str] = {
    "base_url": "https://ftp.1000genomes.ebi.ac.uk/vol1/ftp/release/20130502/",
    "vcf": "ALL.chr22.phase3_shapeit2_mvncall_integrated_v5b.20130502.genotypes.vcf.gz",
    "panel": "integrated_call_samples_v3.20130502.ALL.panel",
}

_KG_DIR = "1000_genomes"
_BASES = frozenset(b"ACGTacgt")


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
    require_int("thin", thin, minimum=1)
    if max_sites is not None:
        require_int("max_sites", max_sites, minimum=1)
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
        from ..progress import tqdm
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


# --------------------------------------------------------------------------- download

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

