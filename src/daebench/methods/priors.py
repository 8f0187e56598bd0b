"""Structured 2-D priors p(z) of the DDVI study and the kernel density estimator that scores them
(`ddvi_denoising_diffusion_variational_inference`, App. D).

- pinwheel (Johnson et al. 2016): ``arms`` Gaussian blobs N((1, 0), diag(radial_std^2, tangential_std^2))
  rotated by 2 pi k / arms + rate * exp(radial coordinate), so each arm curls outwards. App. D names only
  the source and 10 arms; Johnson et al.'s values are radial 0.3, tangential 0.05, rate 0.25; the release
  (topwasu/DDVI priors.py PinWheelPrior) uses radial 0.15, tangential 0.005 (its comments keep 0.3 / 0.05).
- swiss roll (Marsland 2014), ``form``: "marsland": position u ~ U[0, 1] along the roll, angle
  a = 1.5 pi (1 + 2u), point a (cos a, sin a) / (4.5 pi) plus isotropic noise, so the outer end sits at
  radius 1; "release" (its SwissRollPrior, noise 0 in the Table 1 config): radius 3 sqrt(u), angle
  4.5 pi sqrt(u), so it winds out from the origin to radius 3.
- square: position s ~ U[0, 8) along the perimeter of [-1, 1]^2 from the top-left corner, clockwise,
  plus noise sigma = 0.06 (App. D). ``noise_dir``: "isotropic" (2-D), or "normal", across the side only,
  as the release's SquarePrior (``less_noisy_square``: noise_level 3 / 50 = 0.06) does.
Semi-supervised partitions (App. D): a pinwheel's arms; ten equal intervals of the 1-D position (u, s)
for the swiss roll and the square. ``sample(..., part=l)`` draws from p(z | l).

None of these has a tractable density, so AEVB-style ELBOs score log p(z) with a KDE over prior
samples, an equal mixture of Gaussian kernels at several bandwidths (App. D: 0.005 ... 0.05).
The clustering prior (§4.2, first approach) is a mixture of K isotropic Gaussians with learnable means
theta; a latent's cluster is the component with the highest responsibility.
"""
from __future__ import annotations

import math

import torch
from torch import nn

PRIORS = ("pinwheel", "swiss_roll", "square")
N_PARTS = 10


def _pinwheel(n: int, g: torch.Generator, part: torch.Tensor | None, *, arms: int, radial_std: float,
              tangential_std: float, rate: float, **_) -> tuple[torch.Tensor, torch.Tensor]:
    k = torch.randint(0, arms, (n,), generator=g) if part is None else part % arms
    f = torch.randn(n, 2, generator=g) * torch.tensor([radial_std, tangential_std])
    f[:, 0] += 1.0
    ang = 2 * math.pi * k / arms + rate * torch.exp(f[:, 0])
    c, s = torch.cos(ang), torch.sin(ang)
    return torch.stack([c * f[:, 0] - s * f[:, 1], s * f[:, 0] + c * f[:, 1]], 1), k


def _position(n: int, g: torch.Generator, part: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """u ~ U[0, 1), or U within the l-th of N_PARTS equal intervals when the part is given."""
    u = torch.rand(n, generator=g)
    if part is not None:
        u = (part + u) / N_PARTS
    return u, (u * N_PARTS).long().clamp_max(N_PARTS - 1)


SWISS_ROLL_FORMS = ("marsland", "release")
SQUARE_NOISE = ("isotropic", "normal")


def _swiss_roll(n: int, g: torch.Generator, part: torch.Tensor | None, *, noise: float, form: str = "marsland",
                **_):
    u, k = _position(n, g, part)
    if form == "marsland":
        a = 1.5 * math.pi * (1 + 2 * u)
        z = torch.stack([a * torch.cos(a), a * torch.sin(a)], 1) / (4.5 * math.pi)
    elif form == "release":  # topwasu/DDVI priors.py SwissRollPrior: radius 3 sqrt(u), angle 4.5 pi sqrt(u)
        r, a = 3.0 * u.sqrt(), 4.5 * math.pi * u.sqrt()
        z = torch.stack([r * torch.cos(a), r * torch.sin(a)], 1)
    else:
        raise ValueError(f"unknown swiss_roll form {form!r}; known: {', '.join(SWISS_ROLL_FORMS)}")
    return z + noise * torch.randn(n, 2, generator=g), k


def square_perimeter(s: torch.Tensor) -> torch.Tensor:
    """Position s in [0, 8) -> point on the perimeter of [-1, 1]^2, clockwise from the top-left corner."""
    side, r = torch.div(s, 2, rounding_mode="floor").long(), torch.remainder(s, 2)
    x = torch.stack([-1 + r, torch.ones_like(r), 1 - r, -torch.ones_like(r)], 1)
    y = torch.stack([torch.ones_like(r), 1 - r, -torch.ones_like(r), -1 + r], 1)
    pick = side.clamp(0, 3).unsqueeze(1)
    return torch.cat([x.gather(1, pick), y.gather(1, pick)], 1)


def _square(n: int, g: torch.Generator, part: torch.Tensor | None, *, noise: float, noise_dir: str = "isotropic",
            **_):
    u, k = _position(n, g, part)
    s = 8 * u
    if noise_dir == "isotropic":
        e = torch.randn(n, 2, generator=g)
    elif noise_dir == "normal":  # the release's SquarePrior: noise across the side only (x on the left/right sides)
        vertical = torch.remainder(torch.div(s, 2, rounding_mode="floor"), 2) == 1     # sides 1 and 3
        e1 = torch.randn(n, generator=g)
        e = torch.stack([torch.where(vertical, e1, 0.0), torch.where(vertical, 0.0, e1)], 1)
    else:
        raise ValueError(f"unknown square noise_dir {noise_dir!r}; known: {', '.join(SQUARE_NOISE)}")
    return square_perimeter(s) + noise * e, k


_SAMPLERS = {"pinwheel": _pinwheel, "swiss_roll": _swiss_roll, "square": _square}


def sample(name: str, n: int, generator: torch.Generator, params: dict,
           part: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(z [n, 2], partition index [n]) from p(z), or from p(z | l = part) when ``part`` is given."""
    try:
        fn = _SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown prior {name!r}; known priors: {', '.join(PRIORS)}") from None
    return fn(n, generator, part, **params)


NEAREST = 256


class _KDELogProb(torch.autograd.Function):
    """log mean_{m, b} N(z; c_m, h_b^2 I) with its gradient in closed form,
    d/dz = sum_{m, b} w_mb (c_m - z) / h_b^2 (w: the kernels' posterior weights).

    Only each point's ``NEAREST`` centres enter the sum: a farther centre lies beyond the 256-th
    neighbour's distance r and adds at most exp(-r^2 / (2 h_max^2)) relative to the nearest one (with
    5,000 prior samples and App. D's h <= 0.05 that is below 1e-5). This keeps a training step's KDE at
    a few milliseconds instead of a hundred (exp over [H, B, M] dominated a whole AEVB step)."""

    @staticmethod
    def forward(ctx, z, centers, h, mask):
        d = z.shape[1]
        sq = (z.square().sum(1, keepdim=True) + centers.square().sum(1) - 2 * z @ centers.T).clamp_min(0)  # [B, M]
        if mask is not None:
            sq = sq.masked_fill(~mask, math.inf)
            count = mask.sum(1).to(z)
        else:
            count = torch.full((z.shape[0],), centers.shape[0], dtype=z.dtype, device=z.device)
        k = min(NEAREST, centers.shape[0])
        sq_k, idx = torch.topk(sq, k, dim=1, largest=False)                         # [B, k]
        c_k = centers[idx]                                                          # [B, k, d]
        a = -sq_k.unsqueeze(0) / (2 * h.view(-1, 1, 1) ** 2) - (d * torch.log(h) + 0.5 * d * math.log(2 * math.pi)
                                                                ).view(-1, 1, 1)  # [H, B, k]
        lse = torch.logsumexp(a.transpose(0, 1).reshape(z.shape[0], -1), 1)        # [B]
        w = (torch.exp(a - lse.view(1, -1, 1)) / h.view(-1, 1, 1) ** 2).sum(0)      # [B, k]
        ctx.save_for_backward(torch.einsum("bk,bkd->bd", w, c_k) - w.sum(1, keepdim=True) * z)
        return lse - torch.log(count) - math.log(len(h))

    @staticmethod
    def backward(ctx, g):
        (grad,) = ctx.saved_tensors
        return g.unsqueeze(1) * grad, None, None, None


class KDE:
    """log p(z) = log mean_{m, b} N(z; c_m, h_b^2 I): an equal mixture over centres c_m and bandwidths h_b.
    Differentiable in z. With ``parts``, ``log_prob(z, part=l)`` is the KDE of the centres in partition l."""

    def __init__(self, centers: torch.Tensor, bandwidths: list[float] | tuple[float, ...],
                 parts: torch.Tensor | None = None):
        self.centers = centers.float()
        self.h = torch.tensor([float(b) for b in bandwidths])
        self.parts = parts

    def log_prob(self, z: torch.Tensor, part: torch.Tensor | None = None) -> torch.Tensor:
        c, h = self.centers.to(z), self.h.to(z)
        mask = None if part is None else self.parts.to(z.device).unsqueeze(0) == part.unsqueeze(1)
        return _KDELogProb.apply(z, c, h, mask)


def scott_bandwidth(z: torch.Tensor) -> float:
    """Scott's rule for an isotropic Gaussian KDE: n^(-1/(d+4)) times the mean per-dimension std."""
    n, d = z.shape
    return float(z.float().std(0).mean()) * n ** (-1.0 / (d + 4))


class StructuredPrior:
    """A fixed prior of App. D: exact sampler, KDE density over ``kde_samples`` seeded samples."""

    learnable = False

    def __init__(self, name: str, params: dict, kde: dict):
        self.name, self.params = name, params
        g = torch.Generator().manual_seed(int(kde["seed"]))
        centers, parts = sample(name, int(kde["samples"]), g, params)
        self.kde = KDE(centers, kde["bandwidths"], parts)

    def sample(self, n: int, generator: torch.Generator, part: torch.Tensor | None = None) -> torch.Tensor:
        return sample(self.name, n, generator, self.params, part)[0]

    def log_prob(self, z: torch.Tensor, part: torch.Tensor | None = None) -> torch.Tensor:
        return self.kde.log_prob(z, part)


class MixturePrior(nn.Module):
    """§4.2's clustering prior: (1/K) sum_k N(z; theta_k, s^2 I) with learnable means theta."""

    learnable = True

    def __init__(self, clusters: int, std: float, init_radius: float, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.means = nn.Parameter(init_radius * torch.randn(clusters, 2, generator=g))
        self.std = std

    def sample(self, n: int, generator: torch.Generator, part: torch.Tensor | None = None) -> torch.Tensor:
        k = torch.randint(0, self.means.shape[0], (n,), generator=generator).to(self.means.device)
        eps = torch.randn(n, 2, generator=generator).to(self.means)
        return self.means[k] + self.std * eps

    def component_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        sq = torch.cdist(z, self.means).square()
        return -sq / (2 * self.std**2) - 2 * math.log(self.std) - math.log(2 * math.pi)

    def log_prob(self, z: torch.Tensor, part: torch.Tensor | None = None) -> torch.Tensor:
        return torch.logsumexp(self.component_log_prob(z), 1) - math.log(self.means.shape[0])

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        return self.component_log_prob(z).argmax(1)
