"""ScoreVAE and ScoreVAE+ (`scorevae_variational_diffusion_autoencoder` §3.3-3.6, App. A.1, B.1; release
details in docs/architecture.md, "Implementation facts" and "More release facts").

A frozen unconditional diffusion model eps_theta(x_t, t) (the `uncond` family, trained by its own job)
and a time-dependent Gaussian encoder q_phi(z | x_t, t) = N(mu_phi(x_t, t), sigma_phi^2(x_t, t) I) give
the conditional score by Bayes' rule for scores (§3.3):
    grad log p(x_t | z) = grad log p(x_t) + grad log q_phi(z | x_t, t) [+ c_psi(x_t, z, t)  (ScoreVAE+, §3.6)],
with grad_x log q by autograd. In eps units (score = -eps / sigma_t):
    eps_hat(x_t, t, z) = eps_theta(x_t, t) - sigma_t grad_x log q_phi(z | x_t, t) + c_psi(x_t, z, t),
the corrector c_psi being an eps-space U-Net conditioned on z, zero at initialisation.

log q: "full" differentiates the whole Gaussian log-density, including -1/2 sum_k log sigma_k^2(x_t, t)
(the encoder's variance depends on x_t); "release" differentiates -1/2 sum_k (z_k - mu_k)^2 / sigma_k^2
only, as the official code does. They agree when sigma does not depend on x_t.

Phases (each a job): train: encoder -- the beta-weighted objective of §3.5 with z ~ q_phi(z | x_0, t = 0)
(reparameterised), the prior frozen; train: corrector -- the same DSM term with prior and encoder frozen
(the KL is then a constant). The prior's weights are copied into the model before the first phase, so
every checkpoint is self-contained.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..diffusion.schedules import Schedule, sigma_from_alpha
from ..nets.unet import Encoder, UNet
from . import vpvae
from .family import ImageFamily
from .objective import Objective, Stage

MODES = vpvae.MODES
LOG_Q = ("full", "release")


class ScoreVAE(nn.Module):
    """Frozen prior, time-dependent encoder, optional corrector; a plain container."""

    def __init__(self, in_channels: int, image_size: int, z_dim: int, prior: dict, encoder: dict,
                 corrector: dict | None, schedule: Schedule):
        super().__init__()
        self.prior = UNet(in_channels, image_size, **prior)
        self.encoder = Encoder(in_channels, image_size, 2 * z_dim, time_conditioned=True, **encoder)
        self.corrector = UNet(in_channels, image_size, z_dim=z_dim, **corrector) if corrector else None
        self.schedule = schedule  # the prior's SDE (not state: rebuilt from the config)


def has_corrector(method: dict) -> bool:
    return any(p.get("train") == "corrector" for p in method["phases"])


def build(cfg: dict, in_channels: int, image_size: int) -> ScoreVAE:
    nets, prior = cfg["nets"], cfg["prior"]
    corrector = nets["corrector"] if has_corrector(cfg["method"]) else None
    return ScoreVAE(in_channels, image_size, nets["z_dim"], prior["nets"]["decoder"], vpvae.encoder_net(nets, cfg["method"]),
                    corrector,
                    vpvae.schedule_of(prior["method"]))


def load_prior(model: ScoreVAE, prior_ckpt: dict) -> None:
    """Copy the unconditional model's EMA weights into ``model.prior`` (shapes must match)."""
    model.prior.load_state_dict(prior_ckpt["ema"])


def encoder_score(encoder: nn.Module, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor, *,
                  log_q: str = "full", create_graph: bool = False) -> torch.Tensor:
    """grad_{x_t} log q(z | x_t, t) by autograd; ``create_graph`` keeps it differentiable in phi. Outside any
    autocast (compute.amp: bf16 on CUDA): this gradient is the decoder and the encoder's loss differentiates it
    again, so both backward passes run in the input's precision (float32), not bf16's 8-bit mantissa."""
    with torch.enable_grad(), torch.autocast(x_t.device.type, enabled=False):
        x = x_t.detach().float() if x_t.dtype in (torch.bfloat16, torch.float16) else x_t.detach()
        z = z.to(x.dtype)
        x = x.requires_grad_(True)
        mu, logvar = vpvae.posterior(encoder(x, t))
        logq = -0.5 * ((z - mu).square() / logvar.exp())
        if log_q == "full":
            logq = logq - 0.5 * logvar
        elif log_q != "release":
            raise ValueError(f"unknown log_q {log_q!r}; known: {', '.join(LOG_Q)}")
        (grad,) = torch.autograd.grad(logq.sum(), x, create_graph=create_graph)
    return grad


def conditional_eps(model: ScoreVAE, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor, *, log_q: str,
                    corrector: bool, create_graph: bool = False) -> torch.Tensor:
    """eps_hat(x_t, t, z) of the module header."""
    sigma = sigma_from_alpha(model.schedule(t.double())).to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))
    with torch.no_grad():  # the prior is frozen in every phase
        eps = model.prior(x_t, t)
    eps = eps - sigma * encoder_score(model.encoder, x_t, t, z, log_q=log_q, create_graph=create_graph)
    if corrector and model.corrector is not None:
        eps = eps + model.corrector(x_t, t, z)
    return eps


def _posterior0(model: ScoreVAE, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return vpvae.posterior(model.encoder(x0, torch.zeros(x0.shape[0], device=x0.device)))


@dataclass
class ScoreVAELoss(Objective):
    """§3.5 (train: encoder) or §3.6 (train: corrector); terms unreduced over the batch. One stage that trains
    the phase's network; the others, the prior among them, stay frozen."""
    phase: str
    beta: float
    weighting: str
    log_q: str
    levels: dict | None = None  # the method's loss_levels (vpvae.sample_t)

    @property
    def trainable(self) -> tuple[str, ...]:
        return (self.phase,)

    @property
    def stages(self) -> list[Stage]:
        return [Stage(self.phase, self, ())]

    def __call__(self, model: ScoreVAE, x0: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        train_encoder = self.phase == "encoder"
        with torch.set_grad_enabled(train_encoder):
            mu, logvar = _posterior0(model, x0)
            z = vpvae.sample_z(mu, logvar, generator)
        t, w = vpvae.sample_t(self.weighting, model.schedule, x0.shape[0], generator, vpvae.T_MIN_LATENT,
                              self.levels)
        t = t.to(x0.device, x0.dtype)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x_t, _, _ = vpvae.perturb(model.schedule, x0, t, eps)
        eps_hat = conditional_eps(model, x_t, t, z, log_q=self.log_q, corrector=not train_encoder,
                                  create_graph=train_encoder)
        terms = {"dsm": vpvae.dsm(eps_hat, eps, w)}
        if train_encoder:
            terms["kl"] = self.beta * vpvae.full_precision(vpvae.kl_standard_normal(mu, logvar))
        return terms


PHASES = ("encoder", "corrector")


def phase_loss(method: dict, phase: dict) -> ScoreVAELoss:
    if phase.get("train") not in PHASES:
        raise ValueError(f"a ScoreVAE phase needs train: one of {', '.join(PHASES)}; got {phase.get('train')!r}")
    return ScoreVAELoss(phase["train"], float(method["beta"]), method["weighting"], method["log_q"],
                        method.get("loss_levels"))


def kl(model: ScoreVAE, x0: torch.Tensor) -> torch.Tensor:
    return vpvae.kl_standard_normal(*_posterior0(model, x0))


def encode(model: ScoreVAE, x0: torch.Tensor) -> torch.Tensor:
    return _posterior0(model, x0)[0]


def decode(model: ScoreVAE, method: dict, z: torch.Tensor, nfe: int, generator: torch.Generator, sampler: dict,
           x_T: torch.Tensor | None = None, shape: tuple | None = None, mode: str = "sde") -> torch.Tensor:
    def eps_fn(x_t, t, zz):
        return conditional_eps(model, x_t, t, zz, log_q=method["log_q"], corrector=True)

    return vpvae.decode(eps_fn, model.schedule, z, shape, mode, nfe, generator, sampler)


def cost(method: dict, mode: str, nfe: int, sampler: dict) -> dict[str, int]:
    return vpvae.cost("ScoreVAE", mode, nfe, sampler)


def diffusion_nfe(cost: dict[str, int]) -> int:
    """Evaluations of the conditional score (prior + encoder gradient [+ corrector]) per image."""
    return cost["nfe_decode"]


def code(model: ScoreVAE, x0: torch.Tensor, sampler: dict, generator: torch.Generator) -> torch.Tensor:
    """The code a reconstruction decodes from: z ~ q(z | x_0, 0) (or its mean, sampler.latent)."""
    mu, logvar = _posterior0(model, x0)
    return vpvae.latent(mu, logvar, sampler.get("latent", "sample"), generator)


FAMILY = ImageFamily(
    name="scorevae", build=build, phase_loss=phase_loss, encode=encode, decode=decode,
    code=code, cost=cost, diffusion_nfe=diffusion_nfe, load_prior=load_prior, modes=MODES, kl=kl,
    nets=("z_dim", "encoder"),  # + corrector when a phase trains it (config.nets_keys); the prior has its own
    keys=frozenset({"prior", "beta", "weighting", "log_q", "loss_levels", "encoder_head"}), required=("prior", "beta"),
    defaults={"weighting": "likelihood", "log_q": "release", **vpvae.DEFAULTS})
