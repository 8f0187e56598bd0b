"""Result tables as CSV. Table 4 of the two-phase DAE paper: one row per (dataset, method, mode)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from .diffusion.schedules import schedule_label

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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    df.to_csv(tmp, index=False, float_format="%.6g")
    os.replace(tmp, out)
    return df
