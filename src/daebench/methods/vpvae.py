"""Pieces shared by the ScoreVAE study's families (scorevae, diffdec, vae; `scorevae_variational_diffusion_autoencoder`
§2-3, App. A.1; release details in docs/architecture.md, "Implementation facts" and "More release facts").

Gaussian encoder: the network outputs (mu, log sigma^2) of q(z | x) = N(mu, sigma^2 I), as in the release;
KL(q || N(0, I)) = -1/2 sum_k (1 + log sigma_k^2 - mu_k^2 - sigma_k^2), summed over the latent dimensions.

Denoising score matching in eps-space. With x_t = alpha_t x_0 + sigma_t eps, grad log p(x_t | x_0) =
-eps / sigma_t and a model score s = -eps_hat / sigma_t, the weighted DSM term of §3.5 is
    1/2 lambda(t) ||grad log p(x_t | x_0) - s||^2 = 1/2 (lambda(t) / sigma_t^2) ||eps_hat - eps||^2,
summed over pixels (the same units as the KL, so beta means what it means in the paper):
  "simple"     lambda = sigma_t^2 (App. B.1's prior objective): t ~ U(t_min, 1), weight 1/2.
  "likelihood" lambda = g(t)^2 = beta(t) (§3.5, Song et al. 2021): the weight beta(t) / sigma_t^2 makes
               plain t ~ U(t_min, 1) very noisy near t = 0, so t is importance-sampled with density
               proportional to it. Since d/dt log(sigma_t^2 / alpha_t^2) = beta(t) / sigma_t^2, that density
               is uniform in the log-SNR lambda_t, and the unbiased per-example weight is the constant
               1/2 (lambda(t_min) - lambda(1)).
Either weighting can be given other noise levels (`levels`, the method key ``loss_levels``): with "simple",
t is drawn so that its log-SNR is that of a named schedule at u ~ U(0, 1), and the weight stays 1/2, so the
term is the simple one with lambda(t) = sigma_t^2 p(t) / U(t): every such lambda has the same minimiser,
the conditional score, but not the same pace. The two-phase DAE paper (§3-4, Table 2) finds that a latent
code is learnt from the high-noise levels ("high-level structures are recovered in timesteps with high
noise levels"); ScoreVAE's encoder is trained through that same conditional score.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..diffusion import samplers
from ..diffusion.samplers import time_grid
from ..diffusion.schedules import Schedule, get_schedule, log_snr, sigma_from_alpha, t_of_log_snr

WEIGHTINGS = ("simple", "likelihood")
LATENTS = ("sample", "mean")
# Decoding modes of the VP families (scorevae, diffdec): mode -> sampler with the shared signature
# (diffusion/samplers.py). Adding one is a function there and a line here; the modes follow.
SAMPLERS = {"sde": samplers.sample_vp_sde, "ode": samplers.sample_vp_ode}
MODES = tuple(SAMPLERS)
T_MIN_TRAIN = 1e-5  # the release's prior (get_general_sde_loss_fn's default eps): t ~ U(eps, 1)
# ScoreVAE's encoder and DiffDecoder: the release passes its VP sampling_eps, 1e-3, as the loss's eps
# (lightning_modules/EncoderOnlyPretrainedScoreVAEmodel.py: t_dist = Uniform(sampling_eps, 1); ScoreVAEmodel.py).
T_MIN_LATENT = 1e-3
# The encoders of this study end by flattening their last feature map into a Linear: the paper (App. B, "The final
# activation is flattened") and both releases (enc_pool = 'flatten-linear'; the baselines' simple_encoder ends in
# nn.Flatten). The method key encoder_head: mean pools it over space instead, as DiffAE's encoder does. For ScoreVAE
# it matters most: its decoder is the encoder's input Jacobian, and pooling discards where a feature was.
ENCODER_HEAD = "flatten"
DEFAULTS = {"encoder_head": ENCODER_HEAD}


def encoder_net(nets: dict, method: dict) -> dict:
    """The nets.encoder block with the method's encoder_head (this study's default: flatten)."""
    return {**nets["encoder"], "head": method.get("encoder_head", ENCODER_HEAD)}


def schedule_of(method: dict) -> Schedule:
    """The VP SDE: the schedule of the method's last phase that names one."""
    for phase in reversed(method["phases"]):
        if phase.get("schedule"):
            return get_schedule(phase["schedule"]["name"], phase["schedule"].get("scale"))
    raise ValueError("a VP-diffusion method needs a phase with a schedule (e.g. {name: vp_linear})")


def posterior(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder output [B, 2d] -> (mu, log sigma^2); the clamp only guards exp() against overflow."""
    mu, logvar = h.chunk(2, dim=1)
    return mu, logvar.clamp(-30.0, 20.0)


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(1)


def sample_z(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)


def latent(mu: torch.Tensor, logvar: torch.Tensor, how: str, generator: torch.Generator) -> torch.Tensor:
    """The code used to reconstruct: a sample of q(z | x_0) (ScoreVAE Fig. 1) or its mean."""
    if how not in LATENTS:
        raise ValueError(f"unknown latent choice {how!r}; known: {', '.join(LATENTS)}")
    return sample_z(mu, logvar, generator) if how == "sample" else mu


def sample_t(weighting: str, schedule: Schedule, b: int, generator: torch.Generator,
             t_min: float = T_MIN_TRAIN, levels: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(t [B], weight [B]) so that weight * ||eps_hat - eps||^2 estimates the DSM term (module header).
    ``levels`` ({name, scale}: a schedule of diffusion.schedules) draws the log-SNR of that schedule at
    u ~ U(0, 1), clipped to the VP SDE's range [lambda(1), lambda(t_min)]; only with "simple"."""
    u = torch.rand(b, generator=generator, dtype=torch.float64)
    if levels is not None:
        if weighting != "simple":
            raise ValueError(f"loss_levels needs weighting: simple (its weight is the simple one), not {weighting!r}")
        ends = log_snr(schedule, torch.tensor([t_min, 1.0], dtype=torch.float64))
        lam = log_snr(get_schedule(levels["name"], levels.get("scale")), u).clamp(float(ends[1]), float(ends[0]))
        return t_of_log_snr(schedule, lam).clamp(t_min, 1.0), torch.full((b,), 0.5, dtype=torch.float64)
    if weighting == "simple":
        return t_min + (1 - t_min) * u, torch.full((b,), 0.5, dtype=torch.float64)
    if weighting == "likelihood":
        ends = log_snr(schedule, torch.tensor([t_min, 1.0], dtype=torch.float64))
        lam = ends[0] + (ends[1] - ends[0]) * u
        return t_of_log_snr(schedule, lam), torch.full((b,), 0.5 * float(ends[0] - ends[1]), dtype=torch.float64)
    raise ValueError(f"unknown DSM weighting {weighting!r}; known: {', '.join(WEIGHTINGS)}")


def perturb(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_t, alpha_t, sigma_t) of the perturbation kernel, alpha/sigma shaped to broadcast over x."""
    shape = (-1,) + (1,) * (x0.dim() - 1)
    alpha = schedule(t).to(x0.dtype).view(shape)
    sigma = sigma_from_alpha(alpha)
    return alpha * x0 + sigma * eps, alpha, sigma


def full_precision(x: torch.Tensor) -> torch.Tensor:
    """A loss term in at least float32 (reduced-precision AMP outputs are promoted; float64 stays float64)."""
    return x if x.dtype == torch.float64 else x.float()


def dsm(eps_hat: torch.Tensor, eps: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    err = full_precision(eps_hat - eps)
    return weight.to(eps.device, err.dtype) * err.square().flatten(1).sum(1)


EpsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def as_denoiser(eps_fn: EpsFn, schedule: Schedule):
    """eps_hat(x_t, t, z) -> the samplers' denoiser (x0_hat, eps_hat)."""

    def fn(x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor):
        alpha = schedule(t.double()).to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))
        eps = eps_fn(x_t, t, z)
        return (x_t - sigma_from_alpha(alpha) * eps) / alpha.clamp_min(1e-5), eps

    return fn


def decode(eps_fn: EpsFn, schedule: Schedule, z: torch.Tensor, shape: tuple, mode: str, nfe: int,
           generator: torch.Generator, sampler: dict) -> torch.Tensor:
    """x ~ p(x | z) by the conditional reverse SDE or the probability-flow ODE from x_1 ~ N(0, I)."""
    if mode not in SAMPLERS:
        raise ValueError(f"unknown decoding mode {mode!r}; known: {', '.join(SAMPLERS)}")
    x_T = torch.randn(shape, generator=generator).to(z.device)
    ts = time_grid(nfe, t_max=1.0, t_min=sampler.get("t_min", 1e-3), device=z.device)
    return SAMPLERS[mode](as_denoiser(eps_fn, schedule), x_T, ts, z, generator, schedule=schedule,
                          denoise=sampler.get("denoise", True))


def cost(family: str, mode: str, nfe: int, sampler: dict) -> dict[str, int]:
    if mode not in MODES:
        raise ValueError(f"unknown reconstruction mode {mode!r} for {family}; known: {', '.join(MODES)}")
    return {"nfe_encoder": 1, "nfe_endpoint": 0, "nfe_decode": nfe + int(sampler.get("denoise", True))}
