"""Result tables as CSV. Table 4 of the two-phase DAE paper: one row per (dataset, method, mode);
DBAE's Tables 1-5 and 9; ScoreVAE's Table 1."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .data.store import atomic_path


def schedule_label(name: str, scale: float | None = None) -> str:
    """Short label of a schedule in tables, e.g. 'sc4' for SC-4 (matches the reference CSVs). Here rather than
    in diffusion/: a table job does not import torch."""
    if name == "shifted_cosine":
        s = float(scale)
        return f"sc{int(s)}" if s.is_integer() else f"sc{s:g}"
    return name


# Optional metric columns, in display order; a column appears only when some row has it.
METRIC_COLUMNS = ["psnr", "ssim", "mse", "lpips", "fid_tf", "fid_cf", "fd_domain", "featdist_domain"]


def method_schedule(method: dict) -> str:
    for phase in reversed(method["phases"]):
        if phase.get("schedule"):
            s = phase["schedule"]
            return schedule_label(s["name"], s.get("scale"))
    return ""


def write_table4(cfg: dict, inputs: list[Path], out: Path) -> pd.DataFrame:
    rows = []
    for path in inputs:
        r = json.loads(path.read_text())
        m = cfg["methods"][r["method"]]
        row = {"dataset": cfg["dataset"], "method": r["method"], "label": m["label"],
               "prediction": m["prediction"], "schedule": method_schedule(m), "mode": r["mode"]}
        row.update({k: r["metrics"].get(k) for k in METRIC_COLUMNS if k in r["metrics"]})
        row.update(n_images=r["n_images"], ddim_steps=r.get("ddim_steps", cfg["ddim_steps"]),
                   mlflow_run_id=r["mlflow_run_id"])
        rows.append(row)
    df = pd.DataFrame(rows)
    metric_cols = [c for c in METRIC_COLUMNS if c in df.columns and df[c].notna().any()]
    lead = ["dataset", "method", "label", "prediction", "schedule", "mode"]
    df = df[lead + metric_cols + ["n_images", "ddim_steps", "mlflow_run_id"]]
    order = {m: i for i, m in enumerate(cfg["methods_order"])}
    df = df.sort_values(by=["mode", "method"], key=lambda s: s.map(order) if s.name == "method" else
                        s.map({"stochastic": 0, "inversion": 1})).reset_index(drop=True)
    _write_csv(df, out)
    return df


# --- the two-phase paper's ablations (results/two_phase/: Tables 1-3, 5, 10) ----------------------------


def phase_columns(method: dict) -> dict:
    """Table 3's columns: phase 1 (``t = 1``, or the 1-phase run's schedule) and phase 2 (N/A for one phase)."""
    first = method["phases"][0]
    p1 = "t = 1" if first.get("t") == "one" else method_schedule({"phases": [first]})
    p2 = method_schedule({"phases": method["phases"][1:]}) if len(method["phases"]) > 1 else "N/A"
    return {"phase1": p1, "phase2": p2}


def _recon_ablation(table: str, cfg: dict, rows: list[dict]) -> pd.DataFrame:
    out = []
    for r in rows:
        m = cfg["methods"][r["method"]]
        row = {"dataset": cfg["dataset"], "method": r["method"], "label": m["label"], "prediction": m["prediction"],
               "schedule": method_schedule(m) or "N/A", **(phase_columns(m) if table == "table3" else {})}
        row.update({k: r["metrics"].get(k) for k in METRIC_COLUMNS if k in r["metrics"]})
        row.update(n_images=r["n_images"], ddim_steps=r["ddim_steps"], mlflow_run_id=r["mlflow_run_id"])
        out.append(row)
    df = pd.DataFrame(out)
    lead = [c for c in ("dataset", "method", "label", "prediction", "schedule", "phase1", "phase2") if c in df.columns]
    return df[lead + _present(df, METRIC_COLUMNS) + ["n_images", "ddim_steps", "mlflow_run_id"]]


def _ppl_table(table: str, cfg: dict, rows: list[dict]) -> pd.DataFrame:
    # one PPL column per distance, so a domain-feature PPL is never read as the paper's LPIPS one
    out = [{"dataset": cfg["dataset"], "method": r["method"], "label": cfg["methods"][r["method"]]["label"],
            f"ppl_{r['distance']}": r["ppl"], f"ppl_{r['distance']}_median": r["ppl_median"], "pairs": r["pairs"],
            "steps": r["steps"], "ddim_steps": r["nfe"], "mlflow_run_id": r["mlflow_run_id"]} for r in rows]
    df = pd.DataFrame(out)
    ppl = [c for c in df.columns if c.startswith("ppl_")]
    return df[["dataset", "method", "label", *ppl, "pairs", "steps", "ddim_steps", "mlflow_run_id"]]


def _probe_table(table: str, cfg: dict, rows: list[dict]) -> pd.DataFrame:
    """Tables 10 / 11's layout: one row per class or binary attribute, one AUROC and one rank (1 = best)
    column per method, then the macro average of each kind with its rank."""
    methods = [r["method"] for r in rows]
    per = {r["method"]: {("class", k): v for k, v in r["per_class_auroc"].items()}
           | {("attribute", k): v for k, v in r["per_attribute"]["auroc"].items()} for r in rows}
    keys = list(per[methods[0]])
    df = pd.DataFrame([{"dataset": cfg["dataset"], "kind": kind, "name": name,
                        **{m: per[m][(kind, name)] for m in methods}} for kind, name in keys])
    avg = [{"dataset": cfg["dataset"], "kind": kind, "name": "Average", **df[df["kind"] == kind][methods].mean().to_dict()}
           for kind in dict.fromkeys(df["kind"])]
    df = pd.concat([df, pd.DataFrame(avg)], ignore_index=True)
    ranks = df[methods].rank(axis=1, ascending=False, method="min").astype(int)
    for m in methods:
        df[f"{m}_rank"] = ranks[m]
    return df[["dataset", "kind", "name", *[c for m in methods for c in (m, f"{m}_rank")]]]


TWO_PHASE_TABLES = {"table1": _recon_ablation, "table2": _recon_ablation, "table3": _recon_ablation,
                    "table5": _ppl_table, "table10": _probe_table}


def write_two_phase_table(name: str, cfg: dict, inputs: list[Path], out: Path) -> pd.DataFrame:
    """One of the two-phase paper's ablation tables; ``inputs`` in the configured row (column) order."""
    try:
        build = TWO_PHASE_TABLES[name]
    except KeyError:
        raise ValueError(f"unknown two-phase table {name!r}; known: {', '.join(TWO_PHASE_TABLES)}") from None
    rows = _read(inputs)
    if [r["method"] for r in rows] != cfg["methods_order"]:
        raise ValueError(f"two-phase {name}: inputs are of {[r['method'] for r in rows]}, "
                         f"expected {cfg['methods_order']}")
    df = build(name, cfg, rows).reset_index(drop=True)
    _write_csv(df, out)
    return df


def _write_csv(df: pd.DataFrame, out: Path) -> None:
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")


# --- DBAE's tables (dbae_diffusion_bridge_autoencoders, Tables 1-5 and 9) -----------------------------

RECON_COLUMNS = ["ssim", "lpips", "mse", "psnr", "fd_domain", "featdist_domain"]
GEN_COLUMNS = ["precision_domain", "recall_domain", "is_domain", "fd_domain", "fid_tf"]
X_T = {"stochastic": "random x_T", "inversion": "inferred x_T"}


def _read(paths: list[Path]) -> list[dict]:
    return [json.loads(p.read_text()) for p in paths]


def _present(df: pd.DataFrame, cols: list[str]) -> list[str]:
    return [c for c in cols if c in df.columns and df[c].notna().any()]


def _recon_row(r: dict, cfg: dict) -> dict:
    m = cfg["methods"][r["method"]]
    mode = r["mode"]
    tractable = mode != "inversion"
    # Table 2's "latent dim": z alone when x_T is not needed (random) or follows from z (DBAE); z plus
    # the image-sized x_T when it must be inferred.
    latent_dim = cfg["z_dim"] + (int(np.prod(r["image_shape"])) if not tractable else 0)
    label = f"{m['label']} ({X_T[mode]})" if mode in X_T else m["label"]
    row = {"dataset": cfg["dataset"], "method": r["method"], "label": label, "x_T": X_T.get(mode, "Dec(z)"),
           "tractable": "yes" if tractable else "no", "latent_dim": latent_dim, "nfe": r["ddim_steps"],
           "nfe_decode": r["cost"].get("nfe_decode"), "nfe_endpoint": r["cost"].get("nfe_endpoint")}
    row.update({k: r["metrics"][k] for k in RECON_COLUMNS if k in r["metrics"]})
    row.update(n_images=r["n_images"], mlflow_run_id=r["mlflow_run_id"])
    return row


def dbae_table2(cfg: dict, rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame([_recon_row(r, cfg) for r in rows])
    lead = ["dataset", "method", "label", "x_T", "tractable", "latent_dim", "nfe", "nfe_decode", "nfe_endpoint"]
    return df[lead + _present(df, RECON_COLUMNS) + ["n_images", "mlflow_run_id"]]


def dbae_table9(cfg: dict, rows: list[dict]) -> pd.DataFrame:
    """The paper's layout: one row per (metric, method), one column per NFE."""
    df = pd.DataFrame([_recon_row(r, cfg) for r in rows])
    out = []
    for metric in ("ssim", "mse"):
        for (method, label), g in df.groupby(["method", "label"], sort=False):
            row = {"metric": metric, "dataset": cfg["dataset"], "method": method, "label": label,
                   "tractable": g["tractable"].iloc[0]}
            row.update({f"nfe{int(n)}": v for n, v in zip(g["nfe"], g[metric])})
            out.append(row)
    return pd.DataFrame(out)


def dbae_table4(cfg: dict, rows: list[dict]) -> pd.DataFrame:
    out = []
    for r in rows:
        label = cfg["methods"][r["method"]]["label"] + ("+AE" if r["source"] == "ae" else "")
        row = {"dataset": cfg["dataset"], "method": r["method"], "label": label, "source": r["source"],
               "nfe": r["nfe"]}
        row.update({k: r["metrics"][k] for k in GEN_COLUMNS if k in r["metrics"]})
        row.update(n_samples=r["n_samples"], n_reference=r["n_reference"], mlflow_run_id=r["mlflow_run_id"])
        out.append(row)
    df = pd.DataFrame(out)
    lead = ["dataset", "method", "label", "source", "nfe"]
    return df[lead + _present(df, GEN_COLUMNS) + ["n_samples", "n_reference", "mlflow_run_id"]]


def dbae_table1(cfg: dict, rows: list[dict]) -> pd.DataFrame:
    cols = ["ap", "class_accuracy", "class_auroc", "pearson_r", "mse"]
    return pd.DataFrame([{"dataset": cfg["dataset"], "method": r["method"],
                          "label": cfg["methods"][r["method"]]["label"], "z_dim": r["z_dim"],
                          **{c: r[c] for c in cols}, "n_train": r["n_train"], "n_test": r["n_test"],
                          "mlflow_run_id": r["mlflow_run_id"]} for r in rows])


def dbae_table3(cfg: dict, rows: list[dict]) -> pd.DataFrame:
    """TAD / ATTRS of z and the FD of prior samples (the paper's FID column), one row per method."""
    by: dict[str, dict] = {}
    for r in rows:
        row = by.setdefault(r["method"], {"dataset": cfg["dataset"], "method": r["method"],
                                          "label": cfg["methods"][r["method"]]["label"],
                                          "regularized": "yes" if cfg["methods"][r["method"]]["tc_weight"] > 0 else "no",
                                          "tc_weight": cfg["methods"][r["method"]]["tc_weight"]})
        if "tad" in r:
            row.update(tad=r["tad"], attrs=r["attrs"], tad_std=r["tad_std"], n_samples=r["n_samples"])
        else:
            row.update({k: r["metrics"][k] for k in ("fd_domain", "fid_tf") if k in r["metrics"]})
    return pd.DataFrame(list(by.values()))


def dbae_table5(cfg: dict, rows: list[dict]) -> pd.DataFrame:
    cols = ["nfe_encoder", "nfe_endpoint", "endpoint_by", "ms_encoder", "ms_endpoint", "ms_total", "n_images",
            "device", "threads"]
    return pd.DataFrame([{"dataset": cfg["dataset"], "method": r["method"],
                          "label": cfg["methods"][r["method"]]["label"], **{c: r[c] for c in cols}} for r in rows])


# Row order: the paper's (Table 4: prior rows, then +AE; Table 9: SSIM block, then MSE), methods in
# the configured order within each block.
BLOCKS = {"table4": ("source", {"prior": 0, "ae": 1}), "table9": ("metric", {"ssim": 0, "mse": 1}),
          "table11": ("source", {"prior": 0, "ae": 1})}

# Table 11 is Table 4's layout at several NFE (one row per method, source and NFE, the NFE in the configured order)
DBAE_TABLES = {"table1": dbae_table1, "table2": dbae_table2, "table3": dbae_table3, "table4": dbae_table4,
               "table5": dbae_table5, "table9": dbae_table9, "table11": dbae_table4}


def write_dbae_table(name: str, cfg: dict, inputs: list[Path], out: Path) -> pd.DataFrame:
    try:
        build = DBAE_TABLES[name]
    except KeyError:
        raise ValueError(f"unknown DBAE table {name!r}; known: {', '.join(sorted(DBAE_TABLES))}") from None
    df = build(cfg, _read(inputs))
    order = {m: i for i, m in enumerate(cfg["order"])}
    df = df.sort_values("method", key=lambda s: s.map(order), kind="stable")
    if name in BLOCKS:
        col, rank = BLOCKS[name]
        df = df.sort_values(col, key=lambda s: s.map(rank), kind="stable")
    df = df.reset_index(drop=True)
    _write_csv(df, out)
    return df


# --- ScoreVAE's Table 1 (scorevae_variational_diffusion_autoencoder, Tables 1-2) --------------------------

SCOREVAE_COLUMNS = ["kl", "l2", "lpips", "featdist_domain", "fd_domain", "psnr", "ssim", "mse", "eps_mse"]


def write_scorevae_table1(cfg: dict, inputs: list[Path], out: Path) -> pd.DataFrame:
    """One row per (method x beta, decoding mode), then one per prior (``cfg['priors']``): its samples' fd_domain
    against the same test images and its held-out eps_mse. ``inputs``: the metrics files in ``cfg['rows']``
    order, then the priors' files."""
    priors = cfg.get("priors", [])
    if len(inputs) != len(cfg["rows"]) + len(priors):
        raise ValueError(f"ScoreVAE table: {len(inputs)} metrics files for {len(cfg['rows'])} rows and "
                         f"{len(priors)} priors")
    rows = []
    for spec, r in zip(cfg["rows"], _read(inputs[:len(cfg["rows"])])):
        if (r["method"], r["mode"]) != (spec["method"], spec["mode"]):
            raise ValueError(f"ScoreVAE table: metrics of {r['method']}/{r['mode']} where "
                             f"{spec['method']}/{spec['mode']} was expected")
        row = {"dataset": cfg["dataset"], "label": spec["label"], "beta": spec["beta"], "method": spec["method"],
               "phase": spec["phase"], "family": spec["family"], "mode": spec["mode"]}
        row.update({k: r["metrics"][k] for k in SCOREVAE_COLUMNS if k in r["metrics"]})
        row.update(nfe=r["nfe"], n_params=r.get("n_params"), n_images=r["n_images"], mlflow_run_id=r["mlflow_run_id"])
        rows.append(row)
    for spec, r in zip(priors, _read(inputs[len(cfg["rows"]):])):
        if r["method"] != spec["method"]:
            raise ValueError(f"ScoreVAE table: samples of prior {r['method']} where {spec['method']} was expected")
        rows.append({"dataset": cfg["dataset"], "label": f"{spec['label']} (samples)", "beta": None,
                     "method": spec["method"], "phase": None, "family": "uncond", "mode": r["mode"],
                     **r["metrics"], "nfe": r["nfe"], "n_params": r.get("n_params"), "n_images": r["n_images"],
                     "mlflow_run_id": r["mlflow_run_id"]})
    df = pd.DataFrame(rows)
    lead = ["dataset", "label", "beta", "method", "phase", "family", "mode"]
    df = df[lead + _present(df, SCOREVAE_COLUMNS) + ["nfe", "n_params", "n_images", "mlflow_run_id"]]
    _write_csv(df, out)
    return df


# --- DDVI study (`ddvi_denoising_diffusion_variational_inference` Tables 1, 2, 3, 8) -------------------------
# elbo: the exact bound (primary); elbo_release: the official release's estimator on the same model (not a bound)
DDVI_METRICS = {"table1": ["elbo", "elbo_release", "mmd", "latent_nll", "elbo_nats"],
                "table2": ["elbo", "elbo_release", "knn_acc", "latent_nll"],
                "table3": ["cluster_purity", "cluster_completeness", "nmi", "clusters_used"], "table8": ["latent_nll"]}


def mean_ci95(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student-t interval (NaN for a single seed), as the paper reports."""
    from scipy.special import stdtrit  # Student-t quantile = scipy.stats.t.ppf, without scipy.stats' import

    v = np.asarray(values, float)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(stdtrit(len(v) - 1, 0.975) * v.std(ddof=1) / np.sqrt(len(v)))


def seed_values(values: list[float]) -> str:
    """Each seed's value, space-separated in seed order (one CSV cell; claims.core reads it back)."""
    return " ".join(f"{float(v):.6g}" for v in values)


def write_ddvi_table(cfg: dict, table: str, inputs: list[Path], out: Path) -> pd.DataFrame:
    """One row per (method, prior): each metric's mean and 95% interval over the seeds in ``cfg['seeds']``.
    cfg: {labels: {method: label}, methods, priors, seeds}; every (method, prior, seed) must be present."""
    runs = _read(inputs)
    have = {(r["method"], r["prior"], r["seed"]) for r in runs}
    want = {(m, p, s) for m in cfg["methods"] for p in cfg["priors"] for s in cfg["seeds"]}
    if want - have:
        raise ValueError(f"DDVI {table}: missing runs (method, prior, seed): {sorted(want - have)[:5]}")
    rows = []
    for p in cfg["priors"]:
        for m in cfg["methods"]:
            sel = [r for r in runs if (r["method"], r["prior"]) == (m, p) and r["seed"] in cfg["seeds"]]
            row = {"prior": p, "method": m, "label": cfg["labels"][m]}
            for k in DDVI_METRICS[table]:
                vals = [r["metrics"][k] for r in sel if r["metrics"].get(k) is not None]
                if vals:  # AAEB has no density, so no ELBO (N/A in the paper too)
                    row[k], row[f"{k}_ci95"] = mean_ci95(vals)
                    row[f"{k}_seeds"] = seed_values(vals)  # the claims' intervals of differences need each seed
            row.update(n_seeds=len(sel), n_params=sel[0]["n_params"], n_test=sel[0]["n_test"],
                       mlflow_run_ids=" ".join(r["mlflow_run_id"] for r in sel))
            rows.append(row)
    df = pd.DataFrame(rows)
    metric_cols = [c for k in DDVI_METRICS[table] for c in (k, f"{k}_ci95", f"{k}_seeds") if c in df.columns]
    df = df[["prior", "method", "label"] + metric_cols + ["n_seeds", "n_params", "n_test", "mlflow_run_ids"]]
    _write_csv(df, out)
    return df


def write_ddvi_table5(cfg: dict, runs: list[Path], out: Path) -> pd.DataFrame:
    """DDVI Table 5: per (method, T, budget) the clustering NMI (mean and 95 % half-width over seeds) and the
    training wall time in minutes (mean over seeds; each checkpoint keeps its phase's wall time, resumed
    attempts added up); ``runs`` (evaluation JSONs) follow ``cfg['cells']``."""
    cells = cfg["cells"]
    if len(runs) != len(cells):
        raise ValueError(f"DDVI Table 5: {len(runs)} runs for {len(cells)} cells")
    rows: dict[tuple, dict] = {}
    for c, path, run in zip(cells, runs, _read(runs)):
        if run["method"] != c["method"] or run["setting"] != "cluster":
            raise ValueError(f"DDVI Table 5: {path} belongs to {run['method']}/{run['setting']}, expected "
                             f"{c['method']}/cluster")
        steps = c["steps"] if c["steps"] is not None else cfg["steps"].get(c["method"])
        label = cfg["labels"][c["method"]] + (f" (T={steps})" if c["steps"] is not None else "")
        r = rows.setdefault((c["run"], c["scale"]), {"method": c["method"], "label": label, "T": steps,
                                                    "scale": c["scale"], "nmi": [], "seconds": []})
        r["nmi"].append(run["metrics"]["nmi"])
        if run.get("train_seconds") is None:
            raise ValueError(f"DDVI Table 5: {path} has no train_seconds (its model was trained before checkpoints "
                             "kept the training time): rerun its training job with --forcerun")
        r["seconds"].append(float(run["train_seconds"]))
    out_rows = []
    for r in rows.values():
        nmi, ci = mean_ci95(r["nmi"])
        out_rows.append({"method": r["method"], "label": r["label"], "T": r["T"], "scale": r["scale"],
                         "examples": round(cfg["examples"] * r["scale"]),
                         "train_minutes": float(np.mean(r["seconds"])) / 60, "nmi": nmi, "nmi_ci95": ci,
                         "nmi_seeds": seed_values(r["nmi"]), "n_seeds": len(r["nmi"])})
    df = pd.DataFrame(out_rows)
    _write_csv(df, out)
    return df
