"""DiffDecoder, ScoreVAE's conditional-diffusion baseline (`scorevae_variational_diffusion_autoencoder` §3.2,
after Preechakul et al. 2022 and Yang & Mandt 2023): a Gaussian encoder q(z | x_0) and a conditional
eps-prediction U-Net eps_theta(x_t, t, z), trained jointly on the same beta-weighted DSM objective as
ScoreVAE (`vpvae`): DSM(eps_theta(x_t, t, z), eps) + beta KL(q(z | x_0) || N(0, I)), z reparameterised.
beta = 0 is the plain diffusion autoencoder the paper finds works; beta = 0.01 is the VAE it finds fails.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nets.unet import Encoder, UNet
from . import vpvae

MODES = vpvae.MODES
ENDPOINT_MODE = ENDPOINT_BY = None


class DiffDecoder(nn.Module):
    def __init__(self, in_channels: int, image_size: int, z_dim: int, decoder: dict, encoder: dict):
        super().__init__()
        self.encoder = Encoder(in_channels, image_size, 2 * z_dim, **encoder)
        self.decoder = UNet(in_channels, image_size, z_dim=z_dim, **decoder)


def build(cfg: dict, in_channels: int, image_size: int) -> DiffDecoder:
    nets = cfg["nets"]
    return DiffDecoder(in_channels, image_size, nets["z_dim"], nets["decoder"], nets["encoder"])


@dataclass
class DiffDecoderLoss:
    beta: float
    weighting: str
    schedule: object

    def __call__(self, model: DiffDecoder, x0: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        mu, logvar = vpvae.posterior(model.encoder(x0))
        z = vpvae.sample_z(mu, logvar, generator)
        t, w = vpvae.sample_t(self.weighting, self.schedule, x0.shape[0], generator)
        t = t.to(x0.device, x0.dtype)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x_t, _, _ = vpvae.perturb(self.schedule, x0, t, eps)
        terms = {"dsm": vpvae.dsm(model.decoder(x_t, t, z), eps, w)}
        if self.beta > 0:
            terms["kl"] = self.beta * vpvae.kl_standard_normal(mu, logvar).float()
        return terms


def phase_loss(method: dict, phase: dict) -> DiffDecoderLoss:
    return DiffDecoderLoss(float(method["beta"]), method["weighting"], vpvae.schedule_of(method))


def encode(model: DiffDecoder, x0: torch.Tensor) -> torch.Tensor:
    return vpvae.posterior(model.encoder(x0))[0]


def decode(model: DiffDecoder, method: dict, z: torch.Tensor, nfe: int, generator: torch.Generator, sampler: dict,
           x_T: torch.Tensor | None = None, shape: tuple | None = None, mode: str = "sde") -> torch.Tensor:
    return vpvae.decode(model.decoder, vpvae.schedule_of(method), z, shape, mode, nfe, generator, sampler)


def cost(method: dict, mode: str, nfe: int, sampler: dict) -> dict[str, int]:
    return vpvae.cost("DiffDecoder", mode, nfe, sampler)


def diffusion_nfe(cost: dict[str, int]) -> int:
    return cost["nfe_decode"]


@torch.no_grad()
def reconstruct(model: DiffDecoder, method: dict, x0: torch.Tensor, mode: str, nfe: int,
                generator: torch.Generator, sampler: dict) -> torch.Tensor:
    cost(method, mode, nfe, sampler)
    mu, logvar = vpvae.posterior(model.encoder(x0))
    z = vpvae.latent(mu, logvar, sampler.get("latent", "sample"), generator)
    return decode(model, method, z, nfe, generator, sampler, shape=x0.shape, mode=mode)
