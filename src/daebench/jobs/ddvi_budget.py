"""DDVI's Table 5 (App. C): NMI of the genotype clustering against wall-clock training time. Each method of
``ddvi.table5`` is trained in the clustering setting at a ladder of budgets (multiples of ddvi.train.examples),
DDVI-family methods also at several numbers of diffusion steps T; a run at scale 1 with the method's own T is
Table 3's job. The time of a run is the training wall time its checkpoint keeps (resumed attempts added up),
which its evaluation JSON carries: the table needs no log file, so a `dvc pull`ed copy has all it reads.

The paper reads NMI at fixed wall-clock times (10 to 60 minutes); a budget ladder gives the same curve with
the time measured rather than set, which is what a 2-core machine can run."""
from __future__ import annotations

import logging
from pathlib import Path

from .base import as_json
from .ddvi import ddvi_data, ddvi_job_slice

log = logging.getLogger("daebench")

def ddvi_table5(cfg: dict, out: Path, runs: list, figure: Path, progress: bool = True) -> None:
    from ..evaluate.figures import budget_figure
    from ..tables import write_ddvi_table5

    df = write_ddvi_table5(cfg, [Path(p) for p in runs], Path(out))
    budget_figure(df, Path(figure))
    log.info("wrote %s and %s\n%s", out, figure, df.to_string(index=False))


# --- slices and inputs ---------------------------------------------------------------------------------

SHARED = ("resources/ddvi/cluster/mixture/{m}/seed{s}.pt", "results/ddvi/runs/cluster/mixture/{m}/seed{s}.json")
OWN = ("resources/ddvi/budget/{r}/x{x}/seed{s}.pt", "results/ddvi/budget/{r}/x{x}/seed{s}.json")


def budget_runs(config: dict) -> list[tuple[str, int | None]]:
    """The rows of Table 5: (method, T), T None for a method without diffusion steps."""
    t5, methods = config["ddvi"]["table5"], config["ddvi"]["methods"]
    return [(m, t) for m in t5["methods"]
            for t in (t5["ddvi_steps"] if methods[m]["family"] == "ddvi" else [None])]


def run_name(method: str, steps: int | None) -> str:
    return method if steps is None else f"{method}-T{steps}"


def parse_run(run: str) -> tuple[str, int | None]:
    method, _, t = run.partition("-T")
    return method, (int(t) if t else None)


def scale_tag(scale: float) -> str:
    return f"{scale:g}"


def budget_slice(config: dict, run: str, scale, seed) -> dict:
    """The clustering-setting training slice of ``run`` with ddvi.train.examples times ``scale`` and its T."""
    method, steps = parse_run(run)
    out = ddvi_job_slice(config, "cluster", "mixture", method, seed)
    if steps is not None:
        out["method"] = {**out["method"], "steps": int(steps)}
    out["train"] = {**out["train"], "examples": max(1, round(out["train"]["examples"] * float(scale)))}
    return out


def _shared(config: dict, run: str, scale) -> bool:
    # scale 1 at the method's own T is exactly Table 3's run (the same slice): its job, not a second one
    method, steps = parse_run(run)
    own = config["ddvi"]["methods"][method].get("steps")
    return float(scale) == 1.0 and (steps is None or steps == own)


def budget_files(config: dict, run: str, scale, seed) -> tuple[str, str]:
    """(model, evaluation JSON) of one run of the ladder."""
    method, _ = parse_run(run)
    if _shared(config, run, scale):
        return tuple(p.format(m=method, s=seed) for p in SHARED)
    return tuple(p.format(r=run, x=scale_tag(scale), s=seed) for p in OWN)


def table5_cells(config: dict) -> list[dict]:
    t5 = config["ddvi"]["table5"]
    return [{"run": run_name(m, t), "method": m, "steps": t, "scale": float(x), "seed": int(s)}
            for m, t in budget_runs(config) for x in t5["scales"] for s in t5["seeds"]]


def table5_inputs(config: dict, wildcards) -> dict:
    return {"runs": [budget_files(config, c["run"], c["scale"], c["seed"])[1] for c in table5_cells(config)]}


def table5_cfg(config: dict, wildcards) -> str:
    study = config["ddvi"]
    return as_json({"cells": table5_cells(config), "examples": study["train"]["examples"],
                    "labels": {m: study["methods"][m].get("label", m) for m in study["table5"]["methods"]},
                    "steps": {m: study["methods"][m].get("steps") for m in study["table5"]["methods"]}})


def budget_train_cfg(config: dict, wildcards) -> str:
    w = wildcards
    return as_json(budget_slice(config, w.run, w.scale, w.seed))


def budget_eval_cfg(config: dict, wildcards) -> str:
    w = wildcards
    return as_json({**budget_slice(config, w.run, w.scale, w.seed), "eval": config["ddvi"]["eval"]})


def budget_data_dir(config: dict, wildcards) -> str:
    return ddvi_data(config, "cluster")[0]


def budget_manifest(config: dict, wildcards) -> str:
    return f"{budget_data_dir(config, wildcards)}/manifest.json"


def budget_method(config: dict, wildcards) -> str:
    return parse_run(wildcards.run)[0]
