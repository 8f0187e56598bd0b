"""Prediction types of a VP diffusion network and conversions between them.

Two-phase DAE paper §3 "Formulation and training" (and Salimans & Ho 2022 for v):
  eps-prediction: f = eps
  x-prediction:   f = x_0
  v-prediction:   f = v_t := alpha_t eps - sigma_t x_0
with x_t = alpha_t x_0 + sigma_t eps and alpha_t^2 + sigma_t^2 = 1.
"""
from __future__ import annotations

import torch

PREDICTIONS = ("eps", "x", "v")

# Divisions by alpha_t (eps-pred at t = 1) or sigma_t (x-pred at t = 0) are singular at the
# schedule's endpoints; a floor keeps samplers finite there instead of producing inf/NaN.
_FLOOR = 1e-5


def _check(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction type {prediction!r}; known: {', '.join(PREDICTIONS)}")


def target(prediction: str, x0: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The regression target y* of Algorithm 2 (supp. §7)."""
    _check(prediction)
    if prediction == "eps":
        return eps
    if prediction == "x":
        return x0
    return alpha * eps - sigma * x0


def to_x0_eps(prediction: str, f: torch.Tensor, x_t: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Network output f -> (x0_hat, eps_hat)."""
    _check(prediction)
    if prediction == "eps":
        return (x_t - sigma * f) / alpha.clamp_min(_FLOOR), f
    if prediction == "x":
        return f, (x_t - alpha * f) / sigma.clamp_min(_FLOOR)
    # v = alpha eps - sigma x0  =>  x0 = alpha x_t - sigma v,  eps = sigma x_t + alpha v
    return alpha * x_t - sigma * f, sigma * x_t + alpha * f


def from_x0_eps(prediction: str, x0: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """(x0, eps) -> what a network of this prediction type outputs."""
    return target(prediction, x0, eps, alpha, sigma)


def score(prediction: str, f: torch.Tensor, x_t: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """grad log p_t(x_t) implied by the network output (paper §3)."""
    _, eps = to_x0_eps(prediction, f, x_t, alpha, sigma)
    return -eps / sigma.clamp_min(_FLOOR)
