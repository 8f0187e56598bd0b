"""The DDVI study: one training and one evaluation job per (setting, prior, method, seed); tables average
the seeds. Settings: unsup (Tables 1 and 8), semi (Table 2), cluster (Table 3, genotypes)."""
from __future__ import annotations

import logging
import shlex
from pathlib import Path

from .. import paths
from ..config import ConfigError, ddvi_method
from .base import as_json, save_npz, write_json
from .data import data_dir, data_slice
from .training import TrainingJob, run_training, steps

log = logging.getLogger("daebench")

SETTING_OF_TABLE = {"table1": "unsup", "table2": "semi", "table3": "cluster", "table8": "unsup"}
LATENT_TITLES = {"unsup": "Test-digit codes by class (unsupervised, first seed)",
                 "semi": "Test-digit codes by class (semi-supervised, first seed)",
                 "cluster": "Genotype codes by population (clustering, first seed)"}


def ddvi_train(cfg: dict, data: Path, out: Path, name: str, checkpoint_dir: str = paths.CHECKPOINTS,
               progress: bool = True) -> None:
    from .. import ddvi_study

    ds = ddvi_study.load_data(cfg, Path(data))
    family, model, ctx = ddvi_study.build(cfg, _data_shape(cfg, Path(data), ds.x_train.shape[1]))
    train = cfg["train"]
    out = Path(out)

    data_ = (ds.x_train, ddvi_study.partition_labels(cfg, ds.y_train))
    stage1_out = Path(checkpoint_dir) / f"{out.stem}.stage1.pt"

    def before(run) -> None:  # a fresh start; a resumed run restores all of this from its checkpoint
        if cfg["method"].get("stage1"):
            if not (stage1_out.exists() or _resume_path(stage1_out).exists()):
                _pretrain(run, "stage1/pretrain", lambda: ddvi_study.pretrain(cfg, model, ctx, stage1=True))
            _train_stage1(cfg, family, model, ctx, data_, run, name, stage1_out, progress)
        _pretrain(run, "pretrain", lambda: ddvi_study.pretrain(cfg, model, ctx))

    run_training(TrainingJob(
        name=name, rule="ddvi_train", dataset=cfg["dataset"], params=cfg, model=model,
        loss=ddvi_study.DDVILoss(family, cfg["method"], ctx), data=data_, train_cfg=train, config=cfg,
        steps=steps(train["examples"], train["batch_size"])[0], out=out,
        ckpt_path=Path(checkpoint_dir) / f"{out.stem}.resume.pt", registered_name="ddvi-" + name.replace("/", "-"),
        before=before), progress)
    stage1_out.unlink(missing_ok=True)  # the first model lives on in the final one


def _pretrain(run, prefix: str, fit) -> None:
    import time

    t0 = time.time()
    losses = fit()
    if losses:
        run.log_metrics({f"{prefix}/loss": sum(losses[-20:]) / len(losses[-20:]), f"{prefix}/steps": len(losses),
                         f"{prefix}/seconds": time.time() - t0})


def _resume_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.resume.pt")


def _train_stage1(cfg: dict, family, model, ctx, data, run, name: str, out: Path, progress: bool) -> None:
    """The release's first model (methods/ddvi.py, ``stage1``), trained into ``model`` before the main training,
    resumable on its own; a finished one (``out``, kept until the job ends) is loaded instead of retrained. The
    main training starts from its raw weights (the release keeps no average)."""
    from .. import ddvi_study
    from ..checkpoint import load_checkpoint
    from ..train import train_phase

    if not out.exists():
        s1, train = cfg["method"]["stage1"], cfg["train"]
        train_phase(model, ddvi_study.DDVILoss(family, cfg["method"], ctx, stage="stage1"), data,
                    steps=steps(int(s1.get("examples") or train["examples"]), train["batch_size"])[0], phase_index=1,
                    train_cfg=train,
                    ckpt_path=_resume_path(out), out_path=out,
                    config={**cfg, "stage": "stage1"}, progress=progress, name=f"{name}/stage1",
                    logger=lambda means, step: run.log_metrics({f"stage1/{k}": v for k, v in means.items()}, step))
    model.load_state_dict(load_checkpoint(out)["model"])


def _data_shape(cfg: dict, data: Path, dim: int) -> int | tuple[int, int, int]:
    """What the models are built for: the flat dimension, or with ``nets.arch: cnn`` the images' (channels,
    height, width) from the dataset's manifest (stored NHWC), the order the flat vectors are in."""
    if cfg["nets"].get("arch", "mlp") != "cnn":
        return dim
    from ..data import read_manifest

    h, w, c = read_manifest(data)["image_shape"]
    if h * w * c != dim:
        raise ValueError(f"{data}: manifest image_shape {[h, w, c]} does not match the {dim}-d training vectors")
    return c, h, w


def ddvi_evaluate(cfg: dict, data: Path, out: Path, method: str, name: str, model: Path, arrays: Path,
                  progress: bool = True) -> None:
    from .. import ddvi_study
    from ..checkpoint import load_checkpoint
    from ..tracking import start_run
    from ..train import num_params

    ds = ddvi_study.load_data(cfg, Path(data))
    family, net, ctx = ddvi_study.build(cfg, _data_shape(cfg, Path(data), ds.x_train.shape[1]))
    ckpt = load_checkpoint(Path(model))
    net.load_state_dict(ckpt["ema"])
    with start_run(name=f"{name}/eval", rule="ddvi_evaluate", dataset=cfg["dataset"], params=cfg) as run:
        metrics, arr = ddvi_study.evaluate(cfg, family, net, ctx, ds)
        run.log_metrics(metrics)
        result = {"setting": cfg["setting"], "prior": cfg["prior"]["name"], "method": method,
                  "seed": cfg["train"]["seed"], "metrics": metrics, "n_params": num_params(net),
                  "n_test": len(ds.x_test), "mlflow_run_id": run.run_id,
                  "train_seconds": ckpt.get("train_seconds")}  # Table 5's time axis (None: trained before it was kept)
    save_npz(arrays, **arr)
    write_json(out, result)
    log.info("%s: %s", name, metrics)


def ddvi_table(cfg: dict, out: Path, table: str, inputs: list, progress: bool = True) -> None:
    from ..tables import write_ddvi_table

    df = write_ddvi_table(cfg, table, [Path(p) for p in inputs], Path(out))
    log.info("wrote %s (%d rows)\n%s", out, len(df), df.to_string(index=False))


def ddvi_latents(out: Path, inputs: list, labels: list, title: str = "", progress: bool = True) -> None:
    from ..evaluate.figures import latent_scatter_figure

    latent_scatter_figure([Path(p) for p in inputs], labels, Path(out), title)


# --- slices and inputs ---------------------------------------------------------------------------------


def ddvi_data(config: dict, setting: str) -> tuple[str, dict]:
    """(prepared-data directory, the slice that built it) of a setting: images, or genotypes."""
    if setting == "cluster":
        g = config["ddvi"]["genotypes"]
        return f"{paths.GENOTYPES}/{g['source']}", {"genotypes": g}
    return data_dir(config, config["dataset"]), data_slice(config, config["dataset"])


def ddvi_data_dir(config: dict, wildcards) -> str:
    return ddvi_data(config, wildcards.setting)[0]


def ddvi_manifest(config: dict, wildcards) -> str:
    return f"{ddvi_data_dir(config, wildcards)}/manifest.json"


def ddvi_train_slice(config: dict, setting: str, prior: str, method: str, seed) -> dict:
    study = config["ddvi"]
    if method not in study["methods"]:
        raise ConfigError(f"ddvi: no method {method!r} under ddvi.methods; defined: {', '.join(study['methods'])}")
    d, upstream = ddvi_data(config, setting)
    out = {"setting": setting, "dataset": d.split(paths.DATA.format(dataset=""), 1)[1],
           "likelihood": "gaussian" if setting == "cluster" else "bce", "method": ddvi_method(study, method, setting),
           "nets": study["nets"], "train": {**study["train"], "seed": int(seed)}, "data": upstream}
    if setting == "cluster":
        out["prior"] = {"name": "mixture", **study["settings"]["cluster"]}
    else:
        if prior not in study["priors"]:
            raise ConfigError(f"ddvi: unknown prior {prior!r}; known: {', '.join(study['priors'])}")
        out["prior"] = {"name": prior, "params": study["priors"][prior]}
        out["kde"] = study["kde"]
    if setting == "semi":
        out["semi"] = {k: v for k, v in study["settings"]["semi"].items() if k != "priors"}
    # Its values are already in the method and prior above (config resolution applied them); its name is read
    # here so that DVC's stage tracks the switch in params.yaml (jobs/dvc.py), and kept where it is not the default.
    if (recipe := study.get("recipe", "paper")) != "paper":
        out["recipe"] = recipe
    return out


# A DDVI job's slice is its cache key (Snakemake's params trigger). The slice format is versioned: version 1
# had no key for the options below, which it implied at these values. Version 2 writes such a key only where its
# value differs from the implied one, so a model trained under version 1 keeps its key and is not retrained,
# while a setting that changes what is trained reruns it. ``nets.arch`` never enters the clustering setting's
# slice: genotype features are no images, and App. E's genotype networks are MLPs whatever is configured.
SLICE_VERSION = 2
IMPLIED_BY_V1 = {"method": {"chain_weight": None, "pretrain_examples": 0},
                 "prior_params": {"form": "marsland", "noise_dir": "isotropic"}, "nets": {"arch": "mlp"}}


def ddvi_job_slice(config: dict, setting: str, prior: str, method: str, seed) -> dict:
    out = ddvi_train_slice(config, setting, prior, method, seed)
    out["method"] = {k: v for k, v in out["method"].items() if IMPLIED_BY_V1["method"].get(k, ...) != v}
    if "arch" in out["nets"]:
        out["nets"] = {k: v for k, v in out["nets"].items()
                       if not (k == "arch" and (setting == "cluster" or IMPLIED_BY_V1["nets"]["arch"] == v))}
    if "params" in out["prior"]:
        out["prior"] = {**out["prior"], "params": {k: v for k, v in out["prior"]["params"].items()
                                                   if IMPLIED_BY_V1["prior_params"].get(k, ...) != v}}
    return out


def ddvi_train_cfg(config: dict, wildcards) -> str:
    w = wildcards
    return as_json(ddvi_job_slice(config, w.setting, w.prior, w.method, w.seed))


def ddvi_eval_cfg(config: dict, wildcards) -> str:
    w = wildcards
    return as_json({**ddvi_job_slice(config, w.setting, w.prior, w.method, w.seed), "eval": config["ddvi"]["eval"]})


def ddvi_priors(config: dict, setting: str) -> list[str]:
    return ["mixture"] if setting == "cluster" else config["ddvi"]["settings"][setting]["priors"]


def ddvi_table_runs(config: dict, wildcards) -> list[str]:
    setting = SETTING_OF_TABLE[wildcards.table]
    study = config["ddvi"]
    return [f"results/ddvi/runs/{setting}/{p}/{m}/seed{s}.json" for p in ddvi_priors(config, setting)
            for m in study["tables"][wildcards.table] for s in study["seeds"]]


def ddvi_table_cfg(config: dict, wildcards) -> str:
    study = config["ddvi"]
    names = study["tables"][wildcards.table]
    return as_json({"methods": names, "priors": ddvi_priors(config, SETTING_OF_TABLE[wildcards.table]),
                    "seeds": study["seeds"], "labels": {m: study["methods"][m].get("label", m) for m in names}})


def ddvi_latent_rows(config: dict, setting: str) -> list[tuple[str, str]]:
    """(prior, method) of every row of the setting's table, prior by prior."""
    table = next(t for t, s in SETTING_OF_TABLE.items() if s == setting)  # table1, not table8
    return [(p, m) for p in ddvi_priors(config, setting) for m in config["ddvi"]["tables"][table]]


def ddvi_latent_inputs(config: dict, wildcards) -> list[str]:
    """The first seed's test codes of every row."""
    seed, s = config["ddvi"]["seeds"][0], wildcards.setting
    return [f"results/ddvi/runs/{s}/{p}/{m}/seed{seed}.npz" for p, m in ddvi_latent_rows(config, s)]


def ddvi_latent_labels(config: dict, wildcards) -> str:
    methods, s = config["ddvi"]["methods"], wildcards.setting
    return " ".join(shlex.quote(methods[m].get("label", m) + ("" if s == "cluster" else f" / {p}"))
                    for p, m in ddvi_latent_rows(config, s))


def ddvi_latent_title(config: dict, wildcards) -> str:
    return LATENT_TITLES[wildcards.setting]


def ddvi_outputs(config: dict) -> list[str]:
    """Everything the study produces (its `all` target, and what the report shows of it)."""
    return ([f"results/ddvi/{t}.csv" for t in ("table1", "table2", "table3", "table8", "table5")]
            + [f"results/ddvi/latents_{s}.png" for s in ("unsup", "semi", "cluster")] + ["results/ddvi/table5.png"])
