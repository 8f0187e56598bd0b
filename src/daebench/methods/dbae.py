"""Diffusion Bridge AutoEncoders (`dbae_diffusion_bridge_autoencoders`, §3, App. C; release details in
docs/architecture.md, "Implementation facts"): encoder x_0 -> z, endpoint decoder z -> x_T (the information
bottleneck: x_T depends on x_0 only through z), and a bridge denoiser D(x_t, t; x_T, z) on the VP bridge
pinned at x_T, all trained jointly with DDBM's preconditioned, weighted x-prediction loss (§3.3 eq. 13, Algorithm 1).

Encoders: "stochastic" (DBAE) q(z|x) = N(mu, sigma^2) with sigma = exp(5 tanh(s / 5)) + 0.01 and a
reparameterised sample in training; "deterministic" (DBAE-d) z = mu. Evaluation uses z = mu.

Optional TC regulariser (§4.3, after beta-TCVAE, Chen et al. 2018 §3): the total correlation
KL(q(z) || prod_k q(z_k)) of the aggregate posterior q(z) = E_x q(z|x), estimated per example with the
minibatch as the sample of x:
    log q(z_i)   ~ logsumexp_j log q(z_i | x_j) - log M,
    log q(z_ik)  ~ logsumexp_j log q(z_ik | x_j) - log M,   TC_i = log q(z_i) - sum_k log q(z_ik).
beta-TCVAE's minibatch-weighted sampling subtracts log(N M) instead, which adds the constant
(d - 1) log N (hundreds of nats at d = 32): same gradients, unreadable loss curves, so not used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..diffusion.bridge import VPBridge, karras_times, nfe_of, sample_bridge, steps_for_nfe
from ..nets.unet import Encoder, EndpointDecoder, UNet
from .family import ImageFamily

ENCODERS = ("stochastic", "deterministic")
MODES = ("endpoint",)


class DBAE(nn.Module):
    """Encoder, endpoint decoder and bridge score network; a plain container."""

    def __init__(self, in_channels: int, image_size: int, z_dim: int, stochastic: bool, decoder: dict,
                 encoder: dict, endpoint: dict):
        super().__init__()
        self.stochastic = stochastic
        self.z_dim = z_dim
        self.encoder = Encoder(in_channels, image_size, 2 * z_dim if stochastic else z_dim, **encoder)
        self.endpoint = EndpointDecoder(z_dim, in_channels, image_size, **endpoint)
        # DDBM conditions on the endpoint by concatenating it to the input; z joins the time embedding.
        self.decoder = UNet(2 * in_channels, image_size, z_dim=z_dim, out_channels=in_channels, z_mode="emb", **decoder)


def build(cfg: dict, in_channels: int, image_size: int) -> DBAE:
    nets, method = cfg["nets"], cfg["method"]
    return DBAE(in_channels, image_size, nets["z_dim"], method["encoder"] == "stochastic", nets["decoder"],
                nets["encoder"], nets["endpoint"])


def bridge_of(method: dict) -> VPBridge:
    return VPBridge(**method["bridge"])


def posterior(model: DBAE, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(mu, sigma) of q(z | x_0); sigma is None for the deterministic encoder."""
    h = model.encoder(x0)
    if not model.stochastic:
        return h, None
    mu, s = h.chunk(2, dim=1)
    return mu, torch.exp(5 * torch.tanh(s / 5)) + 0.01


def encode(model: DBAE, x0: torch.Tensor) -> torch.Tensor:
    return posterior(model, x0)[0]


def code(model: DBAE, x0: torch.Tensor, sampler: dict, generator: torch.Generator) -> torch.Tensor:
    """The code a reconstruction decodes from: the posterior mean (DBAE reconstructs from E[z | x])."""
    return encode(model, x0)


def denoiser(model: DBAE, bridge: VPBridge):
    """D(x_t, t; cond = (x_T, z)) = c_skip x_t + c_out F(c_in x_t, c_noise; x_T, z)."""

    def fn(x_t: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        x_T, z = cond
        p = {k: v.to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1))) for k, v in bridge.precondition(t.double()).items()}
        F = model.decoder(torch.cat([p["c_in"] * x_t, x_T], dim=1), p["c_noise"].flatten(), z)
        return p["c_skip"] * x_t + p["c_out"] * F

    return fn


def total_correlation(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Minibatch estimate of the total correlation per example, shape [B] (see the module header)."""
    m = z.shape[0]
    # log N(z_i,k | mu_j,k, sigma_j,k) for every pair (i, j) and dimension k: [B, B, D]
    log_qzx = -0.5 * (((z[:, None] - mu[None]) / sigma[None]) ** 2 + 2 * torch.log(sigma[None]) + math.log(2 * math.pi))
    log_norm = math.log(m)
    log_qz = torch.logsumexp(log_qzx.sum(2), dim=1) - log_norm
    log_prod = (torch.logsumexp(log_qzx, dim=1) - log_norm).sum(1)
    return log_qz - log_prod


@dataclass
class BridgeLoss:
    """DBAE's autoencoding objective (Algorithm 1) with DDBM weighting; terms unreduced over the batch."""
    bridge: VPBridge
    tc_weight: float

    def __call__(self, model: DBAE, x0: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        b = x0.shape[0]
        mu, sigma = posterior(model, x0)
        if sigma is not None:
            z = mu + sigma * torch.randn(mu.shape, generator=generator).to(mu.device)
        else:
            z = mu
        x_T = model.endpoint(z)
        br = self.bridge
        t = br.t_min + (br.T - br.t_min) * torch.rand(b, generator=generator, dtype=torch.float64)
        eps = torch.randn(x0.shape, generator=generator).to(x0.device)
        x_t = br.sample_marginal(x0, x_T, t.to(x0.device), eps)
        d = denoiser(model, br)(x_t, t.to(x0.device), (x_T, z))
        weight = br.precondition(t)["weight"].to(x0.device, x0.dtype)
        terms = {"bridge": weight * (d - x0).float().square().flatten(1).mean(1)}
        if self.tc_weight > 0:
            terms["tc"] = self.tc_weight * total_correlation(z, mu, sigma)
        return terms


def phase_loss(method: dict, phase: dict) -> BridgeLoss:
    if method["tc_weight"] > 0 and method["encoder"] != "stochastic":
        raise ValueError("the TC regulariser needs q(z|x): set encoder: stochastic or tc_weight: 0")
    return BridgeLoss(bridge_of(method), float(method["tc_weight"]))


# dbae.sampler's defaults, as the schema fills them (a test compares the two). The validated dbae.sampler block
# holds every key, but another study's evaluation passes its own sampler block to whichever family it evaluates
# (Table 5's PPL jobs pass only clip_x0), so a key such a block lacks takes its default here, in one place.
SAMPLER_DEFAULTS = {"solver": "heun", "churn": 0.0, "rho": 7.0, "clip_x0": True}


def _sampler(sampler: dict) -> dict:
    """The bridge sampler's options: ``sampler`` over SAMPLER_DEFAULTS."""
    return {**SAMPLER_DEFAULTS, **sampler}


def _grid(nfe: int, opts: dict, bridge: VPBridge) -> torch.Tensor:
    steps = steps_for_nfe(nfe, opts["solver"], opts["churn"])
    return karras_times(steps, t_min=bridge.t_min, t_max=bridge.T - 1e-4, rho=opts["rho"])


def infer_endpoint(model: DBAE, method: dict, x0: torch.Tensor, z: torch.Tensor, nfe: int, sampler: dict) -> torch.Tensor:
    """x_T = Dec(z): one network evaluation, no ODE (DBAE §3.1, Table 5)."""
    return model.endpoint(z)


@torch.no_grad()
def decode(model: DBAE, method: dict, z: torch.Tensor, nfe: int, generator: torch.Generator, sampler: dict,
           x_T: torch.Tensor | None = None, shape: tuple | None = None, mode: str | None = None) -> torch.Tensor:
    """Bridge sampling x_T -> x_0 given z with at most ``nfe`` evaluations (Algorithms 2 and 4)."""
    br, opts = bridge_of(method), _sampler(sampler)
    if x_T is None:
        x_T = model.endpoint(z)
    return sample_bridge(denoiser(model, br), x_T, _grid(nfe, opts, br), (x_T, z), generator, bridge=br,
                         solver=opts["solver"], churn=opts["churn"], clip_x0=opts["clip_x0"])


def cost(method: dict, mode: str, nfe: int, sampler: dict) -> dict[str, int]:
    if mode not in MODES:
        raise ValueError(f"unknown reconstruction mode {mode!r} for DBAE; known: {', '.join(MODES)}")
    opts = _sampler(sampler)
    solver, churn = opts["solver"], opts["churn"]
    return {"nfe_encoder": 1, "nfe_endpoint": 1, "nfe_decode": nfe_of(steps_for_nfe(nfe, solver, churn), solver, churn)}


def diffusion_nfe(cost: dict[str, int]) -> int:
    """Evaluations of the bridge network; the endpoint comes from the separate decoder, not from it."""
    return cost["nfe_decode"]


FAMILY = ImageFamily(
    name="dbae", build=build, phase_loss=phase_loss, encode=encode, code=code, decode=decode,
    cost=cost, diffusion_nfe=diffusion_nfe, infer_endpoint=infer_endpoint, modes=MODES,
    endpoint_mode="endpoint", endpoint_by="endpoint decoder", nets=("z_dim", "decoder", "encoder", "endpoint"),
    keys=frozenset({"encoder", "tc_weight", "bridge"}), required=("encoder", "tc_weight"),
    defaults={"bridge": {}})  # the bridge block's own defaults are the schema's (release values)
