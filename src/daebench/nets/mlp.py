"""DiffAE's latent DDIM network (Preechakul et al. 2022, App. "Latent DDIM"; used by DBAE App. C.1,
Table 7): an MLP with skip connections, the noisy code z_t concatenated into every hidden layer,
LayerNorm and SiLU, each layer modulated by the time embedding."""
from __future__ import annotations

import torch
from torch import nn

from .layers import timestep_embedding


class MLPSkipNet(nn.Module):
    def __init__(self, z_dim: int, hidden: int = 256, layers: int = 6, time_dim: int = 64):
        super().__init__()
        self.time_dim = time_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.layers = nn.ModuleList()
        self.scales = nn.ModuleList()
        self.norms = nn.ModuleList()
        width = z_dim
        for i in range(layers):
            # skip: the input code joins every hidden layer but the first (which already sees it)
            self.layers.append(nn.Linear(width + (z_dim if i > 0 else 0), hidden))
            self.scales.append(nn.Linear(hidden, hidden))
            self.norms.append(nn.LayerNorm(hidden))
            width = hidden
        self.out = nn.Linear(hidden, z_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.time_dim, dtype=self.time_mlp[0].weight.dtype))
        h = z_t
        for i, (lin, scale, norm) in enumerate(zip(self.layers, self.scales, self.norms)):
            h = lin(h if i == 0 else torch.cat([h, z_t], dim=1))
            h = torch.nn.functional.silu(norm(h) * (1 + scale(emb)))
        return self.out(h)


def mlp(d_in: int, hidden: int, layers: int, d_out: int) -> nn.Sequential:
    """``layers`` hidden ReLU layers of width ``hidden`` (DDVI App. E: 2 x 1000 for MNIST encoders/decoders)."""
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(d_in if i == 0 else hidden, hidden), nn.ReLU()]
    mods.append(nn.Linear(hidden if layers else d_in, d_out))
    return nn.Sequential(*mods)


class TimeMLP(nn.Module):
    """DDVI's reverse-diffusion network (App. E: "a 5-layer time-conditioned multi-layer perceptron, each with 128
    hidden units"): ``layers`` time-conditioned linear layers; each adds a learned embedding of the integer step t
    to its output (a per-step bias) before the activation.

    ``style``: "app_e" (SiLU, embeddings from zero: the paper names neither) or "release", the release's
    ConditionalModelWAUX / ConditionalModel (topwasu/DDVI models/simple.py): ReLU, embeddings drawn from U[0, 1)
    and, with ``skip``, the first layer's output added to the third's (the main denoiser's one residual; its
    stage-1 prior denoiser has none)."""

    STYLES = ("app_e", "release")

    def __init__(self, d_in: int, d_out: int, steps: int, hidden: int = 128, layers: int = 5,
                 style: str = "app_e", skip: bool = False):
        super().__init__()
        if style not in self.STYLES:
            raise ValueError(f"nets.denoiser.style: unknown {style!r}; known: {', '.join(self.STYLES)}")
        if skip and layers < 3:
            raise ValueError(f"nets.denoiser.layers: the release's residual joins layers 1 and 3, got {layers}")
        self.lins = nn.ModuleList(nn.Linear(d_in if i == 0 else hidden, hidden) for i in range(layers))
        self.embs = nn.ModuleList(nn.Embedding(steps + 1, hidden) for _ in range(layers))
        for e in self.embs:
            nn.init.zeros_(e.weight) if style == "app_e" else nn.init.uniform_(e.weight)
        self.act = torch.nn.functional.silu if style == "app_e" else torch.relu
        self.skip = skip
        self.out = nn.Linear(hidden, d_out)

    def forward(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        first = None
        for i, (lin, emb) in enumerate(zip(self.lins, self.embs)):
            h = self.act(lin(h) + emb(t))
            if self.skip and i == 0:
                first = h
            elif self.skip and i == 2:
                h = h + first
        return self.out(h)


class MADE(nn.Module):
    """Masked autoencoder (Germain et al. 2015) with a context input, as in IAF (Kingma et al. 2016):
    output i depends on inputs before i in ``order`` and on the context only. Returns (m, s)."""

    def __init__(self, d: int, context: int, hidden: int = 128, layers: int = 4, order: list[int] | None = None):
        super().__init__()
        order = list(range(d)) if order is None else order
        deg_in = torch.empty(d, dtype=torch.long)
        deg_in[torch.tensor(order)] = torch.arange(1, d + 1)
        degs = [deg_in]
        for _ in range(layers - 1):  # hidden degrees cycle through 1..d-1 (all 1 when d = 2)
            degs.append(torch.arange(hidden) % max(d - 1, 1) + 1)
        self.lins = nn.ModuleList()
        self.masks = []
        for i in range(layers - 1):
            self.lins.append(nn.Linear(degs[i].numel(), hidden))
            self.masks.append((degs[i + 1].unsqueeze(1) >= degs[i].unsqueeze(0)).float())
        self.ctx = nn.Linear(context, hidden)
        self.head = nn.Linear(hidden, 2 * d)
        self.head_mask = (deg_in.repeat(2).unsqueeze(1) > degs[-1].unsqueeze(0)).float()
        self.ctx_out = nn.Linear(context, 2 * d)  # the first variable in the order sees only the context
        for i, m in enumerate(self.masks):
            self.register_buffer(f"mask{i}", m, persistent=False)
        self.register_buffer("mask_head", self.head_mask, persistent=False)
        self.d = d

    def forward(self, z: torch.Tensor, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = z
        for i, lin in enumerate(self.lins):
            h = torch.nn.functional.linear(h, lin.weight * getattr(self, f"mask{i}"), lin.bias)
            if i == 0:
                h = h + self.ctx(ctx)
            h = torch.nn.functional.elu(h)
        out = torch.nn.functional.linear(h, self.head.weight * self.mask_head, self.head.bias) + self.ctx_out(ctx)
        return out[:, :self.d], out[:, self.d:]


class ContextMLP(nn.Module):
    """The DDVI release's context network of x (topwasu/DDVI models/simple.py MultiWayLinear, as
    DiffVAEWarmup builds it): ``layers`` hidden layers of width ``hidden``, each a LeakyReLU(0.2) followed by
    dropout of rate ``dropout`` that stays on in evaluation too (the release calls ``F.dropout`` without
    ``training=``, whose default is on), then a linear map to ``d_out`` features."""

    def __init__(self, d_in: int, hidden: int, layers: int, d_out: int, dropout: float):
        super().__init__()
        self.lins = nn.ModuleList(nn.Linear(d_in if i == 0 else hidden, hidden) for i in range(layers))
        self.out = nn.Linear(hidden if layers else d_in, d_out)
        self.dropout = float(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for lin in self.lins:
            x = torch.nn.functional.dropout(torch.nn.functional.leaky_relu(lin(x), 0.2), self.dropout, training=True)
        return self.out(x)
