"""Training jobs. ``run_training`` is the one runner behind every training job (a DAE-family phase, the
latent prior, a DDVI model): it resumes the MLflow run of an interrupted attempt, logs the execution
settings and sizes, trains through ``train.train_phase``, and logs the final checkpoint. ``steps`` is its
one step formula. The family-specific jobs only build the model, the loss and the data.

Also here: the slices and paths of the phase-training rule (what the workflow passes, where models live)."""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import paths
from ..config import ConfigError, nets_keys
from .base import as_json, compute_settings
from .data import data_slice

log = logging.getLogger("daebench")


def steps(examples: int, batch_size: int, fractions=(1.0,), index: int = 0) -> tuple[int, int]:
    """(steps of phase ``index``, global step at its start): a method's training length in examples split
    over its phases by their fractions, rounded at the cumulative bounds so the phases add up exactly."""
    bounds = np.round(np.cumsum([0.0, *fractions]) * (examples / batch_size)).astype(int)
    return max(1, int(bounds[index + 1] - bounds[index])), int(bounds[index])


@dataclass
class TrainingJob:
    """One model to train, as a job gives it to ``run_training``."""
    name: str                 # MLflow run name, e.g. "dae_2phase_sc4/phase2"
    rule: str                 # the Snakemake rule (MLflow tag)
    dataset: str
    params: dict              # what the MLflow run logs as its parameters
    model: object             # torch.nn.Module
    loss: object              # a loss callable or a staged loss (train.train_phase)
    data: object              # training sources (a tensor, UInt8Images or a tuple)
    train_cfg: dict           # batch_size, lr, warmup_examples, ema_decay, checkpoint_every, log_every, seed, device
    config: dict              # stored in every checkpoint; a resume file from another config is ignored
    steps: int
    out: Path
    ckpt_path: Path
    registered_name: str      # MLflow model name of the final checkpoint
    phase_index: int = 0
    step_offset: int = 0
    init: dict | None = None  # the previous phase's final checkpoint
    before: Callable | None = field(default=None)  # before(run), on a fresh (not resumed) start


def run_training(job: TrainingJob, progress: bool = True) -> dict:
    from .. import compute
    from ..checkpoint import load_checkpoint
    from ..tracking import NullRun, start_run
    from ..train import num_params, train_phase

    run_id = None
    if job.ckpt_path.exists():  # continue the MLflow run of the interrupted attempt
        run_id = load_checkpoint(job.ckpt_path).get("mlflow_run_id") or None
    comp = compute_settings(job.train_cfg["device"])
    # Under torchrun only rank 0 logs the job (and writes its files, see train_phase).
    opened = start_run(name=job.name, rule=job.rule, dataset=job.dataset, params=job.params, run_id=run_id) \
        if compute.dist_info().is_main else contextlib.nullcontext(NullRun())
    with opened as run:
        if run_id is None:  # what ran, and the network's size, are params (the compare view filters on them)
            run.log_params({"compute": comp["effective"], "n_params": {n: num_params(m) for n, m in
                                                                       job.model.named_children()},
                            "phase_steps": job.steps})
        t0 = time.time()
        if job.before is not None and not job.ckpt_path.exists():
            job.before(run)
        final = train_phase(job.model, job.loss, job.data, steps=job.steps, phase_index=job.phase_index,
                            train_cfg=job.train_cfg, ckpt_path=job.ckpt_path, out_path=job.out, config=job.config,
                            init=job.init, logger=run.log_metrics, step_offset=job.step_offset, progress=progress,
                            extra={"mlflow_run_id": run.run_id}, compute=comp["settings"], name=job.name,
                            remove_resume=False)
        run.log_metrics({"train/seconds": time.time() - t0, "train/final_step": final["step"]})
        run.log_checkpoint(job.out, job.registered_name)
    # Only now: a kill while the run above was still logging (Snakemake then deletes the output) resumes
    # from this file instead of starting over.
    if compute.dist_info().is_main:
        job.ckpt_path.unlink(missing_ok=True)
    log.info("trained %s for %d steps -> %s (MLflow run %s)", job.name, job.steps, job.out, run.run_id)
    return final


def train(cfg: dict, data: Path, out: Path, method: str, phase_index: int, init: str | None = None,
          prior: str | None = None, checkpoint_dir: str = paths.CHECKPOINTS, progress: bool = True) -> None:
    """Phase ``phase_index`` of the DAE-family method named ``method`` (DAE, DBAE, ScoreVAE and its prior,
    DiffDecoder, VAE); ``cfg["method"]`` is its definition."""
    import torch

    from ..checkpoint import load_checkpoint
    from ..data import UInt8Images, load_split, read_manifest
    from ..methods import get_family

    m, i = cfg["method"], phase_index
    phase = m["phases"][i]
    cfg["data_shape"] = read_manifest(data)["image_shape"]
    # uint8 and memory-mapped: each batch's rows are read from the file and become float on the training
    # device, instead of the whole set held as float32 in host memory (4x its size on disk).
    images, _ = load_split(data, "train", mmap=True)
    fam = get_family(m["family"])
    h, _, c = cfg["data_shape"]
    torch.manual_seed(cfg["train"]["seed"])  # initial weights are part of what the seed fixes
    model = fam.build(cfg, c, h)
    if "prior" in m and i == 0 and not prior:
        raise SystemExit(f"method {method} builds on the frozen prior {m['prior']!r}: pass its checkpoint "
                         "with --prior (Snakemake does this for you)")
    if prior:  # a pretrained network this method builds on (ScoreVAE's unconditional diffusion model)
        fam.load_prior(model, load_checkpoint(Path(prior)))
    out = Path(out)
    n, offset = steps(m.get("examples") or cfg["train"]["examples"], cfg["train"]["batch_size"],
                      [p["fraction"] for p in m["phases"]], i)
    run_training(TrainingJob(
        name=f"{method}/{phase['name']}", rule="train", dataset=cfg["dataset"], params=cfg, model=model,
        loss=fam.phase_loss(m, phase), data=UInt8Images(images), train_cfg={**cfg["train"], **m.get("optim", {})},
        config=cfg, steps=n,
        out=out, ckpt_path=Path(checkpoint_dir) / f"{out.stem}.resume.pt",
        registered_name=f"{cfg['dataset']}-{method}-{phase['name']}", phase_index=i, step_offset=offset,
        init=load_checkpoint(Path(init)) if init else None), progress)


# --- slices and paths ------------------------------------------------------------------------------------


def phase_index(config: dict, method: str, phase: str) -> int:
    names = [p["name"] for p in config["methods"][method]["phases"]]
    if phase not in names:
        raise ConfigError(f"method {method!r} has no phase {phase!r}; its phases: {', '.join(names)}")
    return names.index(phase)


def model_path(config: dict, dataset: str, method: str, phase: str) -> str:
    """Where ``method``'s model after ``phase`` lives: the file of the first method (in params order) whose
    training up to that phase is the same, so an identical phase is one job. Two-phase Table 3 trains one
    phase 1 and four phase 2s from it; its "t = 1 only" row is that phase-1 model itself."""
    owner = shared_phase_owner(config, dataset, method, phase_index(config, method, phase))
    return paths.MODEL.format(dataset=dataset, method=owner, phase=phase)


def shared_phase_owner(config: dict, dataset: str, method: str, index: int) -> str:
    """The first method whose phases 0..``index`` train exactly as ``method``'s do (same slice, same phase
    names): its job trains them once for both."""
    mine = train_slice(config, dataset, method, index)
    name = config["methods"][method]["phases"][index]["name"]
    for other, m in config["methods"].items():
        if other == method:
            return method
        if (len(m["phases"]) > index and m["phases"][index]["name"] == name
                and train_slice(config, dataset, other, index) == mine):
            return other
    return method


def final_model(config: dict, wildcards) -> str:
    last = config["methods"][wildcards.method]["phases"][-1]["name"]
    return model_path(config, wildcards.dataset, wildcards.method, last)


def previous_phase(config: dict, wildcards) -> list | str:
    i = phase_index(config, wildcards.method, wildcards.phase)
    if i == 0:
        return []
    prev = config["methods"][wildcards.method]["phases"][i - 1]["name"]
    return model_path(config, wildcards.dataset, wildcards.method, prev)


# Method keys that never change what is trained: the table label, and the schedule DDIM samples with when no
# phase trains on one (a model trained at t = 1 only). Training slices leave them out, so the "t = 1 only"
# method shares the phase-1 job it evaluates; reconstruction slices put the sampling key back.
NOT_TRAINED = ("label", "sample_schedule")


def method_core(config: dict, method: str) -> dict:
    return {k: v for k, v in config["methods"][method].items() if k not in NOT_TRAINED}


def family(config: dict, method: str) -> str:
    return config["methods"][method]["family"]


def train_slice(config: dict, dataset: str, method: str, upto: int | None = None) -> dict:
    # A phase depends on its own and the earlier phases only (editing phase 2 keeps phase 1), on the
    # nets.* blocks its family builds (its Family's nets), and on its prior's training, if any.
    core = method_core(config, method)
    if upto is not None:
        core["phases"] = core["phases"][: upto + 1]
    out = {**data_slice(config, dataset), "method": core,
           "nets": {k: config["nets"][k] for k in nets_keys(core)}, "train": config["train"]}
    if "prior" in core:
        out["prior"] = train_slice(config, dataset, core["prior"])
    return out


def train_cfg(config: dict, wildcards) -> str:
    w = wildcards
    return as_json(train_slice(config, w.dataset, w.method, phase_index(config, w.method, w.phase)))


def train_priority(config: dict, wildcards) -> int:
    # Start long chains first: a model other trainings wait on (an early phase, a prior) is scheduled
    # before leaf trainings, so the chain prior -> encoder -> corrector is not left for last.
    methods = config["methods"]
    later = len(methods[wildcards.method]["phases"]) - 1 - phase_index(config, wildcards.method, wildcards.phase)
    return later + sum(len(m["phases"]) for m in methods.values() if m.get("prior") == wildcards.method)


def prior_model(config: dict, wildcards) -> list | str:
    # the frozen prior a method builds on (ScoreVAE), needed by its first phase only
    prior = config["methods"][wildcards.method].get("prior")
    if prior is None or phase_index(config, wildcards.method, wildcards.phase) > 0:
        return []
    last = config["methods"][prior]["phases"][-1]["name"]
    return model_path(config, wildcards.dataset, prior, last)


def train_init_args(config: dict, wildcards, input) -> str:
    # what the job starts from: the previous phase and/or a frozen prior (one param keeps the shell
    # command, and so Snakemake's code trigger, unchanged for the existing studies)
    return " ".join(([f"--init {input.init}"] if input.init else []) + ([f"--prior {input.prior}"] if input.prior else []))
