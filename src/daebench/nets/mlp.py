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
        emb = self.time_mlp(timestep_embedding(t, self.time_dim))
        h = z_t
        for i, (lin, scale, norm) in enumerate(zip(self.layers, self.scales, self.norms)):
            h = lin(h if i == 0 else torch.cat([h, z_t], dim=1))
            h = torch.nn.functional.silu(norm(h) * (1 + scale(emb)))
        return self.out(h)
