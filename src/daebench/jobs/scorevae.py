"""The ScoreVAE study (Table 1): the prior, encoders and baselines train through the phase-training job;
each Table 1 row is reconstructed from its phase's checkpoint (conditional reverse SDE / PF ODE, or the
VAE decoder) and scored by the shared evaluation jobs. Here: the table, the figure and their slices."""
from __future__ import annotations

import logging
import shlex
from pathlib import Path

from ..config import family_facts
from ..tracking import params_hash
from .base import as_json
from .evaluation import classifier_slice, recon_slice, weights_state
from .training import family, model_path, phase_index

log = logging.getLogger("daebench")


def scorevae_table(cfg: dict, out: Path, inputs: list, progress: bool = True) -> None:
    from ..tables import write_scorevae_table1

    df = write_scorevae_table1(cfg, [Path(p) for p in inputs], Path(out))
    log.info("wrote %s (%d rows)\n%s", out, len(df), df.to_string(index=False))


def scorevae_grid(out: Path, inputs: list, labels: list, n: int = 12, progress: bool = True) -> None:
    """One labelled figure: the originals, then one row per reconstruction of the same test images."""
    import numpy as np

    from ..data.store import atomic_path
    from ..evaluate.figures import recon_rows_figure

    if len(labels) != len(inputs):
        raise SystemExit(f"scorevae-grid: {len(inputs)} inputs but {len(labels)} labels")
    recons, original = [], None
    for path in inputs:
        with np.load(path) as f:
            original = f["original"] if original is None else original
            recons.append(f["recon"])
    fig = recon_rows_figure(original, recons, labels, n=n)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    log.info("wrote %s (%d rows)", out, len(recons) + 1)


# --- slices and inputs ---------------------------------------------------------------------------------


def row_phase(config: dict, row: dict) -> str:
    return row.get("phase") or config["methods"][row["method"]]["phases"][-1]["name"]


def scorevae_modes(config: dict, method: str) -> list[str]:
    # the configured decoding modes (scorevae.modes) the family has: SDE and/or ODE for the diffusion
    # decoders; the VAE's one pass
    modes = family_facts()[family(config, method)]["modes"]
    return [m for m in config["scorevae"]["modes"] if m in modes] or list(modes)


def scorevae_rows(config: dict) -> list[dict]:
    """One entry per Table 1 row and decoding mode, in the configured order."""
    out = []
    for row in config["scorevae"]["rows"]:
        m = row["method"]
        for mode in scorevae_modes(config, m):
            out.append({"method": m, "phase": row_phase(config, row), "mode": mode, "family": family(config, m),
                        "label": row.get("label") or config["methods"][m]["label"],
                        "beta": config["methods"][m]["beta"]})
    return out


def scorevae_eval_slice(config: dict, dataset: str, method: str, phase: str) -> dict:
    s = config["scorevae"]
    if family(config, method) == "vae":  # one decoder pass: only the choice of z matters
        ev = {"nfe": 1, "sampler": {"latent": s["sampler"]["latent"]}}
    else:
        ev = {"nfe": s["nfe"], "sampler": s["sampler"]}
    ev.update({k: s[k] for k in ("n_images", "batch_size", "seed")})
    return recon_slice(config, dataset, method, ev, phase_index(config, method, phase))


def scorevae_recon_cfg(config: dict, wildcards) -> str:
    return as_json(scorevae_eval_slice(config, wildcards.dataset, wildcards.method, wildcards.phase))


def scorevae_metrics_upstream(config: dict, wildcards) -> str:
    w = wildcards
    return as_json({"eval": scorevae_eval_slice(config, w.dataset, w.method, w.phase),
                    "classifier": classifier_slice(config, w.dataset)})


def scorevae_model(config: dict, wildcards) -> str:
    return model_path(config, wildcards.dataset, wildcards.method, wildcards.phase)


def scorevae_recon_files(config: dict, wildcards) -> list[str]:
    ds = config["dataset"]
    return [f"results/scorevae/recon/{ds}/{r['method']}/{r['phase']}_{r['mode']}.npz" for r in scorevae_rows(config)]


def scorevae_table_inputs(config: dict, wildcards) -> list[str]:
    ds = config["dataset"]
    return [f"results/scorevae/metrics/{ds}/{r['method']}/{r['phase']}_{r['mode']}.json"
            for r in scorevae_rows(config)]


def scorevae_table_cfg(config: dict, wildcards) -> str:
    return as_json({"dataset": config["dataset"], "rows": scorevae_rows(config), "nfe": config["scorevae"]["nfe"]})


def scorevae_table_upstream(config: dict, wildcards) -> str:
    ds = config["dataset"]
    return params_hash([classifier_slice(config, ds), config["metrics"]["weights_dir"], weights_state(config)]
                       + [scorevae_eval_slice(config, ds, r["method"], r["phase"]) for r in scorevae_rows(config)])


def scorevae_grid_labels(config: dict, wildcards) -> str:
    return " ".join(shlex.quote(f"{r['label']} (beta {r['beta']:g}, {r['mode']})") for r in scorevae_rows(config))


def scorevae_outputs(config: dict) -> list[str]:
    """Everything the study produces (its `all` target, and what the report shows of it)."""
    return ["results/scorevae/table1.csv", "results/scorevae/recon_grid.png"]
