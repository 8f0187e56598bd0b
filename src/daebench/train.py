"""One training loop for every method and phase: Adam with linear warm-up, EMA weights,
atomic resumable checkpoints, per-term loss logging, DDP and the GPU fast paths (compute.py).

Resumption is exact on CPU: the data order and every random draw of step k are functions of
(seed, phase, k) alone (a fresh generator per step), so a run resumed from a checkpoint at step
k replays steps k+1... exactly as an uninterrupted run would.

Under torchrun (WORLD_SIZE > 1) ``train.batch_size`` is the global batch: each step's examples are
the same as in one process, split into equal contiguous shards, and DDP averages the gradients, so
the update equals the one-process update up to the noise each rank draws for its shard (rank 0 draws
what one process would draw for those examples). Only rank 0 keeps the EMA, logs and writes files.

A non-finite term is detected without a host sync per step: the first step at which each term was
non-finite is tracked on the device and checked before every checkpoint and log point, so a bad
update never reaches a checkpoint; the job stops naming the step and the terms.
"""
from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import compute as compute_mod
from .data.store import atomic_path
from .data.transforms import UInt8Images

log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, torch.Tensor, torch.Generator], dict[str, torch.Tensor]]


def resolve_device(name: str, setting: str = "train.device") -> torch.device:
    """auto | cpu | cuda -> a device; ``setting`` names where the choice came from, for the error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{setting} is 'cuda' but no CUDA device is visible; use auto or cpu")
    return torch.device(name)


def atomic_save(obj: dict, path: Path) -> None:
    """torch.save to a temp file, fsync, then rename: a process killed mid-write (SIGKILL, OOM, preemption)
    leaves the previous file whole, and a node crash cannot leave a renamed but unwritten file. Temp files
    of writers killed earlier are removed."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)  # through a Python file: a full disk surfaces as an OSError (named by atomic_path)


class CorruptCheckpoint(RuntimeError):
    pass


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise CorruptCheckpoint(f"{path} is not a readable checkpoint (truncated or corrupted: {err}). Delete it "
                                "and rerun the job that writes it (Snakemake: --forcerun that rule)") from None


def _step_seed(seed: int, phase_index: int, step: int) -> int:
    return (seed * 1_000_003 + phase_index * 10_007 + step) % (2**63 - 1)


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Examples of global step ``step``: consecutive slices of seeded per-epoch permutations."""
    start = step * batch_size
    out = []
    while len(out) < batch_size:
        epoch, pos = divmod(start + len(out), n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        out.extend(perm[pos:pos + batch_size - len(out)].tolist())
    return torch.tensor(out)


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


def _load_carried(model: nn.Module, state: dict) -> None:
    """Load the previous phase's weights; a child module the previous phase did not have (ScoreVAE+'s
    corrector) keeps its fresh initialisation. Anything else missing or unexpected is an error."""
    have = {k.split(".", 1)[0] for k in state}
    res = model.load_state_dict(state, strict=False)
    missing = [k for k in res.missing_keys if k.split(".", 1)[0] in have]
    if missing or res.unexpected_keys:
        raise RuntimeError(f"the previous phase's checkpoint does not fit this model: missing {missing[:5]}, "
                           f"unexpected {res.unexpected_keys[:5]}")


def _stage_optimizers(model: nn.Module, stages, lr: float) -> list[torch.optim.Optimizer]:
    """One Adam per stage over the (unfrozen) parameters of the stage's modules (all when none named)."""
    children = dict(model.named_children())
    opts = []
    for st in stages:
        mods = [children[m] for m in st.modules] if st.modules else [model]
        opts.append(torch.optim.Adam([q for m in mods for q in m.parameters() if q.requires_grad], lr=lr,
                                     betas=(0.9, 0.999)))
    return opts


class _Step(nn.Module):
    """One loss (or stage) evaluation as a module call: DDP synchronises gradients of what runs inside
    a wrapped forward, and the losses call the networks' children directly."""

    def __init__(self, model: nn.Module, fns: list[LossFn]):
        super().__init__()
        self.model = model
        self.fns = tuple(fns)  # a tuple: a loss that is itself a Module is not registered as a child

    def forward(self, index: int, x, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self.fns[index](self.model, x, generator)


def _rank_seed(seed: int, rank: int) -> int:
    return (seed + rank * 7_777_777_777) % (2**63 - 1)


def _nbytes(source) -> int:
    return source.nbytes if isinstance(source, UInt8Images) else source.numel() * source.element_size()


def _place_data(images, device: torch.device, on_device) -> tuple:
    """The training sources batches are cut from: on the GPU when asked (``auto``: when the set takes under a
    quarter of free memory), else on the host. A float tensor left on the host is pinned so copies overlap
    compute; a uint8 set (UInt8Images, counted at its uint8 size) stays as it is, since pinning would read a
    memory-mapped set whole: each batch is pinned on its way instead (``_take``)."""
    sources = images if isinstance(images, tuple) else (images,)
    if device.type != "cuda":
        return sources
    if on_device == "auto":
        free, _ = torch.cuda.mem_get_info(device)
        on_device = sum(_nbytes(t) for t in sources) < free / 4
    if on_device:
        return tuple(t.to(device) for t in sources)
    return tuple(t if isinstance(t, UInt8Images) else t.pin_memory() for t in sources)


def _take(source, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rows ``idx`` of one training source on ``device``; a uint8 set is gathered as uint8 and converted to
    float in [-1, 1] on the device, so only the batch ever exists as float."""
    if isinstance(source, UInt8Images):
        return source.batch(idx, device, pin=device.type == "cuda" and source.device.type == "cpu")
    return source[idx.to(source.device)].to(device, non_blocking=True)


class NonFiniteLoss(FloatingPointError):
    pass


def _f32(v: torch.Tensor) -> torch.Tensor:
    # terms computed under bf16 autocast are reduced in float32; float64 (tests) stays float64
    return v.float() if v.dtype in (torch.float16, torch.bfloat16) else v


def train_phase(model: nn.Module, loss_fn: LossFn, images: torch.Tensor | UInt8Images | tuple, *, steps: int,
                phase_index: int, train_cfg: dict, ckpt_path: Path, out_path: Path, config: dict, init: dict | None = None,
                logger: Callable[[dict[str, float], int], None] | None = None, step_offset: int = 0,
                progress: bool = True, extra: dict | None = None, compute: dict | None = None) -> dict:
    """Train ``model`` for ``steps`` steps of this phase and write the final checkpoint to ``out_path``.

    ``init``: the previous phase's final checkpoint (model, EMA and optimizer state carry over).
    ``ckpt_path``: resumable checkpoint; if it exists with the same config hash, training resumes.
    ``step_offset``: global step at the start of this phase (LR warm-up and EMA run over all phases).
    ``extra``: small JSON-able values stored in every checkpoint (e.g. the MLflow run id to resume).
    ``compute``: execution settings (compute.DEFAULTS; GPU fast paths apply on CUDA only). Under torchrun the
    processes train one model with DDP.
    ``loss_fn.trainable`` (optional): names of the child modules this phase trains; the others are
    frozen (no gradients, eval mode, so a frozen network's dropout stays off).
    ``loss_fn.stages`` (optional): several updates per batch, each ``stage.fn(model, batch, generator)``
    stepping its own Adam over ``stage.modules`` (wake-sleep, adversarial training); ``images`` may then be
    a tuple of tensors sliced together (data and labels). ``images`` (or a member of the tuple) may be a
    ``data.UInt8Images`` (uint8 NHWC, possibly memory-mapped): batches are then gathered as uint8 and
    converted to float on the training device, equal to training on ``to_tensor`` of the same images.
    ``loss_fn.set_progress(fraction)`` (optional) hears how far training has got, for schedules inside the loss.
    Returns the final checkpoint dict.
    """
    device = resolve_device(train_cfg["device"])
    dist = compute_mod.dist_info()
    if device.type == "cuda" and dist.distributed:
        device = torch.device("cuda", dist.local_rank)
    eff = compute_mod.effective(compute or compute_mod.DEFAULTS, device)
    compute_mod.init_distributed(device)
    if device.type == "cuda":
        compute_mod.set_tf32(eff["tf32"])
    fmt = torch.channels_last if eff["channels_last"] else torch.preserve_format
    model.to(device, memory_format=fmt)
    trainable = getattr(loss_fn, "trainable", None)
    frozen = [m for name, m in model.named_children() if trainable is not None and name not in trainable]
    for m in frozen:
        m.requires_grad_(False)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    stages = getattr(loss_fn, "stages", None)
    if stages is None:
        opts = [torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=train_cfg["lr"],
                                 betas=(0.9, 0.999))]
        step_fns = [loss_fn]
    else:
        opts = _stage_optimizers(model, stages, train_cfg["lr"])
        step_fns = [st.fn for st in stages]

    def opt_state():
        return opts[0].state_dict() if len(opts) == 1 else [o.state_dict() for o in opts]

    def load_opt_state(state):
        for o, st in zip(opts, [state] if len(opts) == 1 else state):
            o.load_state_dict(st)
    # The resolved config travels in every checkpoint; a resume file from another config is ignored.
    cfg_json = json.dumps(config, sort_keys=True)
    start, last_saved = 0, None
    if init is not None:
        _load_carried(model, init["model"])
        _load_carried(ema, init["ema"])
        # Adam's moments carry over only when this phase trains the same parameters as the last one.
        if init.get("trainable") == (list(trainable) if trainable is not None else None):
            load_opt_state(init["optimizer"])
    if ckpt_path.exists():
        ck = load_checkpoint(ckpt_path)
        if ck.get("config_json") == cfg_json:
            model.load_state_dict(ck["model"])
            ema.load_state_dict(ck["ema"])
            load_opt_state(ck["optimizer"])
            start = last_saved = int(ck["step"])
            log.info("resumed from %s at step %d/%d", ckpt_path, start, steps)
        else:
            log.warning("ignoring %s: it was written with a different configuration", ckpt_path)
    # A frozen network is used as evaluation will use it: with its EMA weights (the EMA then stays put).
    ema_children = dict(ema.named_children())
    for name, m in model.named_children():
        if m in frozen:
            m.load_state_dict(ema_children[name].state_dict())
    bs, seed = train_cfg["batch_size"], train_cfg["seed"]
    if bs % dist.world_size:
        raise ValueError(f"train.batch_size {bs} (the global batch) does not split evenly over "
                         f"{dist.world_size} processes (compute.nproc); make it a multiple")
    shard = slice(dist.rank * bs // dist.world_size, (dist.rank + 1) * bs // dist.world_size)
    warmup_steps = train_cfg["warmup_examples"] / bs
    data = _place_data(images, device, eff["data_on_device"])
    n = len(data[0])
    if eff["compile"]:
        for m in model.children():
            m.compile()  # in place: parameter names (and so checkpoints) stay as they are
    step_module = _Step(model, step_fns)
    if dist.distributed:
        from torch.nn.parallel import DistributedDataParallel

        # Each stage of a multi-stage loss leaves the other stages' networks without gradients; one-stage
        # losses use every trainable parameter (checked for every image family), which keeps DDP's fast path.
        step_module = DistributedDataParallel(step_module, device_ids=[device.index] if device.type == "cuda" else None,
                                              find_unused_parameters=len(step_fns) > 1)
    amp_dtype = compute_mod.AMP_DTYPES[eff["amp"]]
    model.train()
    for m in frozen:
        m.eval()
    sums: dict[str, torch.Tensor] = {}
    first_bad: dict[str, torch.Tensor] = {}
    count, t0 = 0, time.time()

    def snapshot(step: int) -> dict:
        return {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt_state(),
                "step": step, "config_json": cfg_json, "trainable": list(trainable) if trainable is not None else None,
                **(extra or {})}

    def check_finite() -> None:
        """Stop (on every rank) if a term was non-finite since the last check."""
        if not first_bad:
            return
        names = list(first_bad)
        at = torch.stack([first_bad[k] for k in names]).to(torch.float64)
        at = torch.where(at < 0, torch.full_like(at, float("inf")), at)
        if dist.distributed:
            import torch.distributed as tdist

            tdist.all_reduce(at, op=tdist.ReduceOp.MIN)
        at = at.tolist()
        bad_step = min(at)
        if bad_step == float("inf"):
            return
        terms = [k for k, s in zip(names, at) if s == bad_step]
        kept = (f"the last good checkpoint, {ckpt_path} (step {last_saved}), is kept" if last_saved is not None
                else "no checkpoint was written yet")
        raise NonFiniteLoss(f"non-finite loss at step {int(bad_step)} of phase {phase_index} (term(s): "
                            f"{', '.join(terms)}); training stopped and {kept}. Lower train.lr or check the data.")

    bar = tqdm(range(start, steps), initial=start, total=steps, desc=f"train phase {phase_index}",
               disable=not progress or not dist.is_main, mininterval=2.0)
    t_start = time.time()  # for the ETA: the rate of this process (a resumed job restarts the clock)
    for step in bar:
        gstep = step_offset + step
        lr = train_cfg["lr"] * min(1.0, (gstep + 1) / warmup_steps) if warmup_steps > 0 else train_cfg["lr"]
        for opt in opts:
            for group in opt.param_groups:
                group["lr"] = lr
        if hasattr(loss_fn, "set_progress"):
            loss_fn.set_progress(step / max(steps, 1))
        s = _step_seed(seed, phase_index, step)
        torch.manual_seed(_rank_seed(s, dist.rank))  # dropout
        gen = torch.Generator().manual_seed(_rank_seed(s + 1, dist.rank))
        idx = batch_indices(n, bs, step, seed + 1000 * phase_index)[shard]
        x0 = tuple(_take(t, idx, device) for t in data)
        if eff["channels_last"]:
            x0 = tuple(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in x0)
        x0 = x0 if isinstance(images, tuple) else x0[0]
        for i, opt in enumerate(opts):
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                terms = step_module(i, x0, gen)
            loss = sum(_f32(v).mean() for v in terms.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for k, v in terms.items():
                v = _f32(v.detach())
                sums[k] = sums.get(k, 0.0) + v.mean()
                bad = first_bad.get(k, torch.full((), -1, dtype=torch.long, device=v.device))
                first_bad[k] = torch.where((bad < 0) & ~torch.isfinite(v).all(), step, bad)
        if dist.is_main:
            ema_update(ema, model, train_cfg["ema_decay"], gstep)
        count += 1
        done = step + 1
        save = done % train_cfg["checkpoint_every"] == 0 and done < steps
        if done % train_cfg["log_every"] == 0 or done == steps or save:
            check_finite()
        if done % train_cfg["log_every"] == 0 or done == steps:
            keys = sorted(sums)
            totals = torch.stack([sums[k] for k in keys]) / count
            if dist.distributed:
                import torch.distributed as tdist

                tdist.all_reduce(totals)
                totals /= dist.world_size
            means = {f"loss/{k}": v for k, v in zip(keys, totals.tolist())}
            means["lr"] = lr
            means["examples_per_s"] = count * bs / max(time.time() - t0, 1e-9)
            # where a long job stands, for the MLflow UI: fraction of this phase done, seconds left at the
            # rate since this process started
            means["progress"] = done / steps
            means["eta_seconds"] = (steps - done) * (time.time() - t_start) / max(done - start, 1)
            bar.set_postfix({k.split('/')[-1]: f"{v:.4g}" for k, v in means.items() if k.startswith("loss")})
            if logger and dist.is_main:
                logger(means, step_offset + done)
            sums, count, t0 = {}, 0, time.time()
        if save and dist.is_main:
            atomic_save(snapshot(done), ckpt_path)
            last_saved = done
    final = snapshot(steps)
    if dist.is_main:
        atomic_save(final, out_path)
        if ckpt_path.exists():
            ckpt_path.unlink()
    return final


def phase_steps(train_cfg: dict, phases: list[dict], index: int, examples: int | None = None) -> tuple[int, int]:
    """(steps of phase ``index``, global step at its start) from the method's training length
    (``examples``, default train.examples)."""
    total = (examples or train_cfg["examples"]) / train_cfg["batch_size"]
    bounds = np.round(np.cumsum([0.0] + [p["fraction"] for p in phases]) * total).astype(int)
    return int(bounds[index + 1] - bounds[index]), int(bounds[index])


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["CorruptCheckpoint", "NonFiniteLoss", "atomic_save", "batch_indices", "load_checkpoint", "num_params", "phase_steps",
           "resolve_device", "train_phase"]
