"""The two-phase DAE study (Table 4): its table job and the slices of its reconstruction, scoring and
table jobs."""
from __future__ import annotations

import logging
from pathlib import Path

from ..tracking import params_hash
from .base import as_json
from .evaluation import classifier_slice, recon_slice

log = logging.getLogger("daebench")


def table4(cfg: dict, out: Path, inputs: list, progress: bool = True) -> None:
    from ..tables import write_table4

    df = write_table4(cfg, [Path(p) for p in inputs], Path(out))
    log.info("wrote %s (%d rows)\n%s", out, len(df), df.to_string(index=False))


# --- slices and inputs ---------------------------------------------------------------------------------


def eval_slice(config: dict, dataset: str, method: str) -> dict:
    t4 = config["table4"]
    return recon_slice(config, dataset, method,
                       {k: t4[k] for k in ("ddim_steps", "clip_x0", "n_images", "batch_size", "seed")})


def reconstruct_cfg(config: dict, wildcards) -> str:
    return as_json(eval_slice(config, wildcards.dataset, wildcards.method))


def metrics_upstream(config: dict, dataset: str, method: str, mode: str) -> dict:
    return {"eval": eval_slice(config, dataset, method), "mode": mode, "classifier": classifier_slice(config, dataset)}


def metrics_upstream_cfg(config: dict, wildcards) -> str:
    return as_json(metrics_upstream(config, wildcards.dataset, wildcards.method, wildcards.mode))


def table4_inputs(config: dict, wildcards) -> list[str]:
    t4, ds = config["table4"], config["dataset"]
    return [f"results/metrics/{ds}/{m}/{mode}.json" for m in t4["methods"] for mode in t4["modes"]]


def table4_upstream(config: dict, wildcards) -> str:
    t4, ds = config["table4"], config["dataset"]
    return params_hash([metrics_upstream(config, ds, m, mode) for m in t4["methods"] for mode in t4["modes"]])


def table4_cfg(config: dict, wildcards) -> str:
    t4 = config["table4"]
    return as_json({"dataset": config["dataset"], "ddim_steps": t4["ddim_steps"], "methods_order": t4["methods"],
                    "methods": {m: {k: config["methods"][m][k] for k in ("label", "prediction", "phases")}
                                for m in t4["methods"]}})


def report_recon_inputs(config: dict, wildcards) -> list[str]:
    t4, ds = config["table4"], config["dataset"]
    return [f"results/recon/{ds}/{m}/{mode}.npz" for m in t4["methods"] for mode in t4["modes"]]


def table4_provenance(config: dict, wildcards) -> str:
    # Everything results/table4.csv depends on (reruns follow provenance: docs/architecture.md).
    return params_hash([table4_upstream(config, wildcards), table4_cfg(config, wildcards)])
