"""The beta-VAE baseline of ScoreVAE (`scorevae_variational_diffusion_autoencoder` §2.1 eq. 2, App. B.2):
the same encoder as the ScoreVAE (without the time input) and a mirror decoder; Gaussian p(x | z) with
identity covariance, so -log p(x | z) = 1/2 ||x - D(z)||^2 + const, summed over pixels like the KL:
    loss = 1/2 ||x - D(z)||^2 + beta KL(q(z | x) || N(0, I)),  z reparameterised.
The reconstruction is the decoder mean D(z) (one network evaluation, mode "decoder").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nets.unet import Encoder, MirrorDecoder
from . import vpvae
from .family import ImageFamily

MODES = ("decoder",)


class BetaVAE(nn.Module):
    def __init__(self, in_channels: int, image_size: int, z_dim: int, encoder: dict):
        super().__init__()
        encoder = dict(encoder)
        head = encoder.pop("head", "mean")  # the mirror decoder has no head: its Linear fills the coarsest map
        self.encoder = Encoder(in_channels, image_size, 2 * z_dim, head=head, **encoder)
        self.decoder = MirrorDecoder(z_dim, in_channels, image_size, **encoder)


def build(cfg: dict, in_channels: int, image_size: int) -> BetaVAE:
    return BetaVAE(in_channels, image_size, cfg["nets"]["z_dim"], vpvae.encoder_net(cfg["nets"], cfg.get("method", {})))


@dataclass
class BetaVAELoss:
    beta: float

    def __call__(self, model: BetaVAE, x0: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        mu, logvar = vpvae.posterior(model.encoder(x0))
        z = vpvae.sample_z(mu, logvar, generator)
        terms = {"recon": 0.5 * vpvae.full_precision(model.decoder(z) - x0).square().flatten(1).sum(1)}
        if self.beta > 0:
            terms["kl"] = self.beta * vpvae.full_precision(vpvae.kl_standard_normal(mu, logvar))
        return terms


def phase_loss(method: dict, phase: dict) -> BetaVAELoss:
    return BetaVAELoss(float(method["beta"]))


def kl(model: BetaVAE, x0: torch.Tensor) -> torch.Tensor:
    return vpvae.kl_standard_normal(*vpvae.posterior(model.encoder(x0)))


def encode(model: BetaVAE, x0: torch.Tensor) -> torch.Tensor:
    return vpvae.posterior(model.encoder(x0))[0]


def decode(model: BetaVAE, method: dict, z: torch.Tensor, nfe: int, generator: torch.Generator, sampler: dict,
           x_T: torch.Tensor | None = None, shape: tuple | None = None, mode: str | None = None) -> torch.Tensor:
    return model.decoder(z)


def cost(method: dict, mode: str, nfe: int, sampler: dict) -> dict[str, int]:
    if mode not in MODES:
        raise ValueError(f"unknown reconstruction mode {mode!r} for a VAE; known: {', '.join(MODES)}")
    return {"nfe_encoder": 1, "nfe_endpoint": 0, "nfe_decode": 1}


def diffusion_nfe(cost: dict[str, int]) -> int:
    return 0  # no diffusion network


def code(model: BetaVAE, x0: torch.Tensor, sampler: dict, generator: torch.Generator) -> torch.Tensor:
    """The code a reconstruction decodes from: z ~ q(z | x) (or its mean, sampler.latent)."""
    mu, logvar = vpvae.posterior(model.encoder(x0))
    return vpvae.latent(mu, logvar, sampler.get("latent", "sample"), generator)


FAMILY = ImageFamily(
    name="vae", build=build, phase_loss=phase_loss, encode=encode, decode=decode,
    code=code, cost=cost, diffusion_nfe=diffusion_nfe, modes=MODES, nets=("z_dim", "encoder"), kl=kl,
    keys=frozenset({"beta", "encoder_head"}), required=("beta",), defaults=vpvae.DEFAULTS)
