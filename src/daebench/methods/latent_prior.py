"""Latent DDIM prior p_omega(z) (DiffAE §3.3 / DBAE §3.3.2, App. C.1 Table 7): a diffusion model over
the encoder's codes, fitted after the autoencoder is frozen. Codes are standardised per dimension
with the training set's mean and std, which the prior stores and undoes after sampling (without it
the prior's noise scale mismatches the codes: docs/architecture.md, "Known pitfalls"). eps-prediction, L1 loss,
constant beta = 0.008 over 1000 steps; sampling is DDIM (eta = 0).

Unconditional generation = z ~ p_omega, then the autoencoder's decoder; the "+AE" variant decodes
the encoded test codes instead (DBAE Table 4)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..diffusion import parameterization as param
from ..diffusion.samplers import sample_ddim, time_grid
from ..diffusion.schedules import Schedule, get_schedule, sigma_from_alpha
from ..nets.mlp import MLPSkipNet


class LatentPrior(nn.Module):
    def __init__(self, z_dim: int, hidden: int, layers: int):
        super().__init__()
        self.net = MLPSkipNet(z_dim, hidden, layers)
        self.register_buffer("z_mean", torch.zeros(z_dim))
        self.register_buffer("z_std", torch.ones(z_dim))

    def standardise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.z_mean) / self.z_std

    def unstandardise(self, u: torch.Tensor) -> torch.Tensor:
        return u * self.z_std + self.z_mean

    def fit_standardisation(self, z: torch.Tensor) -> None:
        self.z_mean.copy_(z.mean(0))
        self.z_std.copy_(z.std(0).clamp_min(1e-6))


def build(cfg: dict) -> LatentPrior:
    p = cfg["prior"]
    return LatentPrior(cfg["z_dim"], p["hidden"], p["layers"])


def schedule() -> Schedule:
    return get_schedule("constant_beta")


@dataclass
class PriorLoss:
    """||eps_hat - eps||_1 per code (mean over dimensions), unreduced over the batch. The batch holds
    standardised codes."""
    schedule: Schedule

    def __call__(self, model: LatentPrior, u0: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        b = u0.shape[0]
        t = torch.rand(b, generator=generator).to(u0.device)
        eps = torch.randn(u0.shape, generator=generator).to(u0.device)
        alpha = self.schedule(t)[:, None]
        u_t = alpha * u0 + sigma_from_alpha(alpha) * eps
        return {"l1": (model.net(u_t, t) - eps).abs().mean(1)}


def loss() -> PriorLoss:
    return PriorLoss(schedule())


@torch.no_grad()
def sample(model: LatentPrior, n: int, steps: int, generator: torch.Generator) -> torch.Tensor:
    """n codes in the encoder's units: DDIM over standardised codes, then unstandardised."""
    sched = schedule()

    def fn(u_t, t, cond):
        alpha = sched(t)[:, None]
        return param.to_x0_eps("eps", model.net(u_t, t), u_t, alpha, sigma_from_alpha(alpha))

    dev = model.z_mean.device
    u_T = torch.randn((n, model.z_mean.numel()), generator=generator).to(dev)
    return model.unstandardise(sample_ddim(fn, u_T, time_grid(steps, device=dev), schedule=sched))
