"""The loss contract as the training loop reads it (``as_stages``: methods/objective.py's only reader) and
the optimizers: one Adam per stage over its child modules, their state in checkpoints (one per stage), and the
module each stage's forward runs through (so DDP sees it)."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..compute import eager_optimizer
from ..methods.objective import LossFn, Objective, Stage

__all__ = ["StepModule", "as_stages", "load_optimizer_state", "stage_optimizers"]


def as_stages(loss) -> tuple[list[Stage], tuple[str, ...] | None, Callable[[float], None] | None]:
    """(stages, trainable child modules or None for all, progress hook or None) of a loss: the one reader of
    the contract in methods/objective.py. A plain callable is one stage over every trainable parameter."""
    if isinstance(loss, Objective):
        stages = list(loss.stages)
        if not stages or not all(isinstance(st, Stage) for st in stages):
            raise TypeError(f"{type(loss).__name__}.stages must be a non-empty list of methods.objective.Stage, "
                            f"got {loss.stages!r}")
        return stages, None if loss.trainable is None else tuple(loss.trainable), loss.set_progress
    if not callable(loss):
        raise TypeError("train_phase takes a loss: a callable loss(model, batch, generator) -> dict of unreduced "
                        f"terms, or a methods.objective.Objective with a list of stages; got {type(loss).__name__}")
    # stages, trainable and set_progress are read only from an Objective; on a plain callable they would be
    # silently ignored, so a callable that carries them is refused
    stray = [a for a in ("stages", "trainable", "set_progress") if hasattr(loss, a)]
    if stray:
        raise TypeError(f"{type(loss).__name__} has {', '.join(stray)} but is not a methods.objective.Objective; "
                        "subclass Objective so train_phase uses them")
    return [Stage("loss", loss, ())], None, None


def stage_optimizers(model: nn.Module, stages: list[Stage], lr: float) -> list[torch.optim.Optimizer]:
    """One Adam per stage over the (unfrozen) parameters of the stage's modules (all when none named)."""
    children = dict(model.named_children())
    opts = []
    for st in stages:
        mods = [children[m] for m in st.modules] if st.modules else [model]
        opts.append(eager_optimizer(torch.optim.Adam, [q for m in mods for q in m.parameters() if q.requires_grad],
                                    lr=lr, betas=(0.9, 0.999)))
    return opts


def load_optimizer_state(opts: list[torch.optim.Optimizer], state: list[dict] | dict) -> None:
    """One state per stage, in stage order. A single dict is read as the state of a one-stage loss: the form in
    which existing one-stage checkpoints on disk (e.g. finished phase-1 checkpoints that phase-2 jobs start
    from) hold it."""
    states = [state] if isinstance(state, dict) else list(state)
    if len(states) != len(opts):
        raise ValueError(f"the checkpoint holds the optimizer state of {len(states)} stage(s), this loss has "
                         f"{len(opts)}")
    for opt, st in zip(opts, states):
        opt.load_state_dict(st)


class StepModule(nn.Module):
    """One stage evaluation as a module call: DDP synchronises gradients of what runs inside a wrapped
    forward, and the losses call the networks' children directly."""

    def __init__(self, model: nn.Module, fns: list[LossFn]):
        super().__init__()
        self.model = model
        self.fns = tuple(fns)  # a tuple: a loss that is itself a Module is not registered as a child

    def forward(self, index: int, x, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self.fns[index](self.model, x, generator)

