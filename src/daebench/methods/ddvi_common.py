"""Pieces shared by the DDVI study's latent-variable models (`ddvi_denoising_diffusion_variational_inference`
§3, §4, §5, App. E-F): DDVI and its baselines share one encoder and one decoder architecture (App. E): MLPs
(MNIST) or, with ``nets.arch: cnn``, CIFAR-10's convolutional encoder and transposed-convolutional decoder
(nets/conv.py), which reshape the flat vectors themselves.

Data x are flat vectors: image pixels in [0, 1] with a Bernoulli decoder ("bce", MNIST / digits), or
genotype PCA features with a unit-variance Gaussian decoder ("gaussian", trained on the MSE).

A training step is a list of ``Stage``s, each one Adam update of the named child modules on its own
loss dict (unreduced per-example terms): wake-sleep alternates an ELBO update of (theta, phi) with a
sleep update of phi only (App. F), AAEB alternates reconstruction, discriminator and generator updates.

Training loss (App. F): the reconstruction term is averaged over the data dimensions and the
regulariser log q(y, z | x) - log r(y | z) p(z) (nats, Monte Carlo) is weighted by ``kl_weight``.
The reported ELBO follows §5.1: the reconstruction log-likelihood averaged across pixels, minus the
unweighted regulariser; ``elbo_nats`` is the plain ELBO with the log-likelihood summed. ``elbo_release``
is the estimator of the official release (topwasu/DDVI) on the same model, in the units of ``elbo``:
for the Gaussian posteriors it uses the release's log q (``release_log_q_excess``), for DDVI its
``DiffVAEWarmup.get_elbo`` (methods/ddvi.py). Neither is a bound; evaluation only, nothing trains on it.

Semi-supervised setting (§4.1) as implemented here: p(x, z, l) = p(x | z) p(z | l) p(l) with q(z | x);
a labelled example's regulariser uses the partition's prior p(z | l), an unlabelled one the marginal
p(z) = sum_l p(l) p(z | l). This is §4.1's bound with a decoder and an encoder that do not take l (the
partition of z already carries it), which avoids the sum over ten labels per unlabelled example.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..nets.conv import ConvDecoder, ConvEncoder
from ..nets.mlp import mlp

LIKELIHOODS = ("bce", "gaussian")
Z_DIM = 2
LOG2PI = math.log(2 * math.pi)

Batch = tuple[torch.Tensor, torch.Tensor]  # (x [B, D], partition label [B], -1 where unlabelled)


@dataclass
class Ctx:
    """What every loss of the study needs besides the networks."""
    prior: object                      # StructuredPrior, or None when the model owns a learnable prior
    likelihood: str = "bce"
    kl_weight: float = 1.0
    anneal: bool = False               # kl_weight ramps linearly from 0 over training (App. F, AEVB)
    prior_weight: float = 1.0          # App. F: AEVB's training multiplies log p(z) by 5; evaluation uses 1
    progress: float = field(default=0.0)

    def weight(self) -> float:
        return self.kl_weight * (self.progress if self.anneal else 1.0)


def prior_of(model: nn.Module, ctx: Ctx):
    return model.prior if hasattr(model, "prior") else ctx.prior


# What a family's build gets as ``dim``: the flat data's dimension, or for images their shape (channels, height,
# width), which the CNN needs and the MLPs flatten. The vectors themselves are flat either way.
Shape = int | tuple[int, int, int]
ARCHS = ("mlp", "cnn")


def flat_dim(shape: Shape) -> int:
    return shape if isinstance(shape, int) else math.prod(shape)


def encoder_decoder(nets: dict, dim: Shape, enc_out: int, dec_in: int = Z_DIM) -> tuple[nn.Module, nn.Module]:
    """The encoder x -> [B, enc_out] and decoder z -> x every family shares (App. E): ``nets.arch`` mlp (MNIST's
    MLPs, ``hidden`` x ``layers``; also when the key is absent) or cnn (CIFAR-10's convolutional pair, which
    needs ``dim`` as the image shape)."""
    arch = nets.get("arch", "mlp")
    if arch == "cnn":
        if isinstance(dim, int):
            raise ValueError("ddvi.nets.arch: cnn needs the data's image shape (channels, height, width), got a flat "
                             f"dimension {dim}; genotype features and other flat data take the mlp")
        return ConvEncoder(dim, enc_out), ConvDecoder(dec_in, dim)
    if arch != "mlp":
        raise ValueError(f"unknown ddvi.nets.arch {arch!r}; known: {', '.join(ARCHS)}")
    d = flat_dim(dim)
    return mlp(d, nets["hidden"], nets["layers"], enc_out), mlp(dec_in, nets["hidden"], nets["layers"], d)


def gaussian_log_prob(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return -0.5 * (((x - mu).square() / logvar.exp()) + logvar + LOG2PI).sum(1)


def reparam(mu: torch.Tensor, logvar: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """z = mu + sigma eps and log N(z; mu, sigma^2), computed from eps for accuracy."""
    eps = torch.randn(mu.shape, generator=g).to(mu)
    z = mu + (0.5 * logvar).exp() * eps
    return z, -0.5 * (eps.square() + logvar + LOG2PI).sum(1)


# The release's Gaussian log-density (topwasu/DDVI, algorithms/vaes/utils.py::sample(..., ret_log_prob=True)):
#   -sum(log sigma^2 + eps^2 / 2 + log(2 * 3.14) / 2)
# log sigma^2 where 1/2 log sigma^2 belongs (and 3.14 for pi). Its ``elbo_release`` columns reproduce it.
RELEASE_LOG2PI = math.log(2 * 3.14)


def release_log_q_excess(logvar: torch.Tensor) -> torch.Tensor:
    """log q_release(z) - log N(z; mu, sigma^2) for a draw z = mu + sigma eps (it does not depend on eps):
    -1/2 sum log sigma^2 - d/2 (log(2 * 3.14) - log(2 pi))."""
    return -0.5 * logvar.sum(1) - 0.5 * logvar.shape[1] * (RELEASE_LOG2PI - LOG2PI)


def log_px(out: torch.Tensor, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """log p(x | z) summed over dimensions; ``out`` is the decoder's output (logits for bce)."""
    if likelihood == "bce":
        return -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(1)
    return -0.5 * ((out - x).square() + LOG2PI).sum(1)


def recon_loss(out: torch.Tensor, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """The training reconstruction term, averaged over dimensions (App. F: BCE for images, MSE otherwise)."""
    if likelihood == "bce":
        return F.binary_cross_entropy_with_logits(out, x, reduction="none").mean(1)
    return (out - x).square().mean(1)


def mean_x(out: torch.Tensor, likelihood: str) -> torch.Tensor:
    return torch.sigmoid(out) if likelihood == "bce" else out


def log_prior(model: nn.Module, ctx: Ctx, z: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
    """log p(z | l) where the label is known (part >= 0), else log p(z)."""
    prior = prior_of(model, ctx)
    lp = prior.log_prob(z)
    if (part >= 0).any():
        lp = torch.where(part >= 0, prior.log_prob(z, part.clamp_min(0)), lp)
    return lp


def elbo_terms(recon_out: torch.Tensor, x: torch.Tensor, reg: torch.Tensor, ctx: Ctx) -> dict[str, torch.Tensor]:
    """The wake-stage loss dict from decoder output and the (unweighted) regulariser."""
    return {"recon": recon_loss(recon_out, x, ctx.likelihood), "kl": ctx.weight() * reg}


def evaluation_elbo(recon_out: torch.Tensor, x: torch.Tensor, reg: torch.Tensor, likelihood: str) -> dict:
    """Per example: ``elbo`` (§5.1: log p(x | z) averaged over dimensions, minus the regulariser in nats),
    ``elbo_nats`` (the plain ELBO) and ``kl`` (the regulariser)."""
    lp = log_px(recon_out, x, likelihood)
    return {"elbo": lp / x.shape[1] - reg, "elbo_nats": lp - reg, "kl": reg}
