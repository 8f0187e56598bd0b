"""The ScoreVAE study (Table 1): the prior, encoders and baselines train through the phase-training job;
each Table 1 row is reconstructed from its phase's checkpoint (conditional reverse SDE / PF ODE, or the
VAE decoder) and scored by the shared evaluation jobs. Here: the table, the figure and their slices."""
from __future__ import annotations

import logging
import shlex
from pathlib import Path

from ..config import family_facts
from ..tracking import params_hash
from .base import as_json, write_json
from .evaluation import classifier_slice, recon_slice, weights_state
from .training import family, final_model, model_path, phase_index, train_slice

log = logging.getLogger("daebench")

PRIOR_SAMPLES = "results/scorevae/prior/{dataset}/{method}.json"  # Table 1's prior row (and its .png)


def scorevae_table(cfg: dict, out: Path, inputs: list, progress: bool = True) -> None:
    from ..tables import write_scorevae_table1

    df = write_scorevae_table1(cfg, [Path(p) for p in inputs], Path(out))
    log.info("wrote %s (%d rows)\n%s", out, len(df), df.to_string(index=False))


def scorevae_prior(cfg: dict, data: Path, out: Path, model: Path, classifier: Path, progress: bool = True) -> None:
    """Table 1's prior row: the frozen prior every ScoreVAE decoding starts from, on its own. Samples drawn with
    the table's sampler and NFE, their domain Frechet distance to the test images the reconstruction rows are
    scored against (the same n), and the prior's eps-prediction MSE on the whole held-out split."""
    import time

    import torch

    from ..checkpoint import load_checkpoint, resolve_device
    from ..data import load_split, to_tensor
    from ..evaluate import features
    from ..evaluate.reconstruction import load_model, save_grid
    from ..methods import uncond
    from ..tracking import start_run

    ev, method = cfg["eval"], cfg["upstream"]["method"]
    ckpt = load_checkpoint(Path(model))
    net, _, _ = load_model(ckpt)
    device = resolve_device(cfg["device"])
    net.to(device)
    test, _ = load_split(Path(data), "test")
    x_all = to_tensor(test)
    x, bs = x_all[:ev["n_images"]], ev["batch_size"]
    trained_by = ckpt.get("mlflow_run_id")
    name = cfg["name"]
    with start_run(name=f"{name}/prior-samples", rule="scorevae_prior", dataset=cfg["dataset"], params=cfg,
                   tags={"daebench.training_run_id": trained_by or ""}) as run:
        g, t0 = torch.Generator().manual_seed(ev["seed"]), time.time()
        samples = torch.cat([uncond.sample(net, method, min(bs, len(x) - i), tuple(x.shape[1:]), ev["nfe"], g,
                                           ev["sampler"], ev["mode"], device).clamp(-1, 1).cpu()
                             for i in range(0, len(x), bs)])
        seconds = time.time() - t0
        g = torch.Generator().manual_seed(ev["seed"])
        mse = torch.cat([uncond.heldout_eps_mse(net, method, x_all[i:i + bs].to(device), g).cpu()
                         for i in range(0, len(x_all), bs)])
        clf = features.load_classifier(classifier)
        res = {"fd_domain": float(features.frechet_distance_domain(x, samples, clf)),
               "eps_mse": float(mse.mean()), "eps_mse_se": float(mse.std() / len(mse) ** 0.5)}
        run.log_metrics({**res, "seconds": seconds})
        if trained_by:
            run.log_metrics({f"eval/prior-samples-{ev['mode']}-{ev['nfe']}steps-n{len(x)}/{k}": v
                             for k, v in res.items()}, run_id=trained_by)
        out = Path(out)
        save_grid(out.with_suffix(".png"), [samples[i:i + 12] for i in range(0, min(48, len(samples)), 12)])
        run.log_artifact(out.with_suffix(".png"))
        nfe = ev["nfe"] + int(ev["sampler"].get("denoise", True))  # as the rows count it (vpvae.cost)
        write_json(out, {"metrics": res, "method": name, "mode": ev["mode"], "nfe": nfe, "n_images": len(x),
                         "n_heldout": len(x_all), "seconds": seconds,
                         "n_params": sum(p.numel() for p in net.parameters()), "mlflow_run_id": run.run_id,
                         "training_run_id": trained_by})
    log.info("prior %s: %s (%d samples in %.1fs)", name, res, len(x), seconds)


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


def scorevae_priors(config: dict) -> list[str]:
    """The priors the table's ScoreVAE rows decode through, in row order (one prior row each)."""
    out = []
    for row in config["scorevae"]["rows"]:
        prior = config["methods"][row["method"]].get("prior")
        if prior and prior not in out:
            out.append(prior)
    return out


def scorevae_prior_slice(config: dict, dataset: str, prior: str) -> dict:
    # the prior's training, and the table's sampler, NFE and images: what its samples depend on
    s = config["scorevae"]
    return {"dataset": dataset, "device": config["train"]["device"], "name": prior,
            "upstream": train_slice(config, dataset, prior),
            "eval": {"mode": s["modes"][0], "nfe": s["nfe"], "sampler": s["sampler"],
                     **{k: s[k] for k in ("n_images", "batch_size", "seed")}}}


def scorevae_prior_cfg(config: dict, wildcards) -> str:
    return as_json(scorevae_prior_slice(config, wildcards.dataset, wildcards.method))


def scorevae_prior_upstream(config: dict, wildcards) -> str:
    return as_json({"classifier": classifier_slice(config, wildcards.dataset)})


def scorevae_prior_model(config: dict, wildcards) -> str:
    return final_model(config, wildcards)


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


def scorevae_row_metrics(config: dict) -> list[str]:
    """The scoring files of the reconstruction rows (per-image values: the claims' paired intervals)."""
    ds = config["dataset"]
    return [f"results/scorevae/metrics/{ds}/{r['method']}/{r['phase']}_{r['mode']}.json" for r in scorevae_rows(config)]


def scorevae_table_inputs(config: dict, wildcards) -> list[str]:
    ds = config["dataset"]
    return scorevae_row_metrics(config) + [PRIOR_SAMPLES.format(dataset=ds, method=p) for p in scorevae_priors(config)]


def scorevae_table_cfg(config: dict, wildcards) -> str:
    priors = [{"method": p, "label": config["methods"][p]["label"]} for p in scorevae_priors(config)]
    return as_json({"dataset": config["dataset"], "rows": scorevae_rows(config), "nfe": config["scorevae"]["nfe"],
                    "priors": priors})


def scorevae_table_upstream(config: dict, wildcards) -> str:
    ds = config["dataset"]
    return params_hash([classifier_slice(config, ds), config["metrics"]["weights_dir"], weights_state(config)]
                       + [scorevae_eval_slice(config, ds, r["method"], r["phase"]) for r in scorevae_rows(config)]
                       + [scorevae_prior_slice(config, ds, p) for p in scorevae_priors(config)])


def scorevae_grid_labels(config: dict, wildcards) -> str:
    return " ".join(shlex.quote(f"{r['label']} (beta {r['beta']:g}, {r['mode']})") for r in scorevae_rows(config))


def scorevae_outputs(config: dict) -> list[str]:
    """Everything the study produces (its `all` target, and what the report shows of it)."""
    return ["results/scorevae/table1.csv", "results/scorevae/recon_grid.png"]
