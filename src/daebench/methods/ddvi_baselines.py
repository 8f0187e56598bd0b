"""DDVI's baselines (`ddvi_denoising_diffusion_variational_inference` §5, App. B, E, F), all on the shared
encoder / decoder of App. E.

AEVB (Kingma & Welling 2013): q(z | x) = N(mu(x), sigma^2(x)); regulariser log q(z | x) - log p(z) by
  Monte Carlo, since the structured priors have no closed-form KL (log p(z) is their KDE).
AEVB-IAF (Kingma et al. 2016): z_0 ~ N(mu, sigma^2), then ``flows`` IAF steps with a context c(x)
  (App. F: 10 features), each a MADE (App. E: 4 layers, 128 units) giving (m, s):
    sigma_k = sigmoid(s), z <- sigma_k z + (1 - sigma_k) m,  log q -= sum log sigma_k
  with the variable order reversed between steps.
H-AEVB (Ranganath et al. 2016, hierarchical variational model; App. B): auxiliary y ~ q(y | x), then
  z ~ q(z | y, x), with a learned reverse model r(y | z, x); regulariser
    log q(y | x) + log q(z | y, x) - log r(y | z, x) - log p(z).
AAEB (Makhzani et al. 2015): deterministic encoder z = E(x), MSE reconstruction (App. F), and a
  discriminator (App. E: MLP, two hidden layers) between prior samples and codes, each input perturbed
  with Gaussian noise whose sigma falls from ``noise`` to 0 at ``noise_end`` of training (App. F: 0.3 -> 0
  at epoch 150 of 200). Three updates per batch: reconstruction, discriminator, generator. No density,
  so no ELBO (N/A in the paper's tables). In the semi-supervised setting the discriminator also sees the
  one-hot label (an 11th slot for "unlabelled"), as in Makhzani et al. §5.
Evaluation also reports ``elbo_release``, the release's estimator on the same draw (its ``get_elbo`` of VAE,
IAF_VAE and H_IAF_VAE in algorithms/vaes/vanilla_vae.py, all through utils.py::sample's log q): each
Gaussian level's log density with log sigma^2 in place of 1/2 log sigma^2. The release's H-AEVB scores y
against N(0, I) where ours has the learned r(y | z, x); ours keeps its own r.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nets.mlp import MADE, mlp
from . import ddvi_common
from .ddvi_common import Z_DIM, Ctx
from .family import DDVIFamily
from .objective import Stage
from .priors import N_PARTS


class AEVB(nn.Module):
    def __init__(self, nets: dict, dim: ddvi_common.Shape, extra: int = 0):
        super().__init__()
        self.encoder, self.decoder = ddvi_common.encoder_decoder(nets, dim, 2 * Z_DIM + extra)

    def q(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return h[:, :Z_DIM], h[:, Z_DIM:2 * Z_DIM].clamp(-12, 8), h[:, 2 * Z_DIM:]


class AEVBIAF(AEVB):
    def __init__(self, nets: dict, dim: ddvi_common.Shape, flows: int):
        super().__init__(nets, dim, nets["context"])
        made = nets["made"]
        orders = [list(range(Z_DIM)) if k % 2 == 0 else list(range(Z_DIM))[::-1] for k in range(flows)]
        self.flows = nn.ModuleList(MADE(Z_DIM, nets["context"], made["hidden"], made["layers"], o) for o in orders)


class HAEVB(AEVB):
    def __init__(self, nets: dict, dim: ddvi_common.Shape):
        super().__init__(nets, dim, nets["context"])
        aux = nets["aux"]
        self.q_z = mlp(Z_DIM + nets["context"], aux["hidden"], aux["layers"], 2 * Z_DIM)
        self.r_y = mlp(Z_DIM + nets["context"], aux["hidden"], aux["layers"], 2 * Z_DIM)


class AAEB(nn.Module):
    def __init__(self, nets: dict, dim: ddvi_common.Shape, labelled: bool):
        super().__init__()
        self.encoder, self.decoder = ddvi_common.encoder_decoder(nets, dim, Z_DIM)
        self.n_label = N_PARTS + 1 if labelled else 0
        self.discriminator = mlp(Z_DIM + self.n_label, nets["hidden"], nets["layers"], 1)

    def critic(self, z: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        if self.n_label:
            z = torch.cat([z, F.one_hot(torch.where(part >= 0, part, N_PARTS), self.n_label).to(z)], 1)
        return self.discriminator(z).squeeze(1)


def _split(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return h[:, :Z_DIM], h[:, Z_DIM:].clamp(-12, 8)


def posterior_terms(model: nn.Module, x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor,
                                                                                  torch.Tensor]:
    """(z ~ q(z | x), the regulariser's q-side: log q(z | x), or log q(y, z | x) - log r(y | z, x), and the
    excess of the release's log q over it: -1/2 sum log sigma^2 + const per Gaussian level,
    ddvi_common.RELEASE_LOG2PI)."""
    mu, logvar, c = model.q(x)
    z, log_q = ddvi_common.reparam(mu, logvar, g)
    excess = ddvi_common.release_log_q_excess(logvar)
    if isinstance(model, AEVBIAF):
        for made in model.flows:
            m, s = made(z, c)
            gate = torch.sigmoid(s)
            z = gate * z + (1 - gate) * m
            log_q = log_q - F.logsigmoid(s).sum(1)
    elif isinstance(model, HAEVB):
        y = z
        mu_z, logvar_z = _split(model.q_z(torch.cat([y, c], 1)))
        z, log_qz = ddvi_common.reparam(mu_z, logvar_z, g)
        log_q = log_q + log_qz - ddvi_common.gaussian_log_prob(y, *_split(model.r_y(torch.cat([z, c], 1))))
        excess = excess + ddvi_common.release_log_q_excess(logvar_z)
    return z, log_q, excess


def posterior(model: nn.Module, x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(z ~ q(z | x), the regulariser's q-side: log q(z | x), or log q(y, z | x) - log r(y | z, x))."""
    return posterior_terms(model, x, g)[:2]


def _forward(model, batch, ctx: Ctx, g, prior_weight: float = 1.0):
    x, part = batch
    z, log_q = posterior(model, x, g)
    return model.decoder(z), log_q - prior_weight * ddvi_common.log_prior(model, ctx, z, part)


def build_aevb(nets: dict, dim: ddvi_common.Shape, method: dict, labelled: bool) -> AEVB:
    return AEVB(nets, dim)


def build_iaf(nets: dict, dim: ddvi_common.Shape, method: dict, labelled: bool) -> AEVBIAF:
    return AEVBIAF(nets, dim, int(method["flows"]))


def build_haevb(nets: dict, dim: ddvi_common.Shape, method: dict, labelled: bool) -> HAEVB:
    return HAEVB(nets, dim)


def build_aaeb(nets: dict, dim: ddvi_common.Shape, method: dict, labelled: bool) -> AAEB:
    return AAEB(nets, dim, labelled)


def variational_stages(method: dict, ctx: Ctx) -> list[Stage]:
    def step(model, batch, g):
        out, reg = _forward(model, batch, ctx, g, ctx.prior_weight)
        return ddvi_common.elbo_terms(out, batch[0], reg, ctx)
    return [Stage("elbo", step, ())]


def aaeb_stages(method: dict, ctx: Ctx) -> list[Stage]:
    def noise_sigma() -> float:
        return float(method["noise"]) * max(0.0, 1.0 - ctx.progress / float(method["noise_end"]))

    def noisy(z, g):
        return z + noise_sigma() * torch.randn(z.shape, generator=g).to(z)

    def recon(model, batch, g):
        x = batch[0]
        return {"recon_mse": (ddvi_common.mean_x(model.decoder(model.encoder(x)), ctx.likelihood) - x).square().mean(1)}

    def disc(model, batch, g):
        x, part = batch
        prior = ddvi_common.prior_of(model, ctx)
        with torch.no_grad():
            z_fake = model.encoder(x)
            z_real = prior.sample(x.shape[0], g, part.clamp_min(0)) if (part >= 0).all() else _mixed(prior, part, g)
        real = model.critic(noisy(z_real.to(x), g), part)
        fake = model.critic(noisy(z_fake, g), part)
        return {"disc": F.binary_cross_entropy_with_logits(real, torch.ones_like(real), reduction="none")
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake), reduction="none")}

    def gen(model, batch, g):
        x, part = batch
        fake = model.critic(noisy(model.encoder(x), g), part)
        return {"gen": F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake), reduction="none")}

    return [Stage("recon", recon, ("encoder", "decoder")), Stage("disc", disc, ("discriminator",)),
            Stage("gen", gen, ("encoder",))]


def _mixed(prior, part: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Prior samples matching a batch's labels: p(z | l) where labelled, p(z) where not."""
    z = prior.sample(part.shape[0], g)
    if (part >= 0).any():
        z = torch.where((part >= 0).unsqueeze(1), prior.sample(part.shape[0], g, part.clamp_min(0)), z)
    return z


@torch.no_grad()
def variational_elbo(model, batch, ctx: Ctx, g) -> dict[str, torch.Tensor]:
    """The exact bound (``elbo``, ``elbo_nats``) and, on the same draw, the release's estimator
    (``elbo_release``: its log q, algorithms/vaes/utils.py::sample, charges log sigma^2 where 1/2 log sigma^2
    belongs, so it sits 1/2 sum |log sigma^2| below the bound when sigma < 1)."""
    x, part = batch
    z, log_q, excess = posterior_terms(model, x, g)
    reg = log_q - ddvi_common.log_prior(model, ctx, z, part)
    res = ddvi_common.evaluation_elbo(model.decoder(z), x, reg, ctx.likelihood)
    return res | {"elbo_release": res["elbo"] - excess}


@torch.no_grad()
def variational_encode(model, x: torch.Tensor, g) -> torch.Tensor:
    return posterior(model, x, g)[0]


@torch.no_grad()
def aaeb_encode(model, x: torch.Tensor, g) -> torch.Tensor:
    return model.encoder(x)


_VARIATIONAL = frozenset({"prior_weight", "anneal", "kl_weight"})
FAMILIES = (
    DDVIFamily(name="aevb", build=build_aevb, stages=variational_stages, elbo=variational_elbo,
               encode=variational_encode, keys=_VARIATIONAL),
    DDVIFamily(name="aevb_iaf", build=build_iaf, stages=variational_stages, elbo=variational_elbo,
               encode=variational_encode, keys=_VARIATIONAL | {"flows"}, required=("flows",)),
    DDVIFamily(name="haevb", build=build_haevb, stages=variational_stages, elbo=variational_elbo,
               encode=variational_encode, keys=_VARIATIONAL),
    DDVIFamily(name="aaeb", build=build_aaeb, stages=aaeb_stages, elbo=None, encode=aaeb_encode,
               keys=frozenset({"noise", "noise_end"}), required=("noise", "noise_end")),
)
