"""The VP diffusion bridge of DDBM (Zhou et al. 2024) as used by DBAE
(`dbae_diffusion_bridge_autoencoders`, §3.1 eq. 9 and App. C.1: "VP SDE, DDBM preconditioning and
time weighting, pred-x"). The paper's equations are stripped from its text; the formulas below are
the release's, recorded in docs/architecture.md ("Implementation facts").

VP SDE with beta(t) = beta_min + beta_d t:
    log alpha_t = -1/4 beta_d t^2 - 1/2 beta_min t,   sigma_t^2 = 1 - alpha_t^2,
    lambda_t    = log(alpha_t^2 / sigma_t^2) = -log(exp(1/2 beta_d t^2 + beta_min t) - 1).
Doob's h-transform pinned at x_T gives the Gaussian bridge marginal
    x_t = a_t x_T + b_t x_0 + sqrt(c_t) eps,
    a_t = exp(lambda_T - lambda_t + log alpha_t - log alpha_T),
    b_t = alpha_t (1 - e^{lambda_T - lambda_t}),   c_t = sigma_t^2 (1 - e^{lambda_T - lambda_t}).
Preconditioning (data std sigma_0, endpoint std sigma_T, their covariance cov):
    A = a_t^2 sigma_T^2 + b_t^2 sigma_0^2 + 2 a_t b_t cov + c_t,   c_in = A^{-1/2},
    c_skip = (b_t sigma_0^2 + a_t cov) / A,
    c_out = sqrt(a_t^2 (sigma_T^2 sigma_0^2 - cov^2) + sigma_0^2 c_t) c_in,
    D(x_t) = c_skip x_t + c_out F(c_in x_t, c_noise; x_T, z),   loss weight 1 / c_out^2.
c_noise = 250 ln t in DDPM time units; our nets take t in [0, 1] and multiply by 1000, so
c_noise = ln(t) / 4 here.

Sampling (DDBM Algorithm 1): Karras time steps (rho = 7) from T - 1e-4 down to t_min, then 0; at each
step an optional Euler-Maruyama "churn" sub-step of the bridge SDE, then a Heun (or Euler) step of
the probability-flow ODE; the last step (to t = 0) is Euler. The drift uses the denoiser through
    grad log q(x_t | x_T) ~ -(x_t - a_t x_T - b_t D(x_t)) / c_t,
    h(x_t) = grad log p(x_T | x_t) = -(x_t - alpha_t / alpha_T x_T) / (sigma_t^2 (e^{lambda_t - lambda_T} - 1)),
    ODE: dx = [f(t) x - g(t)^2 (1/2 grad log q - h)] dt,  SDE: dx = [f x - g^2 (grad log q - h)] dt + g dW,
with f(t) = d log alpha_t / dt = -beta(t) / 2 and g(t)^2 = beta(t).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

# model(x_t, t, cond) -> x0_hat: the bridge denoiser D (pred-x), cond carries (x_T, z) untouched.
BridgeDenoiser = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]

SOLVERS = ("heun", "euler")


@dataclass(frozen=True)
class VPBridge:
    beta_d: float = 2.0
    beta_min: float = 0.1
    T: float = 1.0
    sigma_0: float = 0.5
    sigma_T: float = 0.5
    cov: float = 0.0
    t_min: float = 1e-4

    # --- the VP SDE -------------------------------------------------------------------------
    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return -0.25 * self.beta_d * t**2 - 0.5 * self.beta_min * t

    def lam(self, t: torch.Tensor) -> torch.Tensor:
        """log-SNR lambda_t; expm1 keeps it finite and exact for small t."""
        return -torch.log(torch.expm1(0.5 * self.beta_d * t**2 + self.beta_min * t))

    def sigma2(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.expm1(2 * self.log_alpha(t))

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + self.beta_d * t

    # --- bridge marginal ----------------------------------------------------------------------
    def coefficients(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(a_t, b_t, c_t) of x_t = a_t x_T + b_t x_0 + sqrt(c_t) eps, computed in float64."""
        t = torch.as_tensor(t, dtype=torch.float64)
        T = torch.tensor(self.T, dtype=torch.float64)
        d = self.lam(T) - self.lam(t)  # <= 0
        a = torch.exp(d + self.log_alpha(t) - self.log_alpha(T))
        one_minus = -torch.expm1(d)
        b = torch.exp(self.log_alpha(t)) * one_minus
        c = self.sigma2(t) * one_minus
        return a, b, c

    def precondition(self, t: torch.Tensor) -> dict[str, torch.Tensor]:
        a, b, c = self.coefficients(t)
        s0, sT, cov = self.sigma_0, self.sigma_T, self.cov
        A = a**2 * sT**2 + b**2 * s0**2 + 2 * a * b * cov + c
        c_in = A.rsqrt()
        c_skip = (b * s0**2 + a * cov) / A
        c_out = (a**2 * (sT**2 * s0**2 - cov**2) + s0**2 * c).sqrt() * c_in
        c_noise = 0.25 * torch.log(torch.as_tensor(t, dtype=torch.float64) + 1e-44)
        return {"c_in": c_in, "c_skip": c_skip, "c_out": c_out, "c_noise": c_noise, "weight": c_out**-2}

    def sample_marginal(self, x0: torch.Tensor, x_T: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        a, b, c = (_bc(v, x0) for v in self.coefficients(t))
        return a * x_T + b * x0 + c.sqrt() * eps

    # --- reverse-time drift -------------------------------------------------------------------
    def drift(self, x: torch.Tensor, t: float, x0_hat: torch.Tensor, x_T: torch.Tensor,
              stochastic: bool) -> tuple[torch.Tensor, float]:
        """(dx/dt, g(t)^2) of the bridge ODE (or of the SDE when ``stochastic``) at scalar time t."""
        tt = torch.tensor(float(t), dtype=torch.float64)
        T = torch.tensor(self.T, dtype=torch.float64)
        a, b, c = self.coefficients(tt)
        s2 = self.sigma2(tt)
        ratio = torch.exp(self.log_alpha(tt) - self.log_alpha(T))
        h_den = s2 * torch.expm1(self.lam(tt) - self.lam(T))
        f = -0.5 * float(self.beta(tt))
        g2 = float(self.beta(tt))
        grad_logq = -(x - float(a) * x_T - float(b) * x0_hat) / float(c)
        h = -(x - float(ratio) * x_T) / float(h_den)
        k = 1.0 if stochastic else 0.5
        return f * x - g2 * (k * grad_logq - h), g2


def _bc(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    v = torch.as_tensor(v)
    return v.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def karras_times(steps: int, *, t_min: float = 1e-4, t_max: float = 1.0 - 1e-4, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022) eq. 5 spacing over bridge time: ``steps`` points from t_max to t_min, then 0."""
    if steps < 1:
        raise ValueError(f"the bridge sampler needs at least 1 step, got {steps}")
    if steps == 1:
        return torch.tensor([t_max, 0.0], dtype=torch.float64)
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = t_min ** (1 / rho), t_max ** (1 / rho)
    ts = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([ts, torch.zeros(1, dtype=torch.float64)])


def nfe_of(steps: int, solver: str, churn: float) -> int:
    """Network evaluations of ``sample_bridge`` on ``karras_times(steps)``: Heun costs 2 per step except
    the last (Euler to t = 0), churn adds 1 per step."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown bridge solver {solver!r}; known: {', '.join(SOLVERS)}")
    per = 2 if solver == "heun" else 1
    return per * (steps - 1) + 1 + (steps if churn > 0 else 0)


def steps_for_nfe(nfe: int, solver: str, churn: float) -> int:
    """The most steps whose cost is at most ``nfe`` evaluations (at least 1 step)."""
    steps = 1
    while nfe_of(steps + 1, solver, churn) <= nfe:
        steps += 1
    return steps


@torch.no_grad()
def sample_bridge(model: BridgeDenoiser, x: torch.Tensor, ts: Sequence[float] | torch.Tensor, cond: Any = None,
                  generator: torch.Generator | None = None, *, bridge: VPBridge, solver: str = "heun",
                  churn: float = 0.0, clip_x0: bool = True) -> torch.Tensor:
    """Walk from the endpoint x = x_T along ``ts`` (decreasing, ending at 0) to x_0.

    ``churn`` in [0, 1): fraction of each step taken as an Euler-Maruyama step of the bridge SDE
    before the ODE step (DDBM's churn_step_ratio; 0 = deterministic ODE sampling)."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown bridge solver {solver!r}; known: {', '.join(SOLVERS)}")
    if not 0.0 <= churn < 1.0:
        raise ValueError(f"churn must be in [0, 1), got {churn}")
    ts = [float(t) for t in torch.as_tensor(ts, dtype=torch.float64)]
    x_T = x
    b = x.shape[0]

    def denoise(x_t: torch.Tensor, t: float) -> torch.Tensor:
        x0 = model(x_t, torch.full((b,), t, device=x.device, dtype=x.dtype), cond)
        return x0.clamp(-1, 1) if clip_x0 else x0

    for t, s in itertools.pairwise(ts):
        if churn > 0:
            t_hat = t + (s - t) * churn
            d, g2 = bridge.drift(x, t, denoise(x, t), x_T, stochastic=True)
            dt = t_hat - t
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            x = x + d * dt + noise * math.sqrt(abs(dt) * g2)
            t = t_hat
        d = bridge.drift(x, t, denoise(x, t), x_T, stochastic=False)[0]
        dt = s - t
        if s == 0.0 or solver == "euler":
            x = x + d * dt
        else:
            x2 = x + d * dt
            d2 = bridge.drift(x2, s, denoise(x2, s), x_T, stochastic=False)[0]
            x = x + 0.5 * (d + d2) * dt
    return x.clamp(-1, 1) if clip_x0 else x
