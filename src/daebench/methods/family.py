"""What a method family is: one declaration per family (``FAMILY = Family(...)`` at the end of its module),
read by everything else: config validation (its keys, required keys and defaults), the job slices (the
nets.* blocks it builds), the workflow's mode wildcard and the CLI's --mode choices (its decoding modes),
evaluation (encode / decode / reconstruct / cost) and training (build, phase_loss or stages).

Two kinds share it. ``image`` families are the autoencoders of the two-phase, DBAE and ScoreVAE studies:
``build(cfg, in_channels, image_size)``, ``phase_loss(method, phase)``, and to reconstruct ``code``,
``decode``, ``cost``, ``diffusion_nfe`` (and ``infer_endpoint`` where x_T is inferred): one reconstruction,
:func:`reconstruct`, serves them all. ``lvm`` families are the DDVI study's latent-
variable models on flat data: ``build(nets, dim, method, labelled)``, ``stages(method, ctx)``, ``elbo``
(None: no density) and ``encode``."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

KINDS = ("image", "lvm")


@dataclass(frozen=True)
class Family:
    name: str
    kind: str                                   # "image" | "lvm"
    build: Callable
    encode: Callable | None
    keys: frozenset[str] = frozenset()          # method keys of this family besides family, label, phases, ...
    required: tuple[str, ...] = ()              # of those, the ones every method of the family sets
    defaults: Mapping = field(default_factory=dict)  # what its methods get when unset (filled at validation)
    nets: tuple[str, ...] = ()                  # nets.* blocks build() reads: a job's slice carries only these
    modes: tuple[str, ...] = ()                 # decoding modes (`reconstruct --mode`, the mode wildcard)
    # image families
    phase_loss: Callable | None = None
    decode: Callable | None = None
    code: Callable | None = None                # code(model, x0, sampler, generator): the z a reconstruction decodes
    cost: Callable | None = None
    diffusion_nfe: Callable | None = None
    infer_endpoint: Callable | None = None      # how x_T is obtained from an image (DBAE Table 5), if at all
    endpoint_mode: str | None = None
    endpoint_by: str | None = None
    load_prior: Callable | None = None          # a frozen pretrained network the family builds on (ScoreVAE)
    # lvm families
    stages: Callable | None = None
    elbo: Callable | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"family {self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        if not set(self.required) <= set(self.keys):
            raise ValueError(f"family {self.name}: required keys {sorted(set(self.required) - set(self.keys))} "
                             "are not among its keys")
        need = ("phase_loss", "cost") if self.kind == "image" else ("stages",)
        if self.modes:  # it reconstructs
            need += ("code", "decode", "diffusion_nfe")
        if self.endpoint_mode:
            need += ("infer_endpoint",)
        if missing := [n for n in need if getattr(self, n) is None]:
            raise ValueError(f"family {self.name}: a {self.kind} family needs {', '.join(missing)}")


@torch.no_grad()
def reconstruct(fam: Family, model, method: dict, x0, mode: str, nfe: int, generator, sampler: dict):
    """Encode -> endpoint -> decode, for every image family: the code z, x_T inferred from the image where the
    mode says so (DAE inversion, DBAE's endpoint decoder) or left to the decoder (fresh noise), then decoding
    with at most ``nfe`` network evaluations. ``cost`` first, so an unknown mode or budget fails early."""
    fam.cost(method, mode, nfe, sampler)
    z = fam.code(model, x0, sampler, generator)
    x_T = fam.infer_endpoint(model, method, x0, z, nfe, sampler) if mode == fam.endpoint_mode else None
    return fam.decode(model, method, z, nfe, generator, sampler, x_T=x_T, shape=x0.shape, mode=mode)
