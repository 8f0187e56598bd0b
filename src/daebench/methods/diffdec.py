"""DiffDecoder, ScoreVAE's conditional-diffusion baseline (`scorevae_variational_diffusion_autoencoder` §3.2,
after Preechakul et al. 2022 and Yang & Mandt 2023): a Gaussian encoder q(z | x_0) and a conditional
eps-prediction U-Net eps_theta(x_t, t, z), trained jointly on the same beta-weighted DSM objective as
ScoreVAE (`vpvae`): DSM(eps_theta(x_t, t, z), eps) + beta KL(q(z | x_0) || N(0, I)), z reparameterised.
beta = 0 is the plain diffusion autoencoder the paper finds works; beta = 0.01 is the VAE it finds fails.

Encoder (`encoder`): "stochastic" samples z ~ q(z | x_0) in training, as the release's variational runs do
(`configs/scoreVAE/paper/cifar_vae_0.py`, kl_weight 0, and `cifar_vae_001.py`); "deterministic" uses z = E(x_0),
as the release's auto-encoder run does (`configs/scoreVAE/paper/cifar_ae.py`: variational = False), which is the
paper's "trained as auto-encoder, i.e. with beta = 0" (§4). It has no q(z | x), so it needs beta = 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nets.unet import Encoder, UNet
from . import vpvae
from .family import ImageFamily

MODES = vpvae.MODES
ENCODERS = ("stochastic", "deterministic")


def encoder_kind(method: dict) -> str:
    kind = method.get("encoder", "stochastic")
    if kind not in ENCODERS:
        raise ValueError(f"unknown DiffDecoder encoder {kind!r}; known: {', '.join(ENCODERS)}")
    if kind == "deterministic" and float(method.get("beta", 0.0)) > 0:
        raise ValueError("a deterministic DiffDecoder encoder has no q(z|x) to charge a KL to: set beta: 0 "
                         "or encoder: stochastic")
    return kind


class DiffDecoder(nn.Module):
    def __init__(self, in_channels: int, image_size: int, z_dim: int, decoder: dict, encoder: dict,
                 stochastic: bool = True):
        super().__init__()
        self.stochastic = stochastic
        self.encoder = Encoder(in_channels, image_size, 2 * z_dim if stochastic else z_dim, **encoder)
        self.decoder = UNet(in_channels, image_size, z_dim=z_dim, **decoder)


def build(cfg: dict, in_channels: int, image_size: int) -> DiffDecoder:
    nets = cfg["nets"]
    stochastic = encoder_kind(cfg.get("method", {})) == "stochastic"
    return DiffDecoder(in_channels, image_size, nets["z_dim"], nets["decoder"],
                       vpvae.encoder_net(nets, cfg.get("method", {})), stochastic)


def posterior(model: DiffDecoder, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(mu, log sigma^2) of q(z | x_0); log sigma^2 is None for the deterministic encoder (z = mu)."""
    h = model.encoder(x0)
    return vpvae.posterior(h) if model.stochastic else (h, None)


def kl(model: DiffDecoder, x0: torch.Tensor) -> torch.Tensor | None:
    mu, logvar = posterior(model, x0)
    return None if logvar is None else vpvae.kl_standard_normal(mu, logvar)  # z = E(x_0): no q(z|x) to measure


@dataclass
class DiffDecoderLoss:
    beta: float
    weighting: str
    schedule: object
    levels: dict | None = None  # the method's loss_levels (vpvae.sample_t)

    def __call__(self, model: DiffDecoder, x0: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        mu, logvar = posterior(model, x0)
        z = mu if logvar is None else vpvae.sample_z(mu, logvar, generator)
        t, w = vpvae.sample_t(self.weighting, self.schedule, x0.shape[0], generator, vpvae.T_MIN_LATENT,
                              self.levels)
        t = t.to(x0.device, x0.dtype)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x_t, _, _ = vpvae.perturb(self.schedule, x0, t, eps)
        terms = {"dsm": vpvae.dsm(model.decoder(x_t, t, z), eps, w)}
        if self.beta > 0 and logvar is not None:
            terms["kl"] = self.beta * vpvae.full_precision(vpvae.kl_standard_normal(mu, logvar))
        return terms


def phase_loss(method: dict, phase: dict) -> DiffDecoderLoss:
    encoder_kind(method)
    return DiffDecoderLoss(float(method["beta"]), method["weighting"], vpvae.schedule_of(method),
                           method.get("loss_levels"))


def encode(model: DiffDecoder, x0: torch.Tensor) -> torch.Tensor:
    return posterior(model, x0)[0]


def decode(model: DiffDecoder, method: dict, z: torch.Tensor, nfe: int, generator: torch.Generator, sampler: dict,
           x_T: torch.Tensor | None = None, shape: tuple | None = None, mode: str = "sde") -> torch.Tensor:
    return vpvae.decode(model.decoder, vpvae.schedule_of(method), z, shape, mode, nfe, generator, sampler)


def cost(method: dict, mode: str, nfe: int, sampler: dict) -> dict[str, int]:
    return vpvae.cost("DiffDecoder", mode, nfe, sampler)


def diffusion_nfe(cost: dict[str, int]) -> int:
    return cost["nfe_decode"]


def code(model: DiffDecoder, x0: torch.Tensor, sampler: dict, generator: torch.Generator) -> torch.Tensor:
    """The code a reconstruction decodes from: z ~ q(z | x) (or its mean), or Enc(x) when deterministic."""
    mu, logvar = posterior(model, x0)
    return mu if logvar is None else vpvae.latent(mu, logvar, sampler.get("latent", "sample"), generator)


FAMILY = ImageFamily(
    name="diffdec", build=build, phase_loss=phase_loss, encode=encode, decode=decode,
    code=code, cost=cost, diffusion_nfe=diffusion_nfe, modes=MODES, nets=("z_dim", "decoder", "encoder"), kl=kl,
    keys=frozenset({"beta", "weighting", "encoder", "loss_levels", "encoder_head"}), required=("beta",),
    defaults={"weighting": "likelihood", **vpvae.DEFAULTS})
