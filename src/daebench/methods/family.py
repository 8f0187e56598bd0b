"""What a method family is: one declaration per family (``FAMILY = ...`` at the end of its module), read by
everything else: config validation (its keys, required keys and defaults), the job slices (the nets.* blocks it
builds), the workflow's mode wildcard and the CLI's --mode choices (its decoding modes), evaluation and training.

Two kinds, one class each, on a shared :class:`BaseFamily` (``name``, ``build``, ``keys``, ``required``):

- :class:`ImageFamily` (kind ``image``): the autoencoders of the two-phase, DBAE and ScoreVAE studies:
  ``build(cfg, in_channels, image_size)``, ``phase_loss(method, phase)``, ``encode(model, x)`` and to reconstruct
  ``code``, ``decode``, ``cost``, ``diffusion_nfe`` (and ``infer_endpoint`` where x_T is inferred): one
  reconstruction, :func:`reconstruct`, serves them all.
- :class:`DDVIFamily` (kind ``ddvi``): the DDVI study's latent-variable models on flat data:
  ``build(nets, dim, method, labelled)``, ``stages(method, ctx)``, ``elbo`` (None: no density) and
  ``encode(model, x, g)``.

``ImageFamily(...)`` or ``DDVIFamily(...)`` declares a family of that kind."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

import torch


@dataclass(frozen=True, kw_only=True)
class BaseFamily:
    """What every family declares."""
    kind: ClassVar[str]
    name: str
    build: Callable
    keys: frozenset[str] = frozenset()          # method keys of this family besides family, label, phases, ...
    required: tuple[str, ...] = ()              # of those, the ones every method of the family sets

    def __post_init__(self):
        if not set(self.required) <= set(self.keys):
            raise ValueError(f"family {self.name}: required keys {sorted(set(self.required) - set(self.keys))} "
                             "are not among its keys")


@dataclass(frozen=True, kw_only=True)
class ImageFamily(BaseFamily):
    """An autoencoder of the image studies (two-phase, DBAE, ScoreVAE)."""
    kind: ClassVar[str] = "image"
    phase_loss: Callable
    cost: Callable
    encode: Callable | None                     # encode(model, x): the encoder's z; None: it has no encoder
    defaults: Mapping = field(default_factory=dict)  # what its methods get when unset (filled at validation)
    nets: tuple[str, ...] = ()                  # nets.* blocks build() reads: a job's slice carries only these
    modes: tuple[str, ...] = ()                 # decoding modes (`reconstruct --mode`, the mode wildcard)
    decode: Callable | None = None
    code: Callable | None = None                # code(model, x0, sampler, generator): the z a reconstruction decodes
    diffusion_nfe: Callable | None = None
    infer_endpoint: Callable | None = None      # how x_T is obtained from an image (DBAE Table 5), if at all
    endpoint_mode: str | None = None
    endpoint_by: str | None = None
    load_prior: Callable | None = None          # a frozen pretrained network the family builds on (ScoreVAE)
    # kl(model, x0): per image KL(q(z|x_0) || N(0, I)) in nats, what the code keeps of x (None: no Gaussian q(z|x))
    kl: Callable | None = None

    def __post_init__(self):
        super().__post_init__()
        need = ("code", "decode", "diffusion_nfe") if self.modes else ()  # it reconstructs
        if self.endpoint_mode:
            need += ("infer_endpoint",)
        if missing := [n for n in need if getattr(self, n) is None]:
            raise ValueError(f"family {self.name}: a {self.kind} family needs {', '.join(missing)}")


@dataclass(frozen=True, kw_only=True)
class DDVIFamily(BaseFamily):
    """A latent-variable model of the DDVI study (flat data, 2-D latents)."""
    kind: ClassVar[str] = "ddvi"
    stages: Callable                            # stages(method, ctx): the training step's Stages
    elbo: Callable | None                       # elbo(model, batch, ctx, g): per-example estimates; None: no density
    encode: Callable                            # encode(model, x, g): one draw of the code z
    # Named sets of values config resolution applies at once (``ddvi.recipe``): {"method": keys set on each
    # method of the family, except those in ``keep``; "priors": ddvi.priors values; "keep": method keys left as set}
    recipes: Mapping = field(default_factory=dict)
    # What config's code facts read of every family: a DDVI-study family builds from the whole ddvi.nets block,
    # gets no defaults filled and decodes nothing.
    nets: ClassVar[tuple[str, ...]] = ()
    defaults: ClassVar[Mapping] = MappingProxyType({})
    modes: ClassVar[tuple[str, ...]] = ()


@torch.no_grad()
def reconstruct(fam: ImageFamily, model, method: dict, x0, mode: str, nfe: int, generator, sampler: dict, *,
                cost: dict | None = None):
    """Encode -> endpoint -> decode, for every image family: the code z, x_T inferred from the image where the
    mode says so (DAE inversion, DBAE's endpoint decoder) or left to the decoder (fresh noise), then decoding
    with at most ``nfe`` network evaluations. ``cost``: ``fam.cost(method, mode, nfe, sampler)`` where the
    caller has it (``evaluate.reconstruction.reconstruct_split``, once for all batches); else it is computed
    here first, so an unknown mode or budget fails early."""
    if cost is None:
        fam.cost(method, mode, nfe, sampler)
    z = fam.code(model, x0, sampler, generator)
    x_T = fam.infer_endpoint(model, method, x0, z, nfe, sampler) if mode == fam.endpoint_mode else None
    return fam.decode(model, method, z, nfe, generator, sampler, x_T=x_T, shape=x0.shape, mode=mode)
