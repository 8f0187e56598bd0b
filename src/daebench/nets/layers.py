"""ADM-style building blocks (Dhariwal & Nichol 2021) with DiffAE's AdaGN conditioning
(Preechakul et al. 2022, eq. 7: AdaGN(h, t, z) = z_s (t_s GroupNorm(h) + t_b))."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, ch // 4) if ch >= 8 else 1, ch)


def to_layout(x: torch.Tensor) -> torch.Tensor:
    """The memory layout the next block runs in, on CPU: channels-last (oneDNN's native layout: no reorder of
    the activations per convolution) where activations outweigh the weights, N*H*W >= 8*C; NCHW where the
    weights dominate (deep levels at small batches), since a channels-last convolution copies its weight
    and weight gradient to and from channels-last each step. Same values either way up to float rounding.
    On GPUs the layout is left to the caller (compute.channels_last)."""
    if x.device.type != "cpu" or x.dim() != 4:
        return x
    n, c, h, w = x.shape
    fmt = torch.channels_last if n * h * w >= 8 * c else torch.contiguous_format
    return x.contiguous(memory_format=fmt)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout (F.dropout's distribution: keep with probability 1 - p, scale by 1 / (1 - p)). On CPU
    the keep mask comes from torch.rand_like, which is about twice as fast there as F.dropout's bernoulli_
    (a different random stream, equally seeded by torch.manual_seed); elsewhere F.dropout's fused kernel."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, True)
    return x * torch.rand_like(x).ge_(p).mul_(1.0 / (1.0 - p))


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0,
                       dtype: torch.dtype | None = None) -> torch.Tensor:
    """ADM's sinusoidal embedding of t in [0, 1] (scaled to the DDPM range [0, 1000] so the frequencies cover
    it). Computed in float32, or in float64 when t or ``dtype`` is float64 (never in a half type: the phases
    need the precision); returned in ``dtype`` (callers pass their first Linear's weight dtype), by default
    in the dtype it was computed in."""
    half = dim // 2
    work = torch.float64 if torch.float64 in (t.dtype, dtype) else torch.float32
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=work) / half)
    args = (t.to(work) * 1000.0)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return emb if dtype is None else emb.to(dtype)


class ResBlock(nn.Module):
    """Residual block; with ``emb_dim`` it takes the time embedding (scale/shift) and, with
    ``cond_dim``, the latent z (multiplicative), both through AdaGN on the second norm."""

    def __init__(self, ch_in: int, ch_out: int, emb_dim: int | None = None, cond_dim: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(ch_in)
        self.conv1 = nn.Conv2d(ch_in, ch_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * ch_out) if emb_dim else None
        self.cond = nn.Linear(cond_dim, ch_out) if cond_dim else None
        self.norm2 = group_norm(ch_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(ch_out, ch_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(ch_in, ch_out, 1) if ch_in != ch_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.emb is None and self.cond is None:
            h = self.norm2(h)
        else:
            # AdaGN: GroupNorm's own affine, t's scale/shift and z's scale folded into one per-(example,
            # channel) scale and shift, applied in one pass: ((GN(h) g + b)(1 + s) + sh)(1 + c).
            n2 = self.norm2
            scale, shift = n2.weight[:, None, None], n2.bias[:, None, None]
            if self.emb is not None:
                s, sh = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
                scale, shift = scale * (1 + s), torch.addcmul(sh, shift, 1 + s)
            if self.cond is not None:
                c = 1 + self.cond(cond)[:, :, None, None]
                scale, shift = scale * c, shift * c
            h = torch.addcmul(shift, F.group_norm(h, n2.num_groups, None, None, n2.eps), scale)
        h = self.conv2(dropout(F.silu(h), self.drop.p, self.drop.training))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, ch: int, heads: int = 1):
        super().__init__()
        self.heads = heads
        self.norm = group_norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, *_) -> torch.Tensor:
        # The 1x1 convolutions run as Linear layers on the tokens (same weights): q, k, v come out with a
        # contiguous head dimension, and the tokens are channels-last views ([b, h, w, c]), free when x is
        # channels-last (see to_layout).
        b, c, h, w = x.shape
        n, d = h * w, c // self.heads
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(b, n, c)
        qkv = F.linear(tokens, self.qkv.weight.view(3 * c, c), self.qkv.bias)
        q, k, v = qkv.view(b, n, 3, self.heads, d).permute(2, 0, 3, 1, 4)  # each [b, heads, n, d]
        if torch.is_grad_enabled():
            # softmax(q k^T / sqrt(d)) v spelled out: twice differentiable, which the fused kernels are not
            # (ScoreVAE trains through the gradient of its encoder); on CPU as fast as they are at our sizes.
            out = torch.softmax((q * d**-0.5) @ k.transpose(-1, -2), dim=-1) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(b, n, c)
        out = F.linear(out, self.proj.weight.view(c, c), self.proj.bias)
        return x + out.view(b, h, w, c).permute(0, 3, 1, 2)


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x, *_):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x, *_):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
