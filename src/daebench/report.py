"""Helpers of notebooks/report.ipynb, and the `report` command's execution (papermill) and rendering
(nbconvert, one self-contained HTML file: images as data URIs, no scripts fetched from the network)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .claims import BASELINE, LABELS, LOWER_IS_BETTER, NAMES, ONE_PHASE, STUDIES, TWO_PHASE, reference_dir, summary
from .data.store import atomic_path
from .evaluate.reconstruction import montage, to_hwc01
from .tracking import sqlite_path

MODES = ("stochastic", "inversion")
SHORT = {BASELINE: "Preechakul", ONE_PHASE: "1-phase", TWO_PHASE: "2-phase"}
REFERENCE_TABLE4 = "dae_two_phase_table4.csv"
claims_summary = summary  # the notebook's name for the claims' one-line summary


# --------------------------------------------------------------------------
# inputs


def load_reference_table4(ref_dir: str | Path | None = None) -> pd.DataFrame:
    """The paper's Table 4 in our table's layout: its method names are our `label` values."""
    df = pd.read_csv(Path(ref_dir or reference_dir()) / REFERENCE_TABLE4)
    return df.rename(columns={"method": "label"})


def _order(df: pd.DataFrame) -> pd.DataFrame:
    key = {**{m: i for i, m in enumerate(MODES)}, **{lab: i for i, lab in enumerate(LABELS)}}
    return df.sort_values(["dataset", "mode", "label"], key=lambda s: s.map(key) if s.name != "dataset" else s,
                          kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------
# findings


_VERDICT = {"holds": "✔ holds", "fails": "✘ fails", "inconclusive": "≈ inconclusive", "untestable": "– untestable"}


def findings_table(claims: pd.DataFrame):
    """Styled claims of one study: the verdict first and coloured, the measured numbers, the estimator or
    regime where it matters, and the paper's datasets on which the same statement holds (robust: all)."""
    df = claims.copy()
    df["verdict"] = df["verdict"].map(_VERDICT).fillna(df["verdict"])
    df["in the paper"] = [f"{'robust · ' if r is True else ''}{p}" for r, p in
                          zip(df["robust"].astype(object).where(df["robust"].notna(), None), df["paper_datasets"])]
    cols = ["verdict", "table", "statement", "measured"]
    if df["dataset"].nunique() > 1:
        cols.insert(1, "dataset")
    if df["estimator"].fillna("").astype(str).str.len().any():
        cols.append("estimator")
    cols += ["in the paper", "claim_id"]
    colour = {"✔": "background-color:#d9f2d9;color:#145214;font-weight:bold",
              "✘": "background-color:#f8d7da;color:#7a1020;font-weight:bold",
              "≈": "background-color:#fff3cd;color:#6b5200;font-weight:bold",
              "–": "background-color:#eeeeee;color:#555555"}
    return (df[cols].fillna("").style.hide(axis="index")
            .map(lambda v: colour.get(str(v)[:1], ""), subset=["verdict"])
            .set_properties(subset=["statement"], **{"text-align": "left", "max-width": "30em"})
            .set_properties(subset=["measured"], **{"text-align": "left", "font-family": "monospace",
                                                    "font-size": "90%"})
            .set_table_styles([{"selector": "th", "props": "text-align:left"},
                               {"selector": "td", "props": "vertical-align:top;padding:3px 6px"}]))


def claims_by_study(claims: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(the paper's name, its claims) for each study present, in the project's study order."""
    return [(STUDIES[s].PAPER, claims[claims["study"] == s]) for s in STUDIES if (claims["study"] == s).any()]


# --------------------------------------------------------------------------
# Table 4, ours beside the paper's


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


def ours_table(ours: pd.DataFrame):
    df = _order(ours)
    if "mlflow_run_id" in df.columns:
        df["mlflow_run_id"] = df["mlflow_run_id"].astype(str).str[:8]
    num = [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]
    return df.style.hide(axis="index").format("{:.4g}", subset=num, na_rep="–")


def reference_table(reference: pd.DataFrame):
    df = _order(reference)
    num = [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]
    return df.style.hide(axis="index").format("{:.4g}", subset=num, na_rep="–")


# --------------------------------------------------------------------------
# reconstructions


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


def _show_rows(ax, rows: list[np.ndarray], labels: list[str]) -> None:
    """Rows of NHWC [0, 1] images as one montage, each row labelled on the y axis."""
    ax.imshow(montage(rows), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    h = rows[0].shape[1] + 1
    ax.set_yticks([1 + h * i + h / 2 for i in range(len(rows))], labels, fontsize=9)
    ax.set_xticks([])
    for side in ax.spines.values():
        side.set_visible(False)


def recon_rows_figure(original: np.ndarray, recons: list[np.ndarray], labels: list[str], n: int = 12):
    """Originals over one row per reconstruction (NCHW in [-1, 1], same test images), labelled."""
    import matplotlib.pyplot as plt

    rows = [to_hwc01(original[:n])] + [to_hwc01(r[:n]) for r in recons]
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.65 * len(rows) + 0.4))
    _show_rows(ax, rows, ["original", *labels])
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------
# training curves (MLflow)


def _missing_sqlite(uri: str) -> str | None:
    """The file of a sqlite:/// URI that does not exist (MLflow would create an empty store there)."""
    path = sqlite_path(uri)
    return str(path) if path is not None and not path.exists() else None


def training_curves(uri: str, experiment: str, dataset: str | None = None,
                    metric: str = "loss/mse") -> pd.DataFrame:
    """``metric`` per step of every training run (tag rule=train): columns run_id, run_name, method,
    phase, status, step, value. Of runs with the same name (reruns) the latest is kept. Empty, with
    the reason in ``df.attrs['note']``, when the store or experiment does not exist."""
    cols = ["run_id", "run_name", "method", "phase", "status", "step", "value"]
    empty = pd.DataFrame(columns=cols)
    if (path := _missing_sqlite(uri)) is not None:
        empty.attrs["note"] = f"no MLflow store at {path} (tracking URI {uri})"
        return empty
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        empty.attrs["note"] = f"no experiment {experiment!r} in {uri}"
        return empty
    query = "tags.rule = 'train'" + (f" and tags.dataset = '{dataset}'" if dataset else "")
    runs = client.search_runs([exp.experiment_id], query, max_results=5000, order_by=["attributes.start_time DESC"])
    frames, seen = [], set()
    for run in runs:
        name = run.info.run_name or run.info.run_id
        if name in seen:
            continue
        seen.add(name)
        hist = client.get_metric_history(run.info.run_id, metric)
        if not hist:
            continue
        method, _, phase = name.partition("/")
        frames.append(pd.DataFrame({"run_id": run.info.run_id, "run_name": name, "method": method, "phase": phase,
                                    "status": run.info.status, "step": [m.step for m in hist],
                                    "value": [m.value for m in hist]}))
    if not frames:
        empty.attrs["note"] = f"no training runs with {metric!r} in experiment {experiment!r} of {uri}"
        return empty
    return pd.concat(frames, ignore_index=True).sort_values(["run_name", "step"]).reset_index(drop=True)


def curves_figure(curves: pd.DataFrame, labels: dict[str, str] | None = None, metric: str = "loss/mse"):
    """One line per training run (method/phase), log-y; phases of one method share a colour."""
    import matplotlib.pyplot as plt

    labels = labels or {}
    fig, ax = plt.subplots(figsize=(9, 4.5))
    methods = list(dict.fromkeys(curves["method"]))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    for (method, phase), g in curves.groupby(["method", "phase"], sort=True):
        phases = sorted(curves.loc[curves["method"] == method, "phase"].unique())
        ax.plot(g["step"], g["value"], styles[phases.index(phase) % len(styles)],
                color=colours[methods.index(method) % len(colours)], lw=1.4,
                marker="o" if len(g) <= 30 else None, ms=3,  # short runs (a single point) stay visible
                label=f"{labels.get(method, method)} · {phase}" + ("" if g["status"].iloc[0] == "FINISHED"
                                                                   else f" ({g['status'].iloc[0]})"))
    ax.set_yscale("log")
    ax.set_xlabel("training step (phase 2 continues phase 1's count)")
    ax.set_ylabel(metric)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------
# protocol


def metric_definitions(columns) -> pd.DataFrame:
    from .evaluate.features import COLUMN_DESCRIPTIONS

    return pd.DataFrame([{"column": c, "definition": COLUMN_DESCRIPTIONS[c]} for c in columns
                         if c in COLUMN_DESCRIPTIONS])


# --------------------------------------------------------------------------
# execution and rendering


# The lab template without the scripts it would fetch from CDNs (require.js, MathJax, mermaid):
# the report is one file that renders offline.
_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def notebook_to_html(notebook: str | Path, title: str = "daebench report") -> str:
    """Self-contained HTML of an executed notebook: code hidden, images as data URIs."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    exporter = HTMLExporter(template_name="lab", template_file="daebench_report.html.j2",
                            extra_loaders=[DictLoader({"daebench_report.html.j2": _TEMPLATE})],
                            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return body


def render_report(notebook: str | Path, executed: str | Path, out_html: str | Path, parameters: dict,
                  cwd: str | Path = ".", kernel_name: str = "python3") -> Path:
    """Execute ``notebook`` with papermill (the executed copy, with any traceback, at ``executed``),
    then write it as self-contained HTML to ``out_html`` atomically. Papermill's
    PapermillExecutionError propagates when a cell fails."""
    import papermill as pm

    executed, out_html = Path(executed), Path(out_html)
    executed.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(notebook), str(executed), parameters=parameters, kernel_name=kernel_name,
                        progress_bar=False, cwd=str(cwd))
    html = notebook_to_html(executed)
    with atomic_path(out_html) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return out_html


def latent_scatter_figure(inputs: list[Path], labels: list[str], out: Path | None = None, title: str = "",
                          names: list[str] | None = None, cols: int = 5):
    """One panel per run: its test codes (``z_test`` in the run's npz) coloured by class / population."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(inputs) != len(labels):
        raise ValueError(f"{len(inputs)} latent files for {len(labels)} labels")
    cols = min(cols, len(inputs))
    rows = -(-len(inputs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols, 2.8 * rows), squeeze=False)
    for ax, path, label in zip(axes.flat, inputs, labels):
        with np.load(path) as f:
            z, y = f["z_test"], f["y_test"]
            names = names or (list(f["names"]) if "names" in f else None)
        cmap = plt.get_cmap("tab10" if max(len(names or []), int(y.max()) + 1) <= 10 else "tab20")
        for c in np.unique(y):
            ax.scatter(z[y == c, 0], z[y == c, 1], s=3, color=cmap(int(c) % cmap.N),
                       label=names[int(c)] if names else str(int(c)))
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.flat[len(inputs):]:
        ax.axis("off")
    handles, leg = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, leg, loc="center right", markerscale=4, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
        plt.close(fig)
    return fig
