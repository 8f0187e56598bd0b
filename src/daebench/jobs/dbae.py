"""The DBAE study: the latent prior, generation and its metrics (Table 4), the linear probe (Table 1),
TAD/ATTRS (Table 3), inference cost (Table 5) and the tables; reconstruction over NFE (Tables 2, 9)
goes through the shared evaluation jobs. The DiffAE comparator is the spine's DAE (dbae.dae)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

from .. import paths
from ..config import ConfigError, family_facts
from ..tracking import params_hash
from .base import as_json, save_npz, write_json
from .evaluation import classifier_slice, metrics_slice, recon_slice
from .training import TrainingJob, family, method_core, run_training, steps, train_slice

log = logging.getLogger("daebench")

TABLES = ("table1", "table2", "table3", "table4", "table5", "table9", "table11")


def train_prior(cfg: dict, data: Path, out: Path, method: str, model: Path,
                checkpoint_dir: str = paths.CHECKPOINTS, progress: bool = True) -> None:
    """Fit the latent DDIM prior on a trained autoencoder's codes (DBAE §3.3.2, DiffAE §3.3)."""
    import torch

    from ..checkpoint import load_checkpoint, resolve_device
    from ..data import load_split
    from ..evaluate.latents import encode_split
    from ..evaluate.reconstruction import load_model
    from ..methods import latent_prior

    p = cfg["prior"]
    device = resolve_device(cfg["device"])
    ae, _, fam = load_model(load_checkpoint(Path(model)))
    images, _ = load_split(data, "train", mmap=True)  # encoded batch by batch
    z = torch.from_numpy(encode_split(ae.to(device), fam, images, device))
    pcfg = {"prior": p, "z_dim": int(z.shape[1]), "source": cfg}
    torch.manual_seed(p["seed"])
    prior = latent_prior.build(pcfg)
    prior.fit_standardisation(z)
    train_cfg = {"batch_size": p["batch_size"], "lr": p["lr"], "warmup_examples": 0, "ema_decay": p["ema_decay"],
                 "checkpoint_every": p["checkpoint_every"], "log_every": p["log_every"], "seed": p["seed"],
                 "device": cfg["device"]}
    out = Path(out)
    run_training(TrainingJob(
        name=f"{method}/prior", rule="train_prior", dataset=cfg["dataset"], params=pcfg, model=prior,
        loss=latent_prior.loss(), data=prior.standardise(z), train_cfg=train_cfg, config=pcfg,
        steps=steps(p["examples"], p["batch_size"])[0], out=out,
        ckpt_path=Path(checkpoint_dir) / f"{out.stem}.prior.resume.pt",
        registered_name=f"{cfg['dataset']}-{method}-prior"), progress)
    log.info("latent prior for %s: %d codes of dim %d", method, len(z), z.shape[1])


def generate(cfg: dict, data: Path, out: Path, method: str, model: Path, source: str, prior: str | None = None,
             progress: bool = True) -> None:
    from ..checkpoint import load_checkpoint, resolve_device
    from ..evaluate.latents import generate as sample
    from ..evaluate.reconstruction import save_grid
    from ..tracking import start_run

    g = cfg["generation"]
    with start_run(name=f"{method}/generate-{source}", rule="generate", dataset=cfg["dataset"], params=cfg) as run:
        res = sample(load_checkpoint(Path(model)), Path(data), cfg["method"], source, n=g["n_samples"],
                     nfe=g["nfe"], sampler=cfg["sampler"],
                     prior_ckpt=load_checkpoint(Path(prior)) if prior else None, prior_steps=g["prior_steps"],
                     seed=g["seed"], batch_size=g["batch_size"], device=resolve_device(cfg["device"]),
                     progress=progress)
        out = Path(out)
        save_npz(out, samples=res["samples"], z=res["z"],
                 meta=json.dumps({"seconds": res["seconds"], "source": source, "nfe": g["nfe"],
                                  "mlflow_run_id": run.run_id}))
        save_grid(out.with_suffix(".png"), [res["samples"][i * 12:(i + 1) * 12] for i in range(4)])
        run.log_metrics({"seconds": res["seconds"]})
        run.log_artifact(out.with_suffix(".png"))
    log.info("generated %d samples (%s) in %.1fs -> %s", len(res["samples"]), source, res["seconds"], out)


def gen_metrics(cfg: dict, data: Path, out: Path, method: str, samples: Path, classifier: Path,
                progress: bool = True) -> None:
    import numpy as np
    import torch

    from ..data import load_split, to_tensor
    from ..evaluate import features, weights
    from ..evaluate.generation import inception_score, precision_recall
    from ..tracking import start_run

    with np.load(samples) as f:
        fake = torch.from_numpy(f["samples"])
        meta = json.loads(str(f["meta"]))
    train, _ = load_split(data, "train")
    # reference: a fixed random subset of the train split, as many images as samples
    idx = np.random.default_rng(cfg["ref_seed"]).permutation(len(train))[:len(fake)]
    real = to_tensor(train[np.sort(idx)])
    clf = features.load_classifier(classifier)
    fr, ff = features.domain_features(clf, real), features.domain_features(clf, fake)
    prec, rec = precision_recall(fr, ff, k=cfg["pr_k"])
    with torch.no_grad():
        logits = clf(fake.clamp(-1, 1))
    res = {"precision_domain": prec, "recall_domain": rec, "is_domain": inception_score(logits),
           "fd_domain": float(features.frechet_distance_domain(real, fake, clf))}
    wd = Path(cfg["weights_dir"])
    notes = {}
    if weights.available(wd).get("inception_tf"):
        res["fid_tf"], _ = features.fid_tf(real, fake, wd)
    else:
        notes["fid_tf"] = weights.missing_message(wd, ["inception_tf"])
    result = {"metrics": res, "n_samples": len(fake), "n_reference": len(real), "source": meta["source"],
              "nfe": meta["nfe"], "generate_seconds": meta["seconds"], "not_computed": notes,
              "protocol": features.protocol_info(wd)}
    with start_run(name=f"{method}/gen-metrics-{meta['source']}", rule="gen_metrics", dataset=cfg["dataset"],
                   params=cfg) as run:
        run.log_metrics(res)
        result.update(method=method, mlflow_run_id=run.run_id)
    write_json(out, result)
    log.info("%s %s: %s", method, meta["source"], res)


def _encoded(cfg: dict, data: Path, model: Path) -> dict:
    """Codes of the train and test splits under a trained autoencoder: split -> (z, images, labels)."""
    from ..checkpoint import load_checkpoint, resolve_device
    from ..data import load_split
    from ..evaluate.latents import encode_split
    from ..evaluate.reconstruction import load_model

    device = resolve_device(cfg["device"])
    ae, _, fam = load_model(load_checkpoint(Path(model)))
    ae.to(device)
    out = {}
    for split in ("train", "test"):
        images, labels = load_split(data, split)
        out[split] = (encode_split(ae, fam, images, device), images, labels)
    return out


def probe(cfg: dict, data: Path, out: Path, method: str, model: Path, progress: bool = True) -> None:
    from ..data.attributes import binary_attributes, continuous_attributes
    from ..evaluate.representation import linear_probe
    from ..tracking import start_run

    enc = _encoded(cfg, data, model)
    (ztr, itr, ytr), (zte, ite, yte) = enc["train"], enc["test"]
    res = linear_probe(ztr, zte, ytr, yte, binary_attributes(itr, ytr, cfg["dataset"]),
                       binary_attributes(ite, yte, cfg["dataset"]), continuous_attributes(itr),
                       continuous_attributes(ite))
    with start_run(name=f"{method}/probe", rule="probe", dataset=cfg["dataset"], params=cfg) as run:
        run.log_metrics({k: v for k, v in res.items() if isinstance(v, float)})
        res.update(method=method, z_dim=int(ztr.shape[1]), n_train=len(ztr), n_test=len(zte),
                   mlflow_run_id=run.run_id)
    write_json(out, res)
    log.info("linear probe %s: %s", method, {k: v for k, v in res.items() if isinstance(v, float)})


def disentangle(cfg: dict, data: Path, out: Path, method: str, model: Path, progress: bool = True) -> None:
    import numpy as np

    from ..data.attributes import binary_attributes
    from ..evaluate.representation import tad
    from ..tracking import start_run

    enc = _encoded(cfg, data, model)
    z, images, labels = (np.concatenate([enc["train"][j], enc["test"][j]]) for j in range(3))
    # DBAE App. C.2: 1000 randomly selected samples
    idx = np.random.default_rng(cfg["seed"]).permutation(len(z))[:cfg["n_samples"]]
    res = tad(z[idx], binary_attributes(images[idx], labels[idx], cfg["dataset"]))
    with start_run(name=f"{method}/disentangle", rule="disentangle", dataset=cfg["dataset"], params=cfg) as run:
        run.log_metrics({"tad": res["tad"], "attrs": res["attrs"]})
        res.update(method=method, n_samples=len(idx), mlflow_run_id=run.run_id)
    write_json(out, res)
    log.info("TAD %s: %.4f, ATTRS %.1f", method, res["tad"], res["attrs"])


def inference_cost(cfg: dict, data: Path, out: Path, method: str, model: Path, progress: bool = True) -> None:
    from ..checkpoint import load_checkpoint, resolve_device
    from ..evaluate.latents import inference_cost as measure

    c = cfg["cost"]
    res = measure(load_checkpoint(Path(model)), Path(data), cfg["method"], n=c["n_images"], nfe=c["inversion_nfe"],
                  sampler=cfg["sampler"], device=resolve_device(cfg["device"]), repeats=c["repeats"])
    res["method"] = method
    write_json(out, res)
    log.info("inference cost %s: %s", method, res)


def dbae_table(cfg: dict, out: Path, table: str, inputs: list, progress: bool = True) -> None:
    from ..tables import write_dbae_table

    df = write_dbae_table(table, cfg, [Path(p) for p in inputs], Path(out))
    log.info("wrote %s (%d rows)\n%s", out, len(df), df.to_string(index=False))


def nfe_curve(inputs: list, out: Path, metric: str = "ssim", progress: bool = True) -> None:
    """DBAE Table 9 as a curve for `dvc plots show`: one row per NFE budget (Table 9's columns; the network
    evaluations actually spent differ by sampler), one column per method/mode (wide: DVC draws one line per
    column)."""
    import pandas as pd

    from ..data.store import atomic_path

    rows = []
    for path in inputs:
        r = json.loads(Path(path).read_text())
        rows.append({"nfe": r["ddim_steps"], "row": f"{r['method']}/{r['mode']}", metric: r["metrics"][metric]})
    df = pd.DataFrame(rows).pivot(index="nfe", columns="row", values=metric).reset_index()
    with atomic_path(Path(out)) as tmp:
        df.to_csv(tmp, index=False)
    log.info("wrote %s (%s at %d NFE values)", out, metric, len(df))


# --- slices and inputs ---------------------------------------------------------------------------------


def sampler_of(config: dict, method: str) -> dict:
    return config["dbae"]["sampler"] if family(config, method) == "dbae" else config["dbae"]["ddim"]


def dbae_modes(config: dict, method: str) -> list[str]:
    # the family's decoding modes: DAE random and DDIM-inverted x_T, DBAE x_T = Dec(z)
    return list(family_facts()[family(config, method)]["modes"])


def dbae_eval_slice(config: dict, dataset: str, method: str, nfe) -> dict:
    d = config["dbae"]
    return recon_slice(config, dataset, method, {"nfe": int(nfe), "sampler": sampler_of(config, method),
                                                 "n_images": d["n_images"], "batch_size": d["batch_size"],
                                                 "seed": d["seed"]})


def dbae_recon_cfg(config: dict, wildcards) -> str:
    return as_json(dbae_eval_slice(config, wildcards.dataset, wildcards.method, wildcards.nfe))


def dbae_metrics_upstream(config: dict, wildcards) -> str:
    w = wildcards
    return as_json({"eval": dbae_eval_slice(config, w.dataset, w.method, w.nfe), "mode": w.mode,
                    "classifier": classifier_slice(config, w.dataset)})


def prior_slice(config: dict, dataset: str, method: str) -> dict:
    return {"dataset": dataset, "device": config["train"]["device"], "prior": config["dbae"]["prior"],
            "upstream": train_slice(config, dataset, method)}


def prior_path(config: dict, dataset: str, method: str) -> str:
    return paths.PRIOR.format(dataset=dataset, method=method)


def generation_slice(config: dict, dataset: str, method: str, source: str, nfe: int | None = None) -> dict:
    # ``nfe``: a Table 11 column's decoder NFE in place of generation.nfe
    g = {**config["dbae"]["generation"], **({"nfe": int(nfe)} if nfe is not None else {})}
    out = {"dataset": dataset, "method": method_core(config, method), "device": config["train"]["device"],
           "sampler": sampler_of(config, method), "upstream": train_slice(config, dataset, method),
           "generation": {k: g[k] for k in ("n_samples", "nfe", "prior_steps", "batch_size", "seed")}}
    if source == "prior":
        out["prior"] = prior_slice(config, dataset, method)["prior"]
    return out


def generation_prior(config: dict, wildcards) -> list | str:
    return prior_path(config, wildcards.dataset, wildcards.method) if wildcards.source == "prior" else []


def gen_metrics_cfg(config: dict, wildcards) -> str:
    g = config["dbae"]["generation"]
    return as_json({**metrics_slice(config, wildcards.dataset), "pr_k": g["pr_k"], "ref_seed": g["ref_seed"]})


def gen_metrics_upstream(config: dict, wildcards) -> str:
    w = wildcards
    return as_json({"generation": generation_slice(config, w.dataset, w.method, w.source, getattr(w, "nfe", None)),
                    "classifier": classifier_slice(config, w.dataset)})


def generation_nfe_cfg(config: dict, wildcards) -> str:
    w = wildcards
    return as_json(generation_slice(config, w.dataset, w.method, w.source, w.nfe))


def gen_metrics_file(config: dict, dataset: str, method: str, source: str, nfe: int) -> str:
    """A Table 11 cell's scores: Table 4's own file at generation.nfe, else the one at ``nfe``."""
    tag = "" if nfe == config["dbae"]["generation"]["nfe"] else f"_nfe{nfe}"
    return f"results/dbae/gen_metrics/{dataset}/{method}/{source}{tag}.json"


def latent_eval_slice(config: dict, dataset: str, method: str, **extra) -> dict:
    return {"dataset": dataset, "device": config["train"]["device"], "upstream": train_slice(config, dataset, method),
            **extra}


# The probe's output format: 2 added the per-class and per-attribute AUROCs of the two-phase paper's Table 10
# (probes written before rerun once, so every probe file has them).
PROBE_OUTPUT = 2


def probe_cfg(config: dict, wildcards) -> str:
    return as_json(latent_eval_slice(config, wildcards.dataset, wildcards.method, output=PROBE_OUTPUT))


def disentangle_cfg(config: dict, wildcards) -> str:
    return as_json(latent_eval_slice(config, wildcards.dataset, wildcards.method, **config["dbae"]["disentangle"]))


def cost_cfg(config: dict, wildcards) -> str:
    w = wildcards
    return as_json({**latent_eval_slice(config, w.dataset, w.method), "method": method_core(config, w.method),
                    "sampler": sampler_of(config, w.method), "cost": config["dbae"]["cost"]})


def dbae_rows(config: dict) -> list[str]:
    # the DiffAE comparator first, then the DBAE variants
    d = config["dbae"]
    return [d["dae"]] + d["methods"]


def dbae_study_methods(config: dict) -> list[str]:
    d = config["dbae"]
    return sorted(set(dbae_rows(config) + d["tc_methods"] + d["generation"]["methods"]))


def dbae_table_inputs(config: dict, wildcards) -> list[str]:
    d, ds, t = config["dbae"], config["dataset"], wildcards.table
    rows = dbae_rows(config)
    if t in ("table2", "table9"):
        nfes = [d["table2_nfe"]] if t == "table2" else d["nfe"]
        return [f"results/dbae/metrics/{ds}/{m}/{mode}_nfe{n}.json"
                for m in rows for mode in dbae_modes(config, m) for n in nfes]
    if t == "table4":
        return [f"results/dbae/gen_metrics/{ds}/{m}/{src}.json" for m in d["generation"]["methods"]
                for src in ("prior", "ae")]
    if t == "table11":
        return [gen_metrics_file(config, ds, m, src, n) for m in d["generation"]["methods"] for src in ("prior", "ae")
                for n in d["table11"]["nfe"]]
    if t == "table1":
        return [f"results/dbae/probe/{ds}/{m}.json" for m in rows]
    if t == "table3":
        tc = [d["dae"]] + d["tc_methods"]
        return ([f"results/dbae/disentangle/{ds}/{m}.json" for m in tc]
                + [f"results/dbae/gen_metrics/{ds}/{m}/prior.json" for m in tc])
    if t == "table5":
        return [f"results/dbae/cost/{ds}/{m}.json" for m in rows]
    raise ConfigError(f"unknown DBAE table {t!r}; known: {', '.join(TABLES)}")


def dbae_table_cfg(config: dict, wildcards) -> str:
    d, ds = config["dbae"], config["dataset"]
    names, rows = dbae_study_methods(config), dbae_rows(config)
    return as_json({"dataset": ds, "z_dim": config["nets"]["z_dim"], "table2_nfe": d["table2_nfe"], "nfe": d["nfe"],
                    "order": rows + [m for m in names if m not in rows],
                    "methods": {m: {"label": config["methods"][m]["label"], "family": family(config, m),
                                    "tc_weight": config["methods"][m].get("tc_weight", 0.0)} for m in names}})


def dbae_table_upstream(config: dict, wildcards) -> str:
    # Everything the table's inputs depend on (coarse: any DBAE-study setting or involved model).
    # table11's ladder counts for Table 11 only (so adding it left the other tables' provenance as it was)
    ds = config["dataset"]
    d = {k: v for k, v in config["dbae"].items() if k != "table11" or wildcards.table == "table11"}
    return params_hash([d, classifier_slice(config, ds), config["metrics"]["weights_dir"]]
                       + [train_slice(config, ds, m) for m in dbae_study_methods(config)])


def dbae_outputs(config: dict) -> list[str]:
    """Everything the study produces (its `all` target, and what the report shows of it)."""
    return [f"results/dbae/{t}.csv" for t in TABLES]


def generation_cfg(config: dict, wildcards) -> str:
    return as_json(generation_slice(config, wildcards.dataset, wildcards.method, wildcards.source))


def nfe_curve_inputs(config: dict, wildcards) -> list[str]:
    return dbae_table_inputs(config, SimpleNamespace(table="table9"))


def nfe_curve_columns(config: dict) -> list[str]:
    """The curve's columns besides nfe: one per method and mode of Table 9, as nfe_curve names them."""
    return sorted(f"{m}/{mode}" for m in dbae_rows(config) for mode in dbae_modes(config, m))
