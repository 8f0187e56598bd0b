"""The DAE family of the two-phase DAE paper (`dae_two_phase_training`, §3-4, Algorithms 1-2
of supp. §7): encoder E(x) -> z, decoder D(x_t, t, z) predicting eps, x or v under a VP schedule.

Training phases (supp. §7):
  t = "one"     -- Algorithm 1: x_1 = eps is pure noise and (alpha_1, sigma_1) = (0, 1), so a
                   v-prediction decoder regresses v_1 = -x_0: a plain autoencoder.
  t = "uniform" -- Algorithm 2: t ~ U[0, 1], x_t = alpha_t x_0 + sigma_t eps, target y*.
Loss: ||y - y*||^2 per example (mean over pixels), returned unreduced over the batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..diffusion import parameterization as param
from ..diffusion.samplers import sample_ddim, sample_ddim_inversion, time_grid
from ..diffusion.schedules import Schedule, get_schedule, sigma_from_alpha
from ..nets.unet import Encoder, UNet
from .family import ImageFamily


class DAE(nn.Module):
    """Encoder + conditional U-Net decoder; a plain container, no diffusion logic."""

    def __init__(self, in_channels: int, image_size: int, z_dim: int, decoder: dict, encoder: dict):
        super().__init__()
        self.encoder = Encoder(in_channels, image_size, z_dim, **encoder)
        self.decoder = UNet(in_channels, image_size, z_dim=z_dim, **decoder)


def build(cfg: dict, in_channels: int, image_size: int) -> DAE:
    nets = cfg["nets"]
    return DAE(in_channels, image_size, nets["z_dim"], nets["decoder"], nets["encoder"])


def phase_schedule(phase: dict) -> Schedule | None:
    s = phase.get("schedule")
    return get_schedule(s["name"], s.get("scale")) if s else None


@dataclass
class PhaseLoss:
    """Loss of one training phase; call it with a batch and a generator for t and eps."""
    prediction: str
    t_mode: str
    schedule: Schedule | None

    def __call__(self, model: DAE, x0: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        b = x0.shape[0]
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        if self.t_mode == "one":
            t = torch.ones(b, device=x0.device)
            alpha, sigma = torch.zeros(b, device=x0.device), torch.ones(b, device=x0.device)
        else:
            t = torch.rand(b, generator=generator).to(x0.device)
            alpha = self.schedule(t)
            sigma = sigma_from_alpha(alpha)
        shape = (b,) + (1,) * (x0.dim() - 1)
        alpha, sigma = alpha.view(shape), sigma.view(shape)
        x_t = alpha * x0 + sigma * eps
        z = model.encoder(x0)
        y = model.decoder(x_t, t, z)
        y_star = param.target(self.prediction, x0, eps, alpha, sigma)
        return {"mse": (y - y_star).float().square().flatten(1).mean(1)}


def phase_loss(method: dict, phase: dict) -> PhaseLoss:
    return PhaseLoss(method["prediction"], phase["t"], phase_schedule(phase))


def eval_schedule(method: dict) -> Schedule:
    """Sampling uses the schedule of the last phase that samples t (the decoder's final training); a model
    trained at t = 1 only (two-phase Table 3) samples with its ``sample_schedule``."""
    for phase in reversed(method["phases"]):
        if phase.get("schedule"):
            return phase_schedule(phase)
    if method.get("sample_schedule"):
        return phase_schedule({"schedule": method["sample_schedule"]})
    raise ValueError("method has no phase with a schedule and no sample_schedule; DDIM needs one")


def denoiser(model: DAE, prediction: str, schedule: Schedule):
    """Wrap the decoder as model(x_t, t, z) -> (x0_hat, eps_hat) for the samplers."""

    def fn(x_t: torch.Tensor, t: torch.Tensor, z: Any):
        alpha = schedule(t).view(-1, 1, 1, 1).to(x_t.dtype)
        sigma = sigma_from_alpha(alpha)
        return param.to_x0_eps(prediction, model.decoder(x_t, t, z), x_t, alpha, sigma)

    return fn


MODES = ("stochastic", "inversion")


def encode(model: DAE, x0: torch.Tensor) -> torch.Tensor:
    """The tractable latent z = E(x_0) (one network evaluation)."""
    return model.encoder(x0)


def code(model: DAE, x0: torch.Tensor, sampler: dict, generator: torch.Generator) -> torch.Tensor:
    """The code a reconstruction decodes from: the semantic encoder's z (deterministic)."""
    return encode(model, x0)


def infer_endpoint(model: DAE, method: dict, x0: torch.Tensor, z: torch.Tensor, nfe: int,
                   sampler: dict) -> torch.Tensor:
    """x_T by DDIM inversion with ``nfe`` steps: the intractable half of DiffAE's latent."""
    sched = eval_schedule(method)
    return sample_ddim_inversion(denoiser(model, method["prediction"], sched), x0, time_grid(nfe, device=x0.device),
                                 z, schedule=sched, clip_x0=sampler.get("clip_x0", True))


def decode(model: DAE, method: dict, z: torch.Tensor, nfe: int, generator: torch.Generator, sampler: dict,
           x_T: torch.Tensor | None = None, shape: tuple | None = None, mode: str | None = None) -> torch.Tensor:
    """DDIM from x_T (drawn from N(0, I) when None, as in unconditional generation) given z."""
    sched = eval_schedule(method)
    if x_T is None:
        x_T = torch.randn(shape, generator=generator).to(z.device)
    return sample_ddim(denoiser(model, method["prediction"], sched), x_T, time_grid(nfe, device=z.device), z,
                       schedule=sched, clip_x0=sampler.get("clip_x0", True))


def cost(method: dict, mode: str, nfe: int, sampler: dict) -> dict[str, int]:
    """Network evaluations of ``reconstruct``: encoder, endpoint inference, decoding."""
    if mode not in MODES:
        raise ValueError(f"unknown reconstruction mode {mode!r} for a DAE; known: {', '.join(MODES)}")
    return {"nfe_encoder": 1, "nfe_endpoint": nfe if mode == "inversion" else 0, "nfe_decode": nfe}


def diffusion_nfe(cost: dict[str, int]) -> int:
    """Evaluations of the diffusion network: DDIM inversion and sampling both run the decoder U-Net."""
    return cost["nfe_endpoint"] + cost["nfe_decode"]


FAMILY = ImageFamily(
    name="dae", build=build, phase_loss=phase_loss, encode=encode, code=code, decode=decode,
    cost=cost, diffusion_nfe=diffusion_nfe, infer_endpoint=infer_endpoint, modes=MODES,
    endpoint_mode="inversion", endpoint_by="DDIM inversion", nets=("z_dim", "decoder", "encoder"),
    keys=frozenset({"prediction", "sample_schedule"}), required=("prediction",))
