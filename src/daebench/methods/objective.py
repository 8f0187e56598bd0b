"""What `train.train_phase` trains: the one contract between a method's loss and the training loop.

A loss is either

* a plain callable ``loss(model, batch, generator) -> {name: unreduced term}``: one Adam update per batch of
  every trainable parameter, on the sum of the terms' batch means; or
* an ``Objective``: ``stages``, several updates per batch, each ``Stage`` stepping its own Adam over its
  child modules on its own terms (wake-sleep, adversarial training); ``trainable``, the child modules this
  phase trains (None: all), the others frozen; ``set_progress``, which hears how far the phase has got.

`train.as_stages` is the only reader of this contract.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

LossFn = Callable[[nn.Module, Any, torch.Generator], dict[str, torch.Tensor]]


@dataclass
class Stage:
    """``repeat`` Adam updates per batch (default one): ``fn``'s terms, summed, update the child modules
    ``modules`` (empty: all). Each repeat calls ``fn`` again, so a stage that draws its own inputs (DDVI's sleep
    on prior samples) sees fresh ones; the batch is the same."""
    name: str
    fn: LossFn
    modules: tuple[str, ...]
    repeat: int = 1


class Objective:
    """A loss with more than one update per batch, frozen networks or in-loss schedules (module header)."""

    stages: list[Stage]
    trainable: tuple[str, ...] | None = None

    def set_progress(self, fraction: float) -> None:
        """Called before each step with the fraction of the phase done (0 to 1), for schedules in the loss."""
