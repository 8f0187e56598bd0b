"""Unconditional VP diffusion eps_theta(x_t, t): ScoreVAE's pretrained prior (`scorevae_variational_diffusion_autoencoder`
App. B.1: DDPM U-Net, beta-linear VP SDE, DSM with the simple weighting lambda(t) = sigma_t^2, i.e. the
eps-prediction MSE). Its own job, so encoders trained on it never retrain it. Not an autoencoder: it has
no reconstruction modes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..nets.unet import UNet
from . import vpvae
from .family import ImageFamily

MODES: tuple[str, ...] = ()


def build(cfg: dict, in_channels: int, image_size: int) -> UNet:
    return UNet(in_channels, image_size, **cfg["nets"]["decoder"])


@dataclass
class EpsLoss:
    schedule: object

    def __call__(self, model: UNet, x0: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        t, _ = vpvae.sample_t("simple", self.schedule, x0.shape[0], generator)
        t = t.to(x0.device, x0.dtype)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x_t, _, _ = vpvae.perturb(self.schedule, x0, t, eps)
        return {"mse": (model(x_t, t) - eps).float().square().flatten(1).mean(1)}


def phase_loss(method: dict, phase: dict) -> EpsLoss:
    return EpsLoss(vpvae.schedule_of(method))


@torch.no_grad()
def sample(model: UNet, method: dict, n: int, shape: tuple, nfe: int, generator: torch.Generator, sampler: dict,
           mode: str = "sde", device: torch.device | str = "cpu") -> torch.Tensor:
    """n unconditional samples x ~ p_theta by the reverse VP SDE (or PF ODE) from x_1 ~ N(0, I): the prior
    every ScoreVAE decoding starts from, drawn with the same sampler and NFE (z is empty: nothing conditions)."""
    def eps_fn(x_t, t, z):
        return model(x_t, t)

    return vpvae.decode(eps_fn, vpvae.schedule_of(method), torch.zeros(n, 0, device=device), (n, *shape), mode, nfe,
                        generator, sampler)


@torch.no_grad()
def heldout_eps_mse(model: UNet, method: dict, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The training loss on images it never saw: per image, the mean over pixels of ||eps_theta(x_t, t) - eps||^2
    at t ~ U(t_min, 1) (App. B.1's simple weighting)."""
    return EpsLoss(vpvae.schedule_of(method))(model, x0, generator)["mse"]


def cost(method: dict, mode: str, nfe: int, sampler: dict) -> dict[str, int]:
    raise ValueError("an unconditional diffusion model (family uncond) has no encoder and cannot reconstruct; "
                     "use it as the prior of a scorevae method")


FAMILY = ImageFamily(name="uncond", build=build, phase_loss=phase_loss, encode=None, cost=cost,
                nets=("decoder",))
