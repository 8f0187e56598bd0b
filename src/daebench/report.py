"""Helpers of notebooks/report.ipynb, and the `report` command's execution (papermill) and rendering
(nbconvert, one self-contained HTML file: images as data URIs, no scripts fetched from the network)."""
from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .claims import (
    BASELINE,
    LABELS,
    LOWER_IS_BETTER,
    NAMES,
    ONE_PHASE,
    STUDIES,
    TWO_PHASE,
    counts,
    reference_dir,
    summary,
)
from .data.store import atomic_path
from .evaluate.reconstruction import montage, to_hwc01
from .methods import get_family
from .tracking import sqlite_path

MODES = get_family("dae").modes  # Table 4's rows: the DAE family's decoding modes
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


def _split_name(name: str) -> tuple[str, str]:
    method, _, phase = name.partition("/")
    return method, phase


def training_curves(uri: str, experiment: str, dataset: str | None = None, metric: str | Sequence[str] = "loss/mse",
                    rule: str = "train", methods: Collection[str] | None = None,
                    split: Callable[[str], tuple[str, str]] = _split_name,
                    keep: Callable[[str], bool] | None = None) -> pd.DataFrame:
    """Per step, the first of ``metric`` (one name or candidates in order) that each training run (tag
    ``rule``) logged: columns run_id, run_name, method, phase, metric, status, step, value. Run names are
    split into (method, phase) by ``split``; ``methods`` and ``keep`` (on the run name) select runs. Of runs
    with the same name (reruns) the latest is kept. Empty, with the reason in ``df.attrs['note']``, when the
    store or experiment does not exist."""
    cols = ["run_id", "run_name", "method", "phase", "metric", "status", "step", "value"]
    candidates = [metric] if isinstance(metric, str) else list(metric)
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
    query = f"tags.rule = '{rule}'" + (f" and tags.dataset = '{dataset}'" if dataset else "")
    runs = client.search_runs([exp.experiment_id], query, max_results=5000, order_by=["attributes.start_time DESC"])
    frames, seen = [], set()
    for run in runs:
        name = run.info.run_name or run.info.run_id
        method, phase = split(name)
        if name in seen or (methods is not None and method not in methods) or (keep is not None and not keep(name)):
            continue
        seen.add(name)
        key = next((m for m in candidates if m in run.data.metrics), None)
        hist = client.get_metric_history(run.info.run_id, key) if key else []
        if not hist:
            continue
        frames.append(pd.DataFrame({"run_id": run.info.run_id, "run_name": name, "method": method, "phase": phase,
                                    "metric": key, "status": run.info.status, "step": [m.step for m in hist],
                                    "value": [m.value for m in hist]}))
    if not frames:
        empty.attrs["note"] = f"no {rule} runs with {' or '.join(map(repr, candidates))} in experiment " \
                              f"{experiment!r} of {uri}"
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
                label=f"{labels.get(method, method)} · {phase}"
                + (f" · {g['metric'].iloc[0]}" if g["metric"].iloc[0] != metric else "")
                + ("" if g["status"].iloc[0] == "FINISHED" else f" ({g['status'].iloc[0]})"))
    ax.set_yscale("symlog" if (curves["value"] <= 0).any() else "log")
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
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)
    return fig


# --------------------------------------------------------------------------
# one section per study: what it shows, declared once


def _ddvi_split(name: str) -> tuple[str, str]:
    """DDVI run names are <setting>/<prior>/<method>/seed<k>: the method, and where it ran."""
    setting, prior, method, _ = (name.split("/") + ["", "", "", ""])[:4]
    return method, f"{setting}/{prior}"


# Per study: its tables (ours, file under results/; the paper's, file under reference/ and an optional
# filter on its `table` column), the figures it draws (globs under results/), and its training curves
# (MLflow rule, candidate metrics in order, and how run names are read).
SECTIONS: dict[str, dict] = {
    "two_phase_ablations": {
        "title": "Two-phase DAE training: the ablations", "anchor": "two_phase_ablations", "target": "two_phase_all",
        "intro": "Why two phases work (§4.2-4.4, §5.2, supp. §11): the prediction type on SC-4 (Table 1), the "
                 "schedule against the prediction type (Table 2), 1-phase against phase 1 at t = 1 followed by "
                 "phase 2 on SC-2 to SC-16 (Table 3; one phase-1 run shared by the four), the perceptual path "
                 "length of slerp interpolations (Table 5) and linear-probe AUROC per class and attribute with "
                 "ranks (Tables 10 / 11). Tables 1-3 are stochastic reconstructions scored as Table 4's.",
        "tables": [("Table 1: prediction type on SC-4", "two_phase/table1.csv", "dae_two_phase_tables_1_2_3.csv", 1),
                   ("Table 2: schedule x prediction", "two_phase/table2.csv", "dae_two_phase_tables_1_2_3.csv", 2),
                   ("Table 3: 1-phase against 2-phase", "two_phase/table3.csv", "dae_two_phase_tables_1_2_3.csv", 3),
                   ("Table 5: perceptual path length (the paper: LPIPS VGG; here its column says which distance)",
                    "two_phase/table5.csv", "dae_two_phase_table5_ppl.csv", None),
                   ("Tables 10 / 11: linear-probe AUROC (rank 1 = best)", "two_phase/table10.csv",
                    "dae_two_phase_tables_10_11_auroc.csv", None)],
        "figures": [("Slerp interpolations of (z, x_T) between test-image pairs (Table 5; one row per pair)",
                     "two_phase/ppl/*/*.png")],
        "curves": {"rule": "train", "metric": ["loss/mse"],
                   "methods": ("dae_eps_sc4", "dae_x_sc4", "dae_x_linear", "dae_x_sc1", "dae_x_sc2", "dae_x_sc8",
                               "dae_v_linear", "dae_v_sc1", "dae_v_sc2", "dae_v_sc8", "dae_2phase_sc2",
                               "dae_2phase_sc8", "dae_2phase_sc16")},
    },
    "dbae": {
        "title": "The DBAE study", "anchor": "dbae",
        "intro": "Diffusion bridge autoencoders against the DiffAE-style DAE (Preechakul et al.): reconstruction "
                 "(Table 2) and its NFE sweep (Table 9), generation through the latent prior (Table 4) and its NFE "
                 "ladder (Table 11), "
                 "downstream probes (Table 1), disentanglement (Table 3) and inference cost (Table 5).",
        "tables": [("Table 2: reconstruction", "dbae/table2.csv", "dbae_table2_reconstruction.csv", None),
                   ("Table 9: reconstruction against NFE", "dbae/table9.csv", "dbae_tables_9_10_nfe.csv", None),
                   ("Table 4: generation (prior samples and +AE)", "dbae/table4.csv",
                    "dbae_table4_generation_ffhq.csv", None),
                   ("Table 11: generation at a ladder of NFE (the paper: 1000 / 500 / 250)", "dbae/table11.csv",
                    "dbae_table4_generation_ffhq.csv", None),
                   ("Table 1: downstream attribute probes", "dbae/table1.csv", "dbae_table1_downstream.csv", None),
                   ("Table 3: disentanglement", "dbae/table3.csv", "dbae_table3_disentanglement.csv", None),
                   ("Table 5: inference cost", "dbae/table5.csv", None, None)],
        "figures": [("Reconstructions at the largest NFE (top row: test images)", "dbae/recon/*/*/*_nfe{nfe}.png"),
                    ("Generated samples (prior) and decoded test codes (+AE)", "dbae/gen/*/*/*.png")],
        "curves": {"rule": "train", "metric": ["loss/bridge", "loss/mse"],
                   "methods": ("dae_baseline", "dbae", "dbae_d", "dbae_tc")},
    },
    "scorevae": {
        "title": "The ScoreVAE study", "anchor": "scorevae",
        "intro": "A frozen unconditional score model plus a time-dependent encoder (ScoreVAE; ScoreVAE+ adds a "
                 "corrector) against a β-VAE and diffusion decoders trained from scratch (DiffDecoder), "
                 "reconstructing with the conditional reverse SDE and the probability-flow ODE (Tables 1-2).",
        "tables": [("Tables 1-2: reconstruction", "scorevae/table1.csv", "scorevae_tables_1_2.csv", None)],
        "figures": [("Reconstructions (top row: test images)", "scorevae/recon_grid.png")],
        "curves": {"rule": "train", "metric": ["loss/dsm", "loss/recon"],
                   "methods": ("score_prior", "scorevae", "vae", "diffdec", "diffdec_b0")},
    },
    "ddvi": {
        "title": "The DDVI study", "anchor": "ddvi",
        "intro": "Diffusion posteriors (DDVI, wake-sleep) against AEVB, AEVB-IAF, AAEB and H-AEVB on 2-D "
                 "structured priors: unsupervised (Table 1), without the sleep term (Table 8), semi-supervised "
                 "(Table 2), clustering of genotypes (Table 3) and its NMI against training time (Table 5). Each "
                 "number is the mean over the seeds with its 95 % Student-t half-width (`*_ci95`). The latent plots "
                 "are the first seed's test codes.",
        "tables": [("Table 1: unsupervised (ELBO per pixel, MMD, latent NLL)", "ddvi/table1.csv", "ddvi_tables.csv", 1),
                   ("Table 8: latent NLL without the sleep term", "ddvi/table8.csv", "ddvi_tables.csv", 8),
                   ("Table 2: semi-supervised (ELBO, KNN-20 accuracy, latent NLL)", "ddvi/table2.csv",
                    "ddvi_tables.csv", 2),
                   ("Table 3: genotype clustering (purity, completeness, NMI)", "ddvi/table3.csv",
                    "ddvi_table3_genotype_clustering.csv", None),
                   ("Table 5: clustering NMI against training wall time (the paper: at 10-60 minutes)",
                    "ddvi/table5.csv", "ddvi_table5_nmi_time.csv", None)],
        "figures": [("Latent codes: unsupervised", "ddvi/latents_unsup.png"),
                    ("Latent codes: semi-supervised", "ddvi/latents_semi.png"),
                    ("Latent codes: genotype clustering", "ddvi/latents_cluster.png"),
                    ("Table 5 as curves: NMI against the training job's wall time", "ddvi/table5.png")],
        "curves": {"rule": "ddvi_train", "metric": ["loss/recon", "loss/recon_mse"], "split": _ddvi_split,
                   "keep": lambda name: name.endswith("/seed0")},
    },
}
RUN_ID_COLUMNS = ("mlflow_run_id", "mlflow_run_ids")


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


def contents(studies: Sequence[str]) -> str:
    """The report's table of contents (Markdown links to the sections' anchors)."""
    items = [("summary", "Summary"), ("findings", "Findings, study by study"),
             ("table4", "Two-phase DAE training: Table 4")]
    items += [(SECTIONS[s]["anchor"], SECTIONS[s]["title"]) for s in studies if s in SECTIONS]
    items += [("emergence", "Emergence: the claims against the training budget"), ("protocol", "Protocol")]
    return "\n".join(f"{i}. [{title}](#{anchor})" for i, (anchor, title) in enumerate(items, 1))


def study_curves(study: str, uri: str, experiment: str, dataset: str | None = None) -> pd.DataFrame:
    c = SECTIONS[study]["curves"]
    return training_curves(uri, experiment, dataset, metric=c["metric"], rule=c["rule"], methods=c.get("methods"),
                           split=c.get("split", _split_name), keep=c.get("keep"))


def study_of_benchmark(path: Path, methods: dict[str, str]) -> str:
    """Which study a job's benchmark file (logs/benchmarks/<rule dir>/...) belongs to: DBAE, ScoreVAE and
    DDVI jobs live under their study's directory; training jobs by their method (``methods``: method ->
    study); what the studies share (data, the metric classifier) is `shared`."""
    parts = path.parts
    if parts[0] in ("dbae", "scorevae", "ddvi"):
        return parts[0]
    if parts[0] == "train_prior":
        return "dbae"
    if parts[0] == "train" and len(parts) > 2:
        return methods.get(parts[2], "shared")
    if parts[0] in ("reconstruct", "metrics") and len(parts) > 2:
        return methods.get(parts[2], "two_phase")
    if parts[0] == "two_phase" or (parts[0] == "tables" and parts[-1].startswith("two_phase_")):
        return "two_phase_ablations"
    if parts[:2] == ("tables", "table4.tsv"):
        return "two_phase"
    if parts[0] == "tables" and parts[-1].startswith("dbae_"):
        return "dbae"
    if parts[0] == "report" and parts[-1].startswith("claims_"):
        return parts[-1][len("claims_"):-len(".tsv")]
    return "shared"


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
        out.append({"study": STUDIES[s].PAPER if s in STUDIES else "shared (data, metric classifier, report)",
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


def method_studies(config: dict) -> dict[str, str]:
    """method -> study, for training jobs, from the config's own lists (first study that lists a method)."""
    out: dict[str, str] = {}
    for m in config.get("table4", {}).get("methods", []):
        out.setdefault(m, "two_phase")
    tp = config.get("two_phase", {})
    for m in [*tp.get("table1", []), *tp.get("table2", []), *tp.get("table3", [])]:
        out.setdefault(m, "two_phase_ablations")
    db = config.get("dbae", {})
    for m in [*db.get("methods", []), *db.get("tc_methods", [])]:
        out.setdefault(m, "dbae")
    for row in config.get("scorevae", {}).get("rows", []):
        out.setdefault(row["method"], "scorevae")
        prior = config.get("methods", {}).get(row["method"], {}).get("prior")
        if prior:
            out.setdefault(prior, "scorevae")
    return out


def nfe_curve_figure(table9: pd.DataFrame):
    """DBAE Table 9 as curves: each metric against the NFE, one line per row (method and x_T)."""
    import matplotlib.pyplot as plt

    nfe_cols = sorted((c for c in table9.columns if c.startswith("nfe") and c[3:].isdigit()), key=lambda c: int(c[3:]))
    metrics = list(dict.fromkeys(table9["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.8 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for _, row in table9[table9["metric"] == metric].iterrows():
            ax.plot([int(c[3:]) for c in nfe_cols], [row[c] for c in nfe_cols], marker="o", ms=4, label=row["label"])
        ax.set_xscale("log")
        ax.set_xticks([int(c[3:]) for c in nfe_cols], [c[3:] for c in nfe_cols])
        ax.set_xlabel("NFE")
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def study_plots(study: str, results: str | Path = "results") -> list[tuple[str, object]]:
    """(caption, matplotlib figure) of the curves a study's tables hold: DBAE's reconstruction against NFE."""
    path = Path(results) / "dbae/table9.csv"
    if study != "dbae" or not path.exists():
        return []
    return [("Table 9 as curves: reconstruction against the number of function evaluations",
             nfe_curve_figure(pd.read_csv(path)))]


def budget_figure(table5: pd.DataFrame, out: Path | None = None):
    """DDVI Table 5 as curves: clustering NMI against the training job's wall time, one line per row (method,
    and T for DDVI), a marker per budget."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for label, g in table5.groupby("label", sort=False):
        g = g.sort_values("train_minutes")
        ax.errorbar(g["train_minutes"], g["nmi"], yerr=g["nmi_ci95"].fillna(0), marker="o", ms=4, capsize=2,
                    label=label)
    ax.set_xlabel("training wall time (min)")
    ax.set_ylabel("NMI (genotype clustering)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    if out is not None:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)
    return fig
