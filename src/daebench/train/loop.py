"""``train_phase``: the training loop every method and phase runs through, in sections (the package header,
train/__init__.py, says what it guarantees): execution settings (``_execution``); the stages, frozen networks,
EMA and optimizers (``_build``); the previous phase and the resume file (``_carry_over``, ``_resume``); data and
DDP (``_batches``, ``_wrap``); the step loop (``_train_step``, then ``_after_step``: finite check, log point,
checkpoint); the final checkpoint (``_finish``)."""
from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import compute as compute_mod
from ..checkpoint import atomic_save, load_checkpoint, resolve_device
from ..data.transforms import UInt8Images
from ..methods.objective import LossFn, Objective, Stage
from ..progress import tqdm
from .batches import Batches, place_data, step_batch
from .stages import StepModule, as_stages, load_optimizer_state, stage_optimizers

log = logging.getLogger("daebench.train")  # one logger for the training loop, whichever module logs

Logger = Callable[[dict[str, float], int], None]

__all__ = ["Logger", "NonFiniteLoss", "ema_update", "num_params", "train_phase"]


def _step_seed(seed: int, phase_index: int, step: int) -> int:
    return (seed * 1_000_003 + phase_index * 10_007 + step) % (2**63 - 1)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    # Warm-up of the decay (as in many DDPM codebases) so short runs are not dominated by init.
    # ema <- ema + (1 - d) (model - ema), every parameter in one fused multi-tensor call; buffers are copied.
    d = min(decay, (1 + step) / (10 + step))
    ema_params, model_params = list(ema.parameters()), list(model.parameters())
    if len(ema_params) != len(model_params):
        raise ValueError(f"ema_update: the EMA has {len(ema_params)} parameters, the model {len(model_params)}")
    if ema_params:
        torch._foreach_lerp_(ema_params, model_params, 1 - d)
    ema_buffers, model_buffers = list(ema.buffers()), list(model.buffers())
    if ema_buffers:
        torch._foreach_copy_(ema_buffers, model_buffers)


def _rank_seed(seed: int, rank: int) -> int:
    return (seed + rank * 7_777_777_777) % (2**63 - 1)


class NonFiniteLoss(FloatingPointError):
    pass


def _f32(v: torch.Tensor) -> torch.Tensor:
    # terms computed under bf16 autocast are reduced in float32; float64 (tests) stays float64
    return v.float() if v.dtype in (torch.float16, torch.bfloat16) else v


# --- the sections of train_phase ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Exec:
    """Where the steps run: the device, this process's place in a torchrun job, compute.py's settings there."""
    device: torch.device
    dist: compute_mod.Dist
    eff: dict


@dataclass(frozen=True)
class _Phase:
    """What the caller asked of this phase (train_phase's arguments)."""
    steps: int
    index: int
    offset: int
    train_cfg: dict
    ckpt_path: Path
    out_path: Path
    cfg_json: str
    extra: dict | None
    logger: Logger | None
    t_start: float = field(default_factory=time.time)  # this attempt's start (checkpoints keep train_seconds)


@dataclass
class _Loop:
    """The training state the sections share: networks, one Adam per stage, and where training stands."""
    model: nn.Module
    ema: nn.Module
    stages: list[Stage]
    opts: list[torch.optim.Optimizer]
    trainable: tuple[str, ...] | None
    frozen: list[nn.Module]
    on_progress: Callable[[float], None] | None
    start: int = 0                 # the first step this process runs (after a resume)
    last_saved: int | None = None  # step of the resumable checkpoint on disk
    seconds_before: float = 0.0    # wall time of the attempts before a resume (from the resumed checkpoint)

    def trainable_list(self) -> list[str] | None:
        """``trainable`` as checkpoints store and compare it."""
        return list(self.trainable) if self.trainable is not None else None


@dataclass
class _Meter:
    """Loss sums since the last log point and, per term, the first step it was non-finite (-1: none so far),
    both kept on the device so a step needs no host sync; the progress bar and the clocks of the log points."""
    bar: tqdm
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    first_bad: dict[str, torch.Tensor] = field(default_factory=dict)
    count: int = 0
    t0: float = field(default_factory=time.time)       # start of the current log interval
    started: float = field(default_factory=time.time)  # for the ETA: a resumed job restarts the clock

    def add(self, terms: dict[str, torch.Tensor], step: int, weight: float = 1.0) -> None:
        """``weight``: 1 / repeats of a repeated stage, so its terms log as their mean over the repeats."""
        for k, v in terms.items():
            v = _f32(v.detach())
            self.sums[k] = self.sums.get(k, 0.0) + weight * v.mean()
            bad = self.first_bad.get(k, torch.full((), -1, dtype=torch.long, device=v.device))
            self.first_bad[k] = torch.where((bad < 0) & ~torch.isfinite(v).all(), step, bad)


def _execution(train_cfg: dict, compute: dict | None) -> _Exec:
    """The training device (this rank's GPU under torchrun), the process group and the compute settings."""
    device = resolve_device(train_cfg["device"])
    dist = compute_mod.dist_info()
    if device.type == "cuda" and dist.distributed:
        device = torch.device("cuda", dist.local_rank)
    eff = compute_mod.effective(compute or compute_mod.DEFAULTS, device)
    compute_mod.init_distributed(device)
    if device.type == "cuda":
        compute_mod.set_tf32(eff["tf32"])
    return _Exec(device, dist, eff)


def _build(model: nn.Module, loss_fn, lr: float, ex: _Exec) -> _Loop:
    """The stages of the loss; the networks on the device with the untrained ones frozen; the EMA; the Adams."""
    stages, trainable, on_progress = as_stages(loss_fn)
    model.to(ex.device, memory_format=torch.channels_last if ex.eff["channels_last"] else torch.preserve_format)
    frozen = [m for name, m in model.named_children() if trainable is not None and name not in trainable]
    for m in frozen:
        m.requires_grad_(False)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    return _Loop(model, ema, stages, stage_optimizers(model, stages, lr), trainable, frozen, on_progress)


def _load_carried(model: nn.Module, state: dict) -> None:
    """Load the previous phase's weights; a child module the previous phase did not have (ScoreVAE+'s
    corrector) keeps its fresh initialisation. Anything else missing or unexpected is an error."""
    have = {k.split(".", 1)[0] for k in state}
    res = model.load_state_dict(state, strict=False)
    missing = [k for k in res.missing_keys if k.split(".", 1)[0] in have]
    if missing or res.unexpected_keys:
        raise RuntimeError(f"the previous phase's checkpoint does not fit this model: missing {missing[:5]}, "
                           f"unexpected {res.unexpected_keys[:5]}")


def _carry_over(loop: _Loop, init: dict) -> None:
    """Start from the previous phase's final checkpoint: model and EMA weights, and Adam's moments."""
    _load_carried(loop.model, init["model"])
    _load_carried(loop.ema, init["ema"])
    # Adam's moments carry over only when this phase trains the same parameters as the last one.
    if init.get("trainable") == loop.trainable_list():
        load_optimizer_state(loop.opts, init["optimizer"])


def _resume(loop: _Loop, ph: _Phase) -> None:
    """Continue from the resumable checkpoint if it was written with this phase's configuration."""
    if not ph.ckpt_path.exists():
        return
    ck = load_checkpoint(ph.ckpt_path)
    if ck.get("config_json") != ph.cfg_json:
        log.warning("ignoring %s: it was written with a different configuration", ph.ckpt_path)
        return
    loop.model.load_state_dict(ck["model"])
    loop.ema.load_state_dict(ck["ema"])
    load_optimizer_state(loop.opts, ck["optimizer"])
    loop.start = loop.last_saved = int(ck["step"])
    loop.seconds_before = float(ck.get("train_seconds", 0.0))
    log.info("resumed from %s at step %d/%d", ph.ckpt_path, loop.start, ph.steps)


def _frozen_from_ema(loop: _Loop) -> None:
    # A frozen network is used as evaluation will use it: with its EMA weights (the EMA then stays put).
    ema_children = dict(loop.ema.named_children())
    for name, m in loop.model.named_children():
        if m in loop.frozen:
            m.load_state_dict(ema_children[name].state_dict())


def _batches(images, train_cfg: dict, phase_index: int, ex: _Exec) -> Batches:
    bs, world = train_cfg["batch_size"], ex.dist.world_size
    if bs % world:
        raise ValueError(f"train.batch_size {bs} (the global batch) does not split evenly over "
                         f"{world} processes (compute.nproc); make it a multiple")
    shard = slice(ex.dist.rank * bs // world, (ex.dist.rank + 1) * bs // world)
    return Batches(place_data(images, ex.device, ex.eff["data_on_device"]), isinstance(images, tuple), bs, shard,
                    train_cfg["seed"] + 1000 * phase_index, ex.device, ex.eff["channels_last"])


def _wrap(loop: _Loop, ex: _Exec) -> nn.Module:
    """The module every stage's forward runs through (compiled networks, DDP under torchrun); the networks are
    then put in training mode, the frozen ones in eval mode."""
    if ex.eff["compile"]:
        for m in loop.model.children():
            m.compile()  # in place: parameter names (and so checkpoints) stay as they are
    step_module = StepModule(loop.model, [st.fn for st in loop.stages])
    if ex.dist.distributed:
        from torch.nn.parallel import DistributedDataParallel

        # Each stage of a multi-stage loss leaves the other stages' networks without gradients; one-stage
        # losses use every trainable parameter (checked for every image family), which keeps DDP's fast path.
        step_module = DistributedDataParallel(step_module, device_ids=[ex.device.index] if ex.device.type == "cuda"
                                              else None, find_unused_parameters=len(loop.stages) > 1)
    loop.model.train()
    for m in loop.frozen:
        m.eval()
    return step_module


def _lr(train_cfg: dict, gstep: int) -> float:
    """Linear warm-up over ``warmup_examples`` (counted over all phases), then constant."""
    warmup_steps = train_cfg["warmup_examples"] / train_cfg["batch_size"]
    return train_cfg["lr"] * min(1.0, (gstep + 1) / warmup_steps) if warmup_steps > 0 else train_cfg["lr"]


def _train_step(loop: _Loop, step_module: nn.Module, batches: Batches, meter: _Meter, ph: _Phase, ex: _Exec,
                step: int) -> float:
    """One step: learning rate, the step's seeds and batch, each stage's forward, backward and Adam update,
    the EMA. Returns the learning rate."""
    gstep = ph.offset + step
    lr = _lr(ph.train_cfg, gstep)
    for opt in loop.opts:
        for group in opt.param_groups:
            group["lr"] = lr
    if loop.on_progress is not None:
        loop.on_progress(step / max(ph.steps, 1))
    s = _step_seed(ph.train_cfg["seed"], ph.index, step)
    torch.manual_seed(_rank_seed(s, ex.dist.rank))  # dropout
    gen = torch.Generator().manual_seed(_rank_seed(s + 1, ex.dist.rank))
    x0 = step_batch(batches, step)
    amp_dtype = compute_mod.AMP_DTYPES[ex.eff["amp"]]
    for i, opt in enumerate(loop.opts):
        for _ in range(loop.stages[i].repeat):
            with torch.autocast(ex.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                terms = step_module(i, x0, gen)
            loss = sum(_f32(v).mean() for v in terms.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip := ph.train_cfg.get("grad_clip"):  # the global norm over this stage's parameters (ScoreVAE's release: 1)
                torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], clip)
            opt.step()
            meter.add(terms, step, 1.0 / loop.stages[i].repeat)
    if ex.dist.is_main:
        ema_update(loop.ema, loop.model, ph.train_cfg["ema_decay"], gstep)
    meter.count += 1
    return lr


def _check_finite(meter: _Meter, loop: _Loop, ph: _Phase, ex: _Exec) -> None:
    """Stop (on every rank) if a term was non-finite since the last check."""
    if not meter.first_bad:
        return
    names = list(meter.first_bad)
    at = torch.stack([meter.first_bad[k] for k in names]).to(torch.float64)
    at = torch.where(at < 0, torch.full_like(at, float("inf")), at)
    if ex.dist.distributed:
        import torch.distributed as tdist

        tdist.all_reduce(at, op=tdist.ReduceOp.MIN)
    at = at.tolist()
    bad_step = min(at)
    if bad_step == float("inf"):
        return
    terms = [k for k, s in zip(names, at) if s == bad_step]
    kept = (f"the last good checkpoint, {ph.ckpt_path} (step {loop.last_saved}), is kept"
            if loop.last_saved is not None else "no checkpoint was written yet")
    raise NonFiniteLoss(f"non-finite loss at step {int(bad_step)} of phase {ph.index} (term(s): "
                        f"{', '.join(terms)}); training stopped and {kept}. Lower train.lr or check the data.")


def _log_point(meter: _Meter, loop: _Loop, ph: _Phase, ex: _Exec, lr: float, done: int) -> None:
    """Mean of each term since the last log point (over all ranks), throughput, progress and ETA."""
    keys = sorted(meter.sums)
    totals = torch.stack([meter.sums[k] for k in keys]) / meter.count
    if ex.dist.distributed:
        import torch.distributed as tdist

        tdist.all_reduce(totals)
        totals /= ex.dist.world_size
    means = {f"loss/{k}": v for k, v in zip(keys, totals.tolist())}
    means["lr"] = lr
    means["examples_per_s"] = meter.count * ph.train_cfg["batch_size"] / max(time.time() - meter.t0, 1e-9)
    # where a long job stands, for the MLflow UI: fraction of this phase done, seconds left at the
    # rate since this process started
    means["progress"] = done / ph.steps
    means["eta_seconds"] = (ph.steps - done) * (time.time() - meter.started) / max(done - loop.start, 1)
    shown = {k.split('/')[-1]: f"{v:.4g}" for k, v in means.items() if k.startswith("loss")}
    shown.update(lr=f"{lr:.3g}", ex_s=f"{means['examples_per_s']:.0f}")  # step/total and ETA: the bar's own
    meter.bar.set_postfix(shown, refresh=False)  # shown with the next redraw: one line per log point in a log file
    if ph.logger and ex.dist.is_main:
        ph.logger(means, ph.offset + done)
    meter.sums, meter.count, meter.t0 = {}, 0, time.time()


def _snapshot(loop: _Loop, ph: _Phase, step: int) -> dict:
    return {"model": loop.model.state_dict(), "ema": loop.ema.state_dict(),
            "optimizer": [opt.state_dict() for opt in loop.opts], "step": step, "config_json": ph.cfg_json,
            "trainable": loop.trainable_list(), "train_seconds": loop.seconds_before + time.time() - ph.t_start,
            **(ph.extra or {})}


def _after_step(meter: _Meter, loop: _Loop, ph: _Phase, ex: _Exec, lr: float, done: int) -> None:
    """After ``done`` steps: the finite check before any log point or checkpoint, then each that is due."""
    save = done % ph.train_cfg["checkpoint_every"] == 0 and done < ph.steps
    log_now = done % ph.train_cfg["log_every"] == 0 or done == ph.steps
    if log_now or save:
        _check_finite(meter, loop, ph, ex)
    if log_now:
        _log_point(meter, loop, ph, ex, lr, done)
    if save and ex.dist.is_main:
        atomic_save(_snapshot(loop, ph, done), ph.ckpt_path)
        loop.last_saved = done


def _finish(loop: _Loop, ph: _Phase, ex: _Exec, remove_resume: bool) -> dict:
    """The final checkpoint, written by rank 0, which then removes the resumable one unless the caller will
    (after its own closing work, so a kill during that work still finds something to resume from)."""
    final = _snapshot(loop, ph, ph.steps)
    if ex.dist.is_main:
        atomic_save(final, ph.out_path)
        if remove_resume:
            ph.ckpt_path.unlink(missing_ok=True)
    return final


def train_phase(model: nn.Module, loss_fn: LossFn | Objective, images: torch.Tensor | UInt8Images | tuple, *,
                steps: int, phase_index: int, train_cfg: dict, ckpt_path: Path, out_path: Path, config: dict,
                init: dict | None = None, logger: Logger | None = None, step_offset: int = 0, progress: bool = True,
                extra: dict | None = None, compute: dict | None = None, name: str | None = None,
                remove_resume: bool = True) -> dict:
    """Train ``model`` for ``steps`` steps of this phase and write the final checkpoint to ``out_path``.

    ``loss_fn``: a callable of unreduced terms or an ``Objective`` (package header). ``images``: a tensor, a
    ``data.UInt8Images`` (uint8 NHWC, possibly memory-mapped: batches are gathered as uint8 and converted to
    float on the training device, equal to training on ``to_tensor`` of the same images), or a tuple of
    them sliced together (data and labels), which the loss then receives as a tuple.
    ``init``: the previous phase's final checkpoint (model, EMA and optimizer state carry over).
    ``ckpt_path``: resumable checkpoint; if it exists with the same config hash, training resumes.
    ``step_offset``: global step at the start of this phase (LR warm-up and EMA run over all phases).
    ``extra``: small JSON-able values stored in every checkpoint (e.g. the MLflow run id to resume).
    ``compute``: execution settings (compute.DEFAULTS; GPU fast paths apply on CUDA only). Under torchrun the
    processes train one model with DDP. ``name``: what the progress lines call the run (the job's
    ``<method>/<phase>``, as params.yaml names the phase), else "phase <index>". ``remove_resume``: delete the
    resumable checkpoint once the final one is written (False: the caller does, when its job is done).
    Returns the final checkpoint dict.
    """
    ex = _execution(train_cfg, compute)
    loop = _build(model, loss_fn, train_cfg["lr"], ex)
    # The resolved config travels in every checkpoint; a resume file from another config is ignored.
    ph = _Phase(steps, phase_index, step_offset, train_cfg, ckpt_path, out_path, json.dumps(config, sort_keys=True),
                extra, logger)
    if init is not None:
        _carry_over(loop, init)
    _resume(loop, ph)
    _frozen_from_ema(loop)
    batches = _batches(images, train_cfg, phase_index, ex)
    step_module = _wrap(loop, ex)
    meter = _Meter(tqdm(range(loop.start, steps), initial=loop.start, total=steps, desc=f"train {name or f'phase {phase_index}'}",
                        disable=not progress or not ex.dist.is_main, mininterval=2.0, log_every=train_cfg["log_every"]))
    for step in meter.bar:
        lr = _train_step(loop, step_module, batches, meter, ph, ex, step)
        _after_step(meter, loop, ph, ex, lr, step + 1)
    return _finish(loop, ph, ex, remove_resume)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


