"""Noise schedules of the variance-preserving process x_t = alpha_t x_0 + sigma_t eps.

Every schedule is a plain function ``alpha(t) -> alpha_t`` over continuous t in [0, 1]
(torch tensors in, tensors out); sigma_t = sqrt(1 - alpha_t^2) follows from VP.

References (two-phase DAE paper, `dae_two_phase_training`, §3 "Noise schedules" and supp. §9):
- linear-beta (Ho et al.): beta_k linear from 1e-4 to 0.02 over K = 1000 steps,
  alpha_{t_k} = sqrt(prod_{j<=k} (1 - beta_j)) at t_k = k / K.
- cosine (Nichol & Dhariwal): alpha_t = cos(pi t / 2).
- shifted cosine SC-S (Hoogeboom et al.): alpha_t = sqrt(sigmoid(-2 ln tan(pi t / 2) + 2 ln S)).
- inverted (Hudson et al., as reconstructed in supp. §9): alpha_t = sqrt((2 / pi) arccos(sqrt t)).
- constant-beta (DiffAE's latent DDIM, beta = 0.008 over K = 1000 steps; DBAE App. C Table 7):
  alpha_{t_k} = sqrt((1 - beta)^k), extended to continuous t as alpha_t = (1 - beta)^(K t / 2).
- vp-linear (the continuous VP SDE of Song et al. 2021, eq. 11, beta(t) = beta_min + t (beta_max -
  beta_min) with beta in [0.1, 20]; ScoreVAE App. B.1): log alpha_t = -t^2 (beta_max - beta_min) / 4
  - t beta_min / 2, the mean coefficient of the perturbation kernel p(x_t | x_0).

The VP SDE dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw of any schedule has beta(t) = -2 d log alpha_t / dt
(``beta_of``); the log-SNR lambda_t = log(alpha_t^2 / sigma_t^2) is monotone decreasing in t, which
``t_of_log_snr`` inverts by bisection.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch

Schedule = Callable[[torch.Tensor], torch.Tensor]


def sigma_from_alpha(alpha: torch.Tensor) -> torch.Tensor:
    return (1.0 - alpha.square()).clamp_min(0.0).sqrt()


def linear_beta_alpha_bar(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Discrete alpha_bar_k = prod_{j=1..k}(1 - beta_j) for k = 0..K (alpha_bar_0 = 1), float64."""
    betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1.0 - betas, 0)])


def linear_beta(t: torch.Tensor, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    # Continuous-time extension: log alpha_bar is interpolated linearly between the grid
    # points t_k = k/K, so the schedule equals the product formula exactly on the grid.
    log_ab = linear_beta_alpha_bar(num_steps, beta_start, beta_end).log().to(t.device)
    pos = t.double().clamp(0.0, 1.0) * num_steps
    lo = pos.floor().long().clamp(max=num_steps - 1)
    frac = pos - lo
    log_ab_t = log_ab[lo] * (1 - frac) + log_ab[lo + 1] * frac
    return (0.5 * log_ab_t).exp().to(t.dtype)


def shifted_cosine(t: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    # Computed through the log-SNR so that t = 0 and t = 1 give exactly 1 and 0.
    t64 = t.double().clamp(0.0, 1.0)
    log_snr = -2.0 * torch.log(torch.tan(math.pi * t64 / 2)) + 2.0 * math.log(scale)
    alpha = torch.sigmoid(log_snr).sqrt()
    alpha = torch.where(t64 >= 1.0, torch.zeros_like(alpha), alpha)
    return alpha.to(t.dtype)


def cosine(t: torch.Tensor) -> torch.Tensor:
    return torch.cos(math.pi * t.double().clamp(0.0, 1.0) / 2).clamp_min(0.0).to(t.dtype)


def inverted(t: torch.Tensor) -> torch.Tensor:
    t64 = t.double().clamp(0.0, 1.0)
    return ((2.0 / math.pi) * torch.arccos(t64.sqrt())).sqrt().to(t.dtype)


def constant_beta(t: torch.Tensor, beta: float = 0.008, num_steps: int = 1000) -> torch.Tensor:
    t64 = t.double().clamp(0.0, 1.0)
    return torch.exp(0.5 * num_steps * t64 * math.log1p(-beta)).to(t.dtype)


def vp_linear(t: torch.Tensor, beta_min: float = 0.1, beta_max: float = 20.0) -> torch.Tensor:
    t64 = t.double()
    return torch.exp(-0.25 * t64.square() * (beta_max - beta_min) - 0.5 * t64 * beta_min).to(t.dtype)


def beta_of(schedule: Schedule, t: torch.Tensor) -> torch.Tensor:
    """beta(t) = -2 d log alpha_t / dt, by autograd through the schedule (float64). Evaluated just
    inside (0, 1): the schedules clamp t to [0, 1], and a clamp has zero gradient on its bounds."""
    with torch.enable_grad():
        tt = t.detach().double().clamp(1e-9, 1 - 1e-9).requires_grad_(True)
        (grad,) = torch.autograd.grad(schedule(tt).log().sum(), tt)
    return (-2.0 * grad).to(t.dtype)


def log_snr(schedule: Schedule, t: torch.Tensor) -> torch.Tensor:
    a2 = schedule(t.double()).square()
    return torch.log(a2) - torch.log1p(-a2)


def t_of_log_snr(schedule: Schedule, lam: torch.Tensor, iters: int = 60) -> torch.Tensor:
    """The t in [0, 1] with log_snr(t) = lam (bisection; lambda_t decreases in t)."""
    lo = torch.zeros_like(lam, dtype=torch.float64)
    hi = torch.ones_like(lam, dtype=torch.float64)
    lam = lam.double()
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        above = log_snr(schedule, mid) > lam  # still too little noise: the root lies later
        lo = torch.where(above, mid, lo)
        hi = torch.where(above, hi, mid)
    return 0.5 * (lo + hi)


def _shifted_cosine(scale: float | None, num_steps: int) -> Schedule:
    if scale is None or scale <= 0:
        raise ValueError(f"schedule 'shifted_cosine' needs a positive scale S, got {scale!r}")
    return partial(shifted_cosine, scale=float(scale))


# name -> factory(scale, num_steps) -> alpha(t). Adding a schedule is its alpha(t) above and one line here;
# the config's schedule names (params.schema.yaml `x-registry: schedules`) follow.
SCHEDULES: dict[str, Callable[[float | None, int], Schedule]] = {
    "linear_beta": lambda scale, num_steps: partial(linear_beta, num_steps=num_steps),
    "cosine": lambda scale, num_steps: cosine,
    "shifted_cosine": _shifted_cosine,
    "inverted": lambda scale, num_steps: inverted,
    "constant_beta": lambda scale, num_steps: partial(constant_beta, num_steps=num_steps),
    "vp_linear": lambda scale, num_steps: vp_linear,
}


def get_schedule(name: str, scale: float | None = None, num_steps: int = 1000) -> Schedule:
    """Explicit factory: ``name`` in SCHEDULES; ``scale`` is S for the shifted cosine family."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known schedules: {', '.join(SCHEDULES)}")
    return SCHEDULES[name](scale, num_steps)
