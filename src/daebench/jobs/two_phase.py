"""The two-phase DAE study: Table 4 (the main job), and the ablations of results/two_phase/ (Tables 1-3:
stochastic reconstructions scored as Table 4's; Table 5: perceptual path length; Table 10: linear-probe
AUROC per class and attribute). Their run functions and the slices of their jobs."""
from __future__ import annotations

import logging
from pathlib import Path

from ..tracking import params_hash
from .base import as_json, write_json
from .evaluation import classifier_slice, metrics_slice, recon_slice
from .training import train_slice

# The ablation tables of results/two_phase/ and what each row is: a stochastic reconstruction scored as
# Table 4's (Tables 1-3), a PPL job (Table 5), a latent probe (Table 10, shared with DBAE's Table 1).
ABLATIONS = {"table1": "recon", "table2": "recon", "table3": "recon", "table5": "ppl", "table10": "probe"}

log = logging.getLogger("daebench")


def table4(cfg: dict, out: Path, inputs: list, summary: Path | None = None, progress: bool = True) -> None:
    """Table 4 and, with ``summary``, its headline numbers (results/summary/two_phase.json, what `dvc metrics
    show` prints): the main job writes both, so DVC can be told about it after the main job alone."""
    from ..tables import write_table4

    df = write_table4(cfg, [Path(p) for p in inputs], Path(out))
    log.info("wrote %s (%d rows)\n%s", out, len(df), df.to_string(index=False))
    if summary is not None:
        from .studies import summary as write_summary  # jobs.studies imports this module

        write_summary("two_phase", [f"table4={out}"], Path(summary))


def two_phase_table(table: str, cfg: dict, out: Path, inputs: list, progress: bool = True) -> None:
    from ..tables import write_two_phase_table

    df = write_two_phase_table(table, cfg, [Path(p) for p in inputs], Path(out))
    log.info("wrote %s (%d rows)\n%s", out, len(df), df.to_string(index=False))


def ppl(cfg: dict, data: Path, out: Path, method: str, model: Path, classifier: Path, progress: bool = True) -> None:
    """Table 5: slerp paths between test-image pairs decoded by the DAE, and their perceptual path length
    (LPIPS VGG when its weights are in weights_dir, else the domain-feature distance, named as such)."""
    from ..checkpoint import load_checkpoint, resolve_device
    from ..evaluate.interpolation import model_ppl
    from ..evaluate.reconstruction import save_grid
    from ..tracking import start_run

    p, ev = cfg["ppl"], cfg["eval"]
    with start_run(name=f"{method}/ppl", rule="ppl", dataset=cfg["dataset"], params=cfg) as run:
        res = model_ppl(load_checkpoint(Path(model)), Path(data), cfg["method"], pairs=p["pairs"], n=p["steps"],
                        seed=p["seed"], batch_size=p["batch_size"], nfe=ev["ddim_steps"],
                        sampler={"clip_x0": ev["clip_x0"]}, classifier=Path(classifier),
                        weights_dir=Path(cfg["weights_dir"]), device=resolve_device(cfg.get("device", "auto")),
                        progress=progress)
        strip = Path(out).with_suffix(".png")
        save_grid(strip, list(res.pop("strip")), n=res["strip_columns"])
        run.log_metrics({k: v for k, v in res.items() if isinstance(v, float)})
        run.log_artifact(strip)
        res.update(method=method, mlflow_run_id=run.run_id)
    write_json(out, res)
    log.info("PPL of %s (%s, %d pairs, N = %d): %.4g", method, res["distance"], res["pairs"], res["steps"], res["ppl"])


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


# --- the ablation tables (results/two_phase/) -------------------------------------------------------------


def ablation_methods(config: dict, table: str) -> list[str]:
    tp = config["two_phase"]
    return {"table5": tp["ppl"]["methods"], "table10": tp["probe"]["methods"]}.get(table) or tp[table]


def ablation_files(config: dict, table: str) -> list[str]:
    ds, kind = config["dataset"], ABLATIONS[table]
    where = {"recon": "results/metrics/{ds}/{m}/stochastic.json", "ppl": "results/two_phase/ppl/{ds}/{m}.json",
             "probe": "results/dbae/probe/{ds}/{m}.json"}[kind]
    return [where.format(ds=ds, m=m) for m in ablation_methods(config, table)]


def ablation_inputs(config: dict, wildcards) -> list[str]:
    return ablation_files(config, wildcards.table)


def ppl_slice(config: dict, dataset: str, method: str) -> dict:
    # the PPL job: the model as reconstructed for Table 4 (its sampler settings), the pairs, and the metric weights
    t4 = config["table4"]
    return {**recon_slice(config, dataset, method, {k: t4[k] for k in ("ddim_steps", "clip_x0")}),
            "ppl": {k: v for k, v in config["two_phase"]["ppl"].items() if k != "methods"},
            **metrics_slice(config, dataset)}


def ppl_cfg(config: dict, wildcards) -> str:
    return as_json(ppl_slice(config, wildcards.dataset, wildcards.method))


def ppl_upstream(config: dict, wildcards) -> str:
    return params_hash(classifier_slice(config, wildcards.dataset))


def ablation_upstream(config: dict, wildcards) -> str:
    # what the rows were computed from (a changed key upstream reruns the table)
    ds, table = config["dataset"], wildcards.table
    kind = ABLATIONS[table]
    if kind == "recon":
        return params_hash([metrics_upstream(config, ds, m, "stochastic") for m in ablation_methods(config, table)])
    if kind == "ppl":
        return params_hash([ppl_slice(config, ds, m) for m in ablation_methods(config, table)])
    return params_hash([train_slice(config, ds, m) for m in ablation_methods(config, table)])


def ablation_cfg(config: dict, wildcards) -> str:
    methods = ablation_methods(config, wildcards.table)
    return as_json({"dataset": config["dataset"], "ddim_steps": config["table4"]["ddim_steps"],
                    "methods_order": methods,
                    "methods": {m: {k: config["methods"][m][k] for k in ("label", "prediction", "phases")}
                                for m in methods}})


def two_phase_outputs(config: dict) -> list[str]:
    """Everything the two-phase ablations produce (target two_phase_all, and the report's section)."""
    ds = config["dataset"]
    return ([f"results/two_phase/{t}.csv" for t in ABLATIONS]
            + [f"results/two_phase/ppl/{ds}/{m}.png" for m in config["two_phase"]["ppl"]["methods"]])


def ablation_tables(config: dict) -> list[str]:
    return list(ABLATIONS)


def two_phase_all_inputs(config: dict, wildcards) -> list[str]:
    return two_phase_outputs(config) + ["results/table4.csv", "results/claims/two_phase_ablations.csv"]
