"""One section of the report per study (its declaration's ``section``, daebench/studies/): its tables beside
the paper's, its figures and curves, the table of contents, and the per-study summary of claims and job time."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..claims import counts, reference_dir
from ..studies import REGISTRY
from .curves import _split_name, training_curves

RUN_ID_COLUMNS = ("mlflow_run_id", "mlflow_run_ids")

# The notebook's view of each study's section (title, anchor, intro, target, ...), in the studies' order.
SECTIONS: dict[str, dict] = {
    name: {"anchor": name, "target": st.section.target or f"{name}_all", "title": st.section.title,
           "intro": st.section.intro, "tables": list(st.section.tables), "figures": list(st.section.figures),
           "curves": dict(st.section.curves or {})}
    for name, st in REGISTRY.items() if st.section is not None}


def styled(df: pd.DataFrame, caption: str):
    """A table for the report: 4 significant digits (the papers' MSEs go down to 1e-5), blanks for N/A."""
    floats = df.select_dtypes("float").columns
    return df.style.format("{:.4g}", subset=floats, na_rep="").hide(axis="index").set_caption(caption)


def study_tables(study: str, results: str | Path = "results", ref_dir: str | Path | None = None):
    """(title, ours, the paper's or None) for each of the study's tables that this run produced."""
    out = []
    for title, ours, ref, table_no in SECTIONS[study]["tables"]:
        path = Path(results) / ours
        if not path.exists():
            continue
        df = pd.read_csv(path).drop(columns=[c for c in RUN_ID_COLUMNS if c in pd.read_csv(path, nrows=0)])
        paper = None
        if ref is not None:
            paper = pd.read_csv(Path(ref_dir or reference_dir()) / ref)
            if table_no is not None:
                paper = paper[paper["table"] == table_no].drop(columns="table").dropna(axis=1, how="all")
        out.append((title, df, paper))
    return out


def study_figures(study: str, results: str | Path = "results", nfe: int | None = None) -> list[tuple[str, list[Path]]]:
    """(caption, image files) for each of the study's figures that exist; ``nfe`` fills the DBAE grids' NFE."""
    import re

    out = []
    for caption, pattern in SECTIONS[study]["figures"]:
        files = sorted(Path(results).glob(pattern.format(nfe=nfe if nfe is not None else "*")))
        if "{nfe}" in pattern and nfe is None and files:  # the largest NFE swept
            top = max(int(re.search(r"_nfe(\d+)", f.name).group(1)) for f in files)
            files = [f for f in files if f.name.endswith(f"_nfe{top}.png")]
        if files:
            out.append((caption, files))
    return out


def study_plots(study: str, results: str | Path = "results") -> list[tuple[str, object]]:
    """(caption, matplotlib figure) of the curves a study's tables hold (its section's ``plots``)."""
    out = []
    for caption, table, draw in REGISTRY[study].section.plots:
        if (path := Path(results) / table).exists():
            out.append((caption, draw(pd.read_csv(path))))
    return out


def emergence_results(results: str | Path = "results") -> list[tuple[str, Path, Path]]:
    """(study, its emergence CSV, its figure) for each study whose ladder has run."""
    out = []
    for study in REGISTRY:
        csv, png = Path(results) / f"emergence/{study}.csv", Path(results) / f"emergence/{study}.png"
        if csv.exists() and png.exists():
            out.append((study, csv, png))
    return out


def contents(studies: Sequence[str], emergence: bool = False) -> str:
    """The report's table of contents (Markdown links to the sections' anchors); the emergence section only
    when a ladder has run (the report has no empty sections)."""
    items = [("summary", "Summary"), ("findings", "Findings, study by study"),
             ("table4", "Two-phase DAE training: Table 4")]
    items += [(SECTIONS[s]["anchor"], SECTIONS[s]["title"]) for s in studies if s in SECTIONS]
    items += [("emergence", "Emergence: the claims against the training budget")] if emergence else []
    items += [("protocol", "Protocol")]
    return "\n".join(f"{i}. [{title}](#{anchor})" for i, (anchor, title) in enumerate(items, 1))


def study_curves(study: str, uri: str, experiment: str, dataset: str | None = None) -> pd.DataFrame:
    c = SECTIONS[study]["curves"]
    return training_curves(uri, experiment, dataset, metric=c["metric"], rule=c["rule"], methods=c.get("methods"),
                           split=c.get("split", _split_name), keep=c.get("keep"))


def study_of_benchmark(path: Path, methods: dict[str, str]) -> str:
    """Which study a job's benchmark file (logs/benchmarks/<rule dir>/...) belongs to: its study's own jobs
    (``Study.benchmarks``), the shared ``study_table`` rule's by the study it names; training, reconstruction
    and scoring jobs by their method (``methods``: method -> study); what the studies share (data, the metric
    classifier) is `shared`."""
    parts, rel = path.parts, path.as_posix()
    if parts[0] == "train" and len(parts) > 2:
        return methods.get(parts[2], "shared")
    if parts[0] in ("reconstruct", "metrics") and len(parts) > 2:
        return methods.get(parts[2], "two_phase")
    if parts[0] == "study_table" and len(parts) > 2:
        return parts[1]
    if parts[0] == "report" and parts[-1].startswith("claims_"):
        return parts[-1][len("claims_"):-len(".tsv")]
    return next((name for name, st in REGISTRY.items() if st.owns_benchmark(rel)), "shared")


def study_summary(claims: pd.DataFrame, studies: Sequence[str], bench_dir: str | Path,
                  methods: dict[str, str]) -> pd.DataFrame:
    """Per study: claims held out of those tested (holds + fails + inconclusive), and the job time spent on it
    (sum of its jobs' wall times from Snakemake's benchmark files; jobs run in parallel, so this is compute
    time, not elapsed time). `shared` is the data preparation, the metric classifier and the report."""
    rows = {s: {"jobs": 0, "job_seconds": 0.0} for s in [*studies, "shared"]}
    for f in sorted(Path(bench_dir).rglob("*.tsv")):
        study = study_of_benchmark(f.relative_to(bench_dir), methods)
        if study not in rows:
            continue
        try:
            s = float(pd.read_csv(f, sep="\t")["s"].iloc[-1])
        except (OSError, ValueError, KeyError, IndexError, pd.errors.ParserError):
            continue
        rows[study]["jobs"] += 1
        rows[study]["job_seconds"] += s
    out = []
    for s, r in rows.items():
        c = claims[claims["study"] == s] if s != "shared" else claims.iloc[0:0]
        tested = c[c["verdict"] != "untestable"]
        n = counts(c) if s != "shared" else {}
        out.append({"study": REGISTRY[s].paper if s in REGISTRY else "shared (data, metric classifier, report)",
                    "claims held / tested": f"{n['holds']} / {len(tested)}" if n else "",
                    "vs-collapsed": n["vs-collapsed"] if n else "",
                    "robust findings held (on stand-ins)":
                        f"{n['robust_holds']} / {n['robust']} ({n['robust_holds_stand_in']})" if n else "",
                    "untestable": n["untestable"] if n else "",
                    "jobs": r["jobs"], "job time": _duration(r["job_seconds"])})
    return pd.DataFrame(out)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
