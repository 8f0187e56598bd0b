"""Helpers of notebooks/report.ipynb (``import daebench.report as R``): Table 4 beside the paper's, the findings,
the reconstructions; the studies' sections (sections.py), training curves from MLflow (curves.py), and the
`report` command's execution and rendering (render.py). Every name the notebook uses is importable from here."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..claims import (
    BASELINE,
    LABELS,
    LOWER_IS_BETTER,
    NAMES,
    ONE_PHASE,
    TWO_PHASE,
    reference_dir,
    summary,
)
from ..evaluate.figures import _show_rows
from ..evaluate.reconstruction import to_hwc01
from ..methods import get_family
from ..studies import REGISTRY
from .curves import curves_figure, training_curves
from .header import mlflow_run_link, run_header
from .render import notebook_to_html, render_report
from .sections import (
    SECTIONS,
    contents,
    emergence_results,
    study_curves,
    study_figures,
    study_plots,
    study_summary,
    study_tables,
    styled,
)

__all__ = [
    "MODES",
    "SECTIONS",
    "STUDIES",
    "claims_by_study",
    "claims_summary",
    "contents",
    "curves_figure",
    "emergence_results",
    "findings_table",
    "interval_text",
    "load_recon_grid",
    "load_reference_table4",
    "metric_definitions",
    "mlflow_run_link",
    "notebook_to_html",
    "orderings",
    "ours_table",
    "recon_figure",
    "reference_dir",
    "reference_table",
    "render_report",
    "run_header",
    "side_by_side",
    "study_curves",
    "study_figures",
    "study_plots",
    "study_summary",
    "study_tables",
    "style_side_by_side",
    "styled",
    "training_curves",
]

# The studies' claims modules by name (the notebook's emergence section titles its panels with their PAPER).
STUDIES = {name: st.claims for name, st in REGISTRY.items()}

MODES = get_family("dae").modes  # Table 4's rows: the DAE family's decoding modes


SHORT = {BASELINE: "Preechakul", ONE_PHASE: "1-phase", TWO_PHASE: "2-phase"}


REFERENCE_TABLE4 = "dae_two_phase_table4.csv"


claims_summary = summary  # the notebook's name for the claims' one-line summary


def load_reference_table4(ref_dir: str | Path | None = None) -> pd.DataFrame:
    """The paper's Table 4 in our table's layout: its method names are our `label` values."""
    df = pd.read_csv(Path(ref_dir or reference_dir()) / REFERENCE_TABLE4)
    return df.rename(columns={"method": "label"})


def _order(df: pd.DataFrame) -> pd.DataFrame:
    key = {**{m: i for i, m in enumerate(MODES)}, **{lab: i for i, lab in enumerate(LABELS)}}
    return df.sort_values(["dataset", "mode", "label"], key=lambda s: s.map(key) if s.name != "dataset" else s,
                          kind="stable").reset_index(drop=True)


_VERDICT = {"holds": "✔ holds", "fails": "✘ fails", "inconclusive": "≈ inconclusive", "vs-collapsed": "⊘ vs-collapsed",
            "untestable": "– untestable"}


def interval_text(claims: pd.DataFrame) -> pd.Series:
    """The interval column a reader sees: "difference [low, high]" (or ratio), and how it was computed."""
    def one(x) -> str:
        if pd.isna(x.get("difference")):
            return ""
        what = "ratio" if "(needs a factor" in str(x["measured"]) else "Δ"
        if pd.isna(x.get("ci_low")):
            return f"{what} {x['difference']:.4g} ({x['test']})"
        return f"{what} {x['difference']:.4g} [{x['ci_low']:.4g}, {x['ci_high']:.4g}] ({x['test']})"
    return claims.apply(one, axis=1) if len(claims) else pd.Series(dtype=str)


def findings_table(claims: pd.DataFrame):
    """Styled claims of one study: the verdict first and coloured, the interval of the difference behind it,
    the measured numbers, the estimator or regime where it matters, and the paper's datasets on which the
    same statement holds under the same rule (robust: all; paper-inconclusive: the paper's ± do not separate)."""
    df = claims.copy()
    df["verdict"] = df["verdict"].map(_VERDICT).fillna(df["verdict"])
    if "stand_in" in df:
        df.loc[df["stand_in"].fillna(False).astype(bool), "verdict"] += " (stand-in)"
    df["interval"] = interval_text(claims)
    tag = {"robust": "robust · ", "paper-inconclusive": "paper-inconclusive · "}
    df["in the paper"] = [f"{tag.get(v, '')}{p}" for v, p in
                          zip(df.get("paper_verdict", pd.Series("", index=df.index)).fillna(""), df["paper_datasets"])]
    cols = ["verdict", "table", "statement", "interval", "measured"]
    if df["dataset"].nunique() > 1:
        cols.insert(1, "dataset")
    if df["estimator"].fillna("").astype(str).str.len().any():
        cols.append("estimator")
    cols += ["in the paper", "claim_id"]
    colour = {"✔": "background-color:#d9f2d9;color:#145214;font-weight:bold",
              "✘": "background-color:#f8d7da;color:#7a1020;font-weight:bold",
              "≈": "background-color:#fff3cd;color:#6b5200;font-weight:bold",
              "⊘": "background-color:#e2d9f3;color:#3d2373;font-weight:bold",
              "–": "background-color:#eeeeee;color:#555555"}
    return (df[cols].fillna("").style.hide(axis="index")
            .map(lambda v: colour.get(str(v)[:1], ""), subset=["verdict"])
            .set_properties(subset=["statement"], **{"text-align": "left", "max-width": "30em"})
            .set_properties(subset=["measured", "interval"], **{"text-align": "left", "font-family": "monospace",
                                                                "font-size": "90%"})
            .set_table_styles([{"selector": "th", "props": "text-align:left"},
                               {"selector": "td", "props": "vertical-align:top;padding:3px 6px"}]))


def claims_by_study(claims: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(the paper's name, its claims) for each study present, in the project's study order."""
    return [(STUDIES[s].PAPER, claims[claims["study"] == s]) for s in STUDIES if (claims["study"] == s).any()]


def _fid_like(ours: pd.DataFrame) -> str | None:
    for col in ("fid_tf", "fid_cf", "fd_domain"):
        if col in ours.columns and ours[col].notna().any():
            return col
    return None


def side_by_side(ours: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Rows (source · dataset, metric), columns (mode, method): our rows above the paper's, so the
    ordering of the three methods can be read along each row. Values only; see `style_side_by_side`."""
    fid = _fid_like(ours)
    our_metrics = ["psnr", "ssim"] + [m for m in ("lpips",) if m in ours.columns and ours[m].notna().any()]
    our_metrics += [fid] if fid else []
    parts = [(f"ours · {d}", g, our_metrics) for d, g in ours.groupby("dataset", sort=False)]
    parts += [(f"paper · {d}", g, ["psnr", "ssim", "lpips", "fid_tf"]) for d, g in
              reference.groupby("dataset", sort=False)]
    rows = {}
    for source, g, metrics in parts:
        for metric in metrics:
            name = NAMES.get(metric, metric) + (" (FID stand-in)" if metric == "fd_domain" else "")
            rows[(source, name)] = {(mode, SHORT[lab]): _pick(g, lab, mode, metric)
                                    for mode in MODES for lab in LABELS}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index = pd.MultiIndex.from_tuples(df.index, names=["source", "metric"])
    df.columns = pd.MultiIndex.from_tuples(df.columns, names=["mode", "method"])
    return df


def _pick(g: pd.DataFrame, label: str, mode: str, metric: str) -> float:
    sel = g[(g["label"] == label) & (g["mode"] == mode)]
    if sel.empty or metric not in sel.columns:
        return float("nan")
    return float(pd.to_numeric(sel[metric], errors="coerce").iloc[0])


def _lower_better(metric_name: str) -> bool:
    return any(metric_name.startswith(NAMES[m]) for m in LOWER_IS_BETTER if m in NAMES)


def style_side_by_side(df: pd.DataFrame):
    """Best of the three methods per (row, mode) in bold on green."""
    def best(row: pd.Series) -> list[str]:
        out = []
        low = _lower_better(row.name[1])
        for mode in MODES:
            vals = row[mode]
            target = vals.min() if low else vals.max()
            out += ["font-weight:bold;background-color:#d9f2d9" if pd.notna(v) and v == target else ""
                    for v in vals]
        return out

    return (df.style.apply(best, axis=1).format("{:.4g}", na_rep="–")
            .set_table_styles([{"selector": "td", "props": "padding:2px 8px;text-align:right"},
                               {"selector": "th", "props": "padding:2px 8px"}]))


def orderings(ours: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """For each (mode, metric): the methods best to worst, ours and on each of the paper's datasets,
    and on how many of the paper's datasets our ordering is the same."""
    sbs = side_by_side(ours, reference)
    out: dict[tuple[str, str], dict[str, str]] = {}
    for (source, metric), row in sbs.iterrows():
        key_metric = "FID" if metric.startswith(("FID", "fd_domain")) else metric
        for mode in MODES:
            vals = row[mode].dropna()
            if len(vals) < len(LABELS):
                continue
            ranked = vals.sort_values(ascending=_lower_better(metric)).index
            out.setdefault((mode, key_metric), {})[source] = " > ".join(ranked)
    df = pd.DataFrame.from_dict(out, orient="index")
    df.index = pd.MultiIndex.from_tuples(df.index, names=["mode", "metric"])
    ours_cols = [c for c in df.columns if c.startswith("ours")]
    paper_cols = [c for c in df.columns if c.startswith("paper")]
    if len(ours_cols) == 1 and paper_cols:
        ours_col = df[ours_cols[0]]
        same = df[paper_cols].eq(ours_col, axis=0).sum(axis=1)
        known = df[paper_cols].notna().sum(axis=1)
        df["same ordering as the paper"] = [f"{s}/{k}" if pd.notna(o) else "" for s, k, o in
                                            zip(same, known, ours_col)]
    return df.fillna("")


def ours_table(ours: pd.DataFrame, run_link=None):
    """Our Table 4 for the report; ``run_link`` (run id -> HTML, header.mlflow_run_link) makes each row's
    MLflow run id a link to its page in the tracking UI."""
    df = _order(ours)
    if "mlflow_run_id" in df.columns:
        ids = df["mlflow_run_id"].astype(str)
        df["mlflow_run_id"] = ids.map(run_link) if run_link is not None else ids.str[:8]
    num = [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]
    return df.style.hide(axis="index").format("{:.4g}", subset=num, na_rep="–")


def reference_table(reference: pd.DataFrame):
    df = _order(reference)
    num = [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]
    return df.style.hide(axis="index").format("{:.4g}", subset=num, na_rep="–")


def load_recon_grid(recon_dir: str | Path, dataset: str, method: str, n: int = 10,
                    modes: tuple[str, ...] = MODES) -> dict[str, np.ndarray]:
    """{'original', *modes}: the first ``n`` test images of each, NHWC in [0, 1]. The originals are
    those of the first mode's file (every mode reconstructs the same test images)."""
    out: dict[str, np.ndarray] = {}
    for mode in modes:
        path = Path(recon_dir) / dataset / method / f"{mode}.npz"
        with np.load(path) as z:
            if "original" not in out:
                out["original"] = to_hwc01(z["original"][:n])
            out[mode] = to_hwc01(z["recon"][:n])
    return out


def recon_figure(recon_dir: str | Path, table4: pd.DataFrame, n: int = 10):
    """One panel per method of ``table4``: originals over stochastic and inversion reconstructions."""
    import matplotlib.pyplot as plt

    t4 = _order(table4)
    methods = t4.drop_duplicates(["dataset", "method"])[["dataset", "method", "label"]].values.tolist()
    fig, axes = plt.subplots(len(methods), 1, figsize=(1.0 + 0.85 * n, 2.9 * len(methods)), squeeze=False)
    for ax, (dataset, method, label) in zip(axes[:, 0], methods):
        ax.set_title(f"{label}  ({method}, {dataset})", loc="left", fontsize=11)
        try:
            grid = load_recon_grid(recon_dir, dataset, method, n)
        except FileNotFoundError as err:
            ax.text(0.5, 0.5, f"missing: {err.filename}", ha="center", va="center", color="#a00")
            ax.set_axis_off()
            continue
        names = ["original", *[m for m in MODES if m in grid]]
        ticks = []
        for name in names:
            row = t4[(t4["method"] == method) & (t4["dataset"] == dataset) & (t4["mode"] == name)]
            extra = f"\nPSNR {row['psnr'].iloc[0]:.2f} dB" if not row.empty and "psnr" in row else ""
            ticks.append(name + extra)
        _show_rows(ax, [grid[k] for k in names], ticks)
    fig.tight_layout()
    return fig


def metric_definitions(columns) -> pd.DataFrame:
    from ..evaluate.features import COLUMN_DESCRIPTIONS

    return pd.DataFrame([{"column": c, "definition": COLUMN_DESCRIPTIONS[c]} for c in columns
                         if c in COLUMN_DESCRIPTIONS])
