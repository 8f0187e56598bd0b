"""Samplers over a VP schedule, all with one signature:

    sample_*(model, x, ts, cond=None, generator=None, *, schedule, **options) -> x

``model(x_t, t, cond) -> (x0_hat, eps_hat)`` is a denoiser (any parameterisation converted by
the caller); ``ts`` is the time grid to walk, ``cond`` carries conditioning (a DAE's z, a bridge
endpoint, ...) untouched to the model, ``schedule`` is alpha(t) from ``diffusion.schedules``.

DDIM (Song et al. 2021; two-phase DAE paper §3 "Sampling"): with eta = 0 the update
    x_s = alpha_s x0_hat(x_t, t) + sigma_s eps_hat(x_t, t)
is the same formula whether s < t (sampling) or s > t (DDIM inversion), so inversion is the
sampler walked along the reversed grid.

Reverse VP SDE and probability-flow ODE (Song et al. 2021, eqs. 6 and 13; ScoreVAE §2.2 eq. 5 and
eq. 9 with the conditional score): with beta(t) = -2 d log alpha_t / dt and score = -eps_hat / sigma_t,
    SDE  dx = [-beta x / 2 - beta score] dt + sqrt(beta) dw_bar   (Euler-Maruyama, Song's "x_mean"
         update without noise on the last step),
    ODE  dx = [-beta x / 2 - beta score / 2] dt                   (Euler),
walked from ts[0] down to ts[-1]; ``denoise`` then returns x0_hat(x, ts[-1]) (Tweedie's estimate,
Song et al.'s noise removal), one more network evaluation.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .schedules import Schedule, beta_of, sigma_from_alpha

Denoiser = Callable[[torch.Tensor, torch.Tensor, Any], tuple[torch.Tensor, torch.Tensor]]


def time_grid(num_steps: int, t_max: float = 1.0, t_min: float = 0.0, device=None) -> torch.Tensor:
    """Uniform DDIM grid t_K = t_max > ... > t_0 = t_min (K = num_steps, K + 1 points)."""
    if num_steps < 1:
        raise ValueError(f"DDIM needs at least 1 step, got {num_steps}")
    return torch.linspace(t_max, t_min, num_steps + 1, device=device)


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


@torch.no_grad()
def sample_ddim(model: Denoiser, x: torch.Tensor, ts: Sequence[float] | torch.Tensor, cond: Any = None,
                generator: torch.Generator | None = None, *, schedule: Schedule, eta: float = 0.0,
                clip_x0: bool = False) -> torch.Tensor:
    """Walk x from ts[0] to ts[-1]. eta > 0 adds DDIM's stochastic term (only for decreasing ts).

    ``clip_x0`` clamps x0_hat to the data range [-1, 1] and moves eps_hat so that the pair still
    explains x_t (x_t = alpha_t x0 + sigma_t eps), as guided-diffusion / DiffAE sampling does; it
    matters most for eps-prediction at high noise, where x0_hat = (x_t - sigma eps) / alpha
    amplifies any error in eps."""
    ts = torch.as_tensor(ts, dtype=torch.float64, device=x.device)
    b = x.shape[0]
    for t, s in itertools.pairwise(ts):
        a_t, a_s = schedule(t), schedule(s)
        sig_t, sig_s = sigma_from_alpha(a_t), sigma_from_alpha(a_s)
        x0, eps = model(x, t.to(x.dtype).expand(b), cond)
        if clip_x0:
            x0c = x0.clamp(-1, 1)
            # (x0 - x0c) is zero wherever nothing was clipped, so sigma_t -> 0 stays finite
            eps = eps + (a_t / sig_t.clamp_min(1e-12)).to(x.dtype) * (x0 - x0c)
            x0 = x0c
        if eta > 0 and s < t:
            # sigma_eta of DDIM eq. (16) in VP notation
            var = eta**2 * (sig_s**2 / sig_t.clamp_min(1e-12) ** 2) * (1 - (a_t / a_s.clamp_min(1e-12)) ** 2)
            var = var.clamp(0.0, sig_s.item() ** 2)
            dir_coef = (sig_s**2 - var).clamp_min(0.0).sqrt()
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = a_s.to(x.dtype) * x0 + dir_coef.to(x.dtype) * eps + var.sqrt().to(x.dtype) * noise
        else:
            x = a_s.to(x.dtype) * x0 + sig_s.to(x.dtype) * eps
    return x


@torch.no_grad()
def sample_ddim_inversion(model: Denoiser, x: torch.Tensor, ts: Sequence[float] | torch.Tensor, cond: Any = None,
                          generator: torch.Generator | None = None, *, schedule: Schedule,
                          clip_x0: bool = False) -> torch.Tensor:
    """DDIM inversion x_0 -> x_T. ``ts`` is the *sampling* grid (decreasing); it is walked backwards
    so that inverting then sampling with the same ``ts`` is a round trip."""
    ts = torch.as_tensor(ts, dtype=torch.float64, device=x.device)
    return sample_ddim(model, x, ts.flip(0), cond, generator, schedule=schedule, clip_x0=clip_x0)


def _vp_drift(model: Denoiser, x: torch.Tensor, t: torch.Tensor, cond: Any, schedule: Schedule,
              score_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(reverse-time drift f - score_weight * g^2 * score, beta_t) at time t."""
    b = x.shape[0]
    beta = beta_of(schedule, t.reshape(1)).to(x.dtype)
    sigma = sigma_from_alpha(schedule(t)).clamp_min(1e-12).to(x.dtype)
    _, eps = model(x, t.to(x.dtype).expand(b), cond)
    score = -eps / sigma
    return -0.5 * beta * x - score_weight * beta * score, beta


def _denoise(model: Denoiser, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
    return model(x, t.to(x.dtype).expand(x.shape[0]), cond)[0]


@torch.no_grad()
def sample_vp_sde(model: Denoiser, x: torch.Tensor, ts: Sequence[float] | torch.Tensor, cond: Any = None,
                  generator: torch.Generator | None = None, *, schedule: Schedule, denoise: bool = True) -> torch.Tensor:
    """Euler-Maruyama on the reverse VP SDE from ts[0] to ts[-1] (decreasing)."""
    ts = torch.as_tensor(ts, dtype=torch.float64, device=x.device)
    last = len(ts) - 2
    for i, (t, s) in enumerate(itertools.pairwise(ts)):
        dt = (t - s).to(x.dtype)  # > 0: time runs backwards
        drift, beta = _vp_drift(model, x, t, cond, schedule, 1.0)
        x = x - drift * dt
        if i < last:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            x = x + (beta * dt).sqrt() * noise
    return _denoise(model, x, ts[-1], cond) if denoise else x


@torch.no_grad()
def sample_vp_ode(model: Denoiser, x: torch.Tensor, ts: Sequence[float] | torch.Tensor, cond: Any = None,
                  generator: torch.Generator | None = None, *, schedule: Schedule, denoise: bool = True) -> torch.Tensor:
    """Euler steps of the probability-flow ODE from ts[0] to ts[-1] (deterministic given x)."""
    ts = torch.as_tensor(ts, dtype=torch.float64, device=x.device)
    for t, s in itertools.pairwise(ts):
        drift, _ = _vp_drift(model, x, t, cond, schedule, 0.5)
        x = x - drift * (t - s).to(x.dtype)
    return _denoise(model, x, ts[-1], cond) if denoise else x
