"""Denoising diffusion variational inference (`ddvi_denoising_diffusion_variational_inference` §3.2-3.4,
App. A, E, F; release details in DESIGN.md).

q_phi(z | x) = int q_phi(y_T | x) prod_t q_phi(y_{t-1} | y_t, x) dy_{1:T},  y_0 = z:
  q_phi(y_T | x) = N(mu_phi(x), sigma_phi^2(x))                   (the encoder, which also emits a context c(x))
  q_phi(y_{t-1} | y_t, x) = N(mu_phi(y_t, x, t), beta_t I)         (fixed variance, §3.4)
  mu_phi = (y_t - beta_t / sqrt(1 - alpha_bar_t) eps_phi(y_t, c(x), t)) / sqrt(1 - beta_t)   (Ho et al. 2020)
and the noising process r(y_t | y_{t-1}) = N(sqrt(1 - beta_t) y_{t-1}, beta_t I), beta linear from beta_1 to
beta_T over T steps. beta_T stays well below 1: the reverse mean divides by sqrt(1 - beta_t), and DDPM's
schedule rescaled to T = 20 (beta_T -> 1) amplifies y_T thirty-fold in the first reverse step (a 19-nat
hole in the bound at that one step, measured); alpha_bar_T ~ 0.03 leaves the rest to q(y_T | x).

Wake / reconstruction term (eq. 4-5), one reparameterised sample of the whole chain:
  E_q[log p(x | z)] - E_q[log q(y_{0:T} | x) - log r(y_{1:T} | z) - log p(z)]
Sleep term (eq. 6-11), phi only: z ~ p(z), x~ = E[x | z] from the decoder without gradient, then
  L_diff = E_t ||eps - eps_phi(sqrt(alpha_bar_t) z + sqrt(1 - alpha_bar_t) eps, c(x~), t)||^2
           + KL(r(y_T | z) || q_phi(y_T | x~))
``sleep``: "wake_sleep" (§3.3, an ELBO update then a sleep update per batch, App. F), "latent" (App. A:
the sleep term uses the batch's own x and is added to the ELBO, one update), or "none" (Table 8).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..diffusion.schedules import linear_beta_alpha_bar
from ..nets.mlp import TimeMLP
from . import lvm
from .lvm import Z_DIM, Ctx, Stage

SLEEP = ("wake_sleep", "latent", "none")


class DDVI(nn.Module):
    def __init__(self, nets: dict, dim: int, steps: int, beta: tuple[float, float]):
        super().__init__()
        self.ctx_dim = nets["context"]
        self.encoder, self.decoder = lvm.encoder_decoder(nets, dim, 2 * Z_DIM + self.ctx_dim)
        den = nets["denoiser"]
        self.denoiser = TimeMLP(Z_DIM + self.ctx_dim, Z_DIM, steps, den["hidden"], den["layers"])
        ab = linear_beta_alpha_bar(steps, beta[0], beta[1]).float()
        self.register_buffer("alpha_bar", ab, persistent=False)          # alpha_bar_0..T
        self.register_buffer("betas", 1 - ab[1:] / ab[:-1], persistent=False)  # beta_1..T at index t-1
        self.T = steps

    def q_T(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return h[:, :Z_DIM], h[:, Z_DIM:2 * Z_DIM].clamp(-12, 8), h[:, 2 * Z_DIM:]

    def eps(self, y: torch.Tensor, c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.denoiser(torch.cat([y, c], 1), t)


def build(nets: dict, dim: int, method: dict, labelled: bool) -> DDVI:
    return DDVI(nets, dim, int(method["steps"]), tuple(method["beta"]))


def posterior_chain(model: DDVI, x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One reparameterised draw z ~ q_phi(z | x) and log q(y_{0:T} | x) - log r(y_{1:T} | z)."""
    mu, logvar, c = model.q_T(x)
    y, log_q = lvm.reparam(mu, logvar, g)
    log_r = torch.zeros_like(log_q)
    for t in range(model.T, 0, -1):
        b, ab = model.betas[t - 1], model.alpha_bar[t]
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        mean = (y - b / (1 - ab).sqrt() * model.eps(y, c, tt)) / (1 - b).sqrt()
        e = torch.randn(y.shape, generator=g).to(y)
        y_prev = mean + b.sqrt() * e
        log_q = log_q - 0.5 * (e.square().sum(1) + Z_DIM * (math.log(2 * math.pi) + b.log()))
        log_r = log_r - 0.5 * ((y - (1 - b).sqrt() * y_prev).square().sum(1) / b + Z_DIM * (math.log(2 * math.pi)
                                                                                           + b.log()))
        y = y_prev
    return y, log_q - log_r


def _wake(model: DDVI, batch, ctx: Ctx, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x, part = batch
    z, log_qr = posterior_chain(model, x, g)
    return model.decoder(z), log_qr - lvm.log_prior(model, ctx, z, part)


def sleep_terms(model: DDVI, x_tilde: torch.Tensor, z: torch.Tensor, g: torch.Generator) -> dict[str, torch.Tensor]:
    """L_diff (eq. 11) for latents z and the data x~ they explain: denoising loss + KL at y_T."""
    n = z.shape[0]
    mu, logvar, c = model.q_T(x_tilde)
    t = torch.randint(1, model.T + 1, (n,), generator=g).to(z.device)
    ab = model.alpha_bar[t].unsqueeze(1)
    eps = torch.randn(z.shape, generator=g).to(z)
    pred = model.eps(ab.sqrt() * z + (1 - ab).sqrt() * eps, c, t)
    ab_T = model.alpha_bar[model.T]
    var_T = 1 - ab_T
    kl_T = 0.5 * (logvar - var_T.log() + (var_T + (ab_T.sqrt() * z - mu).square()) / logvar.exp() - 1).sum(1)
    return {"sleep_diff": (pred - eps).square().sum(1), "sleep_kl_T": kl_T}


def stages(method: dict, ctx: Ctx) -> list[Stage]:
    sleep = method["sleep"]
    w_sleep = float(method.get("sleep_weight", 1.0))

    def wake(model, batch, g):
        out, reg = _wake(model, batch, ctx, g)
        return lvm.elbo_terms(out, batch[0], reg, ctx)

    def model_sleep(model, batch, g):
        # sleep (§3.3): the model dreams (z, x~); only phi learns from it
        prior = lvm.prior_of(model, ctx)
        with torch.no_grad():
            z = prior.sample(batch[0].shape[0], g).to(batch[0])
            x_t = lvm.mean_x(model.decoder(z), ctx.likelihood)
        return {k: w_sleep * v for k, v in sleep_terms(model, x_t, z, g).items()}

    def wake_latent_sleep(model, batch, g):
        terms = wake(model, batch, g)
        with torch.no_grad():
            z = lvm.prior_of(model, ctx).sample(batch[0].shape[0], g).to(batch[0])
        return terms | {k: w_sleep * v for k, v in sleep_terms(model, batch[0], z, g).items()}

    if sleep == "wake_sleep":
        return [Stage("wake", wake, ()), Stage("sleep", model_sleep, ("encoder", "denoiser"))]
    if sleep == "latent":
        return [Stage("wake", wake_latent_sleep, ())]
    if sleep == "none":
        return [Stage("wake", wake, ())]
    raise ValueError(f"unknown DDVI sleep {sleep!r}; known: {', '.join(SLEEP)}")


@torch.no_grad()
def elbo(model: DDVI, batch, ctx: Ctx, g: torch.Generator) -> dict[str, torch.Tensor]:
    out, reg = _wake(model, batch, ctx, g)
    return lvm.evaluation_elbo(out, batch[0], reg, ctx.likelihood)


@torch.no_grad()
def encode(model: DDVI, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return posterior_chain(model, x, g)[0]
