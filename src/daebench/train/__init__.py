"""One training loop for every method and phase: Adam with linear warm-up, EMA weights,
atomic resumable checkpoints, per-term loss logging, DDP and the GPU fast paths (compute.py).

The loss (methods/objective.py, read only by ``as_stages``) is either a plain callable
``loss(model, batch, generator) -> {name: unreduced term}``, trained as one stage: one Adam over every
trainable parameter; or a ``methods.objective.Objective`` with ``stages`` (a list of ``Stage(name, fn,
modules)``: several updates per batch, each stepping its own Adam over its child modules, for wake-sleep and
adversarial training), ``trainable`` (the child modules this phase trains, None: all; the others are frozen:
no gradients, eval mode, so a frozen network's dropout stays off) and ``set_progress(fraction)`` (hears how
far training has got, for schedules inside the loss). A checkpoint holds one Adam state per stage, a list; a
single dict, the form in which one-stage checkpoints on disk may hold their one state, loads as that state.

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

Modules: loop.py (``train_phase`` and its sections), stages.py (the loss contract and one Adam per stage),
batches.py (each step's examples and where the data lives).
"""
from .batches import batch_indices
from .loop import Logger, NonFiniteLoss, ema_update, num_params, train_phase
from .stages import as_stages, load_optimizer_state

__all__ = ["Logger", "NonFiniteLoss", "as_stages", "batch_indices", "ema_update", "load_optimizer_state",
           "num_params", "train_phase"]
