"""ADM U-Net decoder D(x_t, t, z) of a diffusion autoencoder (two-phase DAE paper supp. §8,
after Preechakul et al. 2022): time and latent code modulate every ResBlock through AdaGN."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Attention, Downsample, ResBlock, Upsample, group_norm, timestep_embedding, to_layout


class UNet(nn.Module):
    def __init__(self, in_channels: int, image_size: int, model_channels: int = 64,
                 channel_mult: Sequence[int] = (1, 2, 2), num_res_blocks: int = 2,
                 attention_resolutions: Sequence[int] = (8,), dropout: float = 0.1, z_dim: int | None = None,
                 out_channels: int | None = None, z_mode: str = "adagn"):
        """``z_mode``: "adagn" scales every ResBlock's second norm by z (DiffAE eq. 7); "emb" adds
        Linear(z) to the time embedding (the DBAE release's score network)."""
        super().__init__()
        if z_mode not in ("adagn", "emb"):
            raise ValueError(f"unknown z_mode {z_mode!r}; known: adagn, emb")
        ch = model_channels
        emb_dim = 4 * ch
        self.model_channels = ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.z_mode = z_mode
        if z_dim and z_mode == "emb":
            self.z_mlp = None
            self.z_emb = nn.Linear(z_dim, emb_dim)
        else:
            self.z_mlp = nn.Sequential(nn.Linear(z_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)) if z_dim else None
            self.z_emb = None
        cond_dim = emb_dim if self.z_mlp is not None else None

        def res(cin, cout):
            return ResBlock(cin, cout, emb_dim, cond_dim, dropout)

        self.inp = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        skips, res_now, cur = [ch], image_size, ch
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                blocks = [res(cur, mult * ch)]
                cur = mult * ch
                if res_now in attention_resolutions:
                    blocks.append(Attention(cur))
                self.down.append(nn.ModuleList(blocks))
                skips.append(cur)
            if level != len(channel_mult) - 1:
                self.down.append(nn.ModuleList([Downsample(cur)]))
                skips.append(cur)
                res_now //= 2
        self.mid = nn.ModuleList([res(cur, cur), Attention(cur), res(cur, cur)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                blocks = [res(cur + skips.pop(), mult * ch)]
                cur = mult * ch
                if res_now in attention_resolutions:
                    blocks.append(Attention(cur))
                if level != 0 and i == num_res_blocks:
                    blocks.append(Upsample(cur))
                    res_now *= 2
                self.up.append(nn.ModuleList(blocks))
        self.out = nn.Sequential(group_norm(cur), nn.SiLU(), nn.Conv2d(cur, out_channels or in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    @staticmethod
    def _run(blocks, h, emb, cond):
        h = to_layout(h)
        for blk in blocks:
            h = blk(h, emb, cond) if isinstance(blk, ResBlock) else blk(h)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.model_channels, dtype=self.time_mlp[0].weight.dtype))
        if self.z_emb is not None:
            emb = emb + self.z_emb(z)
        cond = self.z_mlp(z) if self.z_mlp is not None else None
        h = self.inp(to_layout(x))
        hs = [h]
        for blocks in self.down:
            h = self._run(blocks, h, emb, cond)
            hs.append(h)
        h = self._run(self.mid, h, emb, cond)
        for blocks in self.up:
            h = self._run(blocks, torch.cat([h, hs.pop()], dim=1), emb, cond)
        return self.out(h).contiguous()


ENCODER_HEADS = ("mean", "flatten")


class Encoder(nn.Module):
    """Semantic encoder E(x) -> z: the downsampling half of the U-Net, then ``head``: "mean" pools the last
    feature map over space before a Linear, as DiffAE; "flatten" flattens it into the Linear, as ScoreVAE
    (App. B: "The final activation is flattened"; its releases' enc_pool = 'flatten-linear'), which keeps
    where each feature is: ScoreVAE's decoder is this encoder's input Jacobian. ``time_conditioned``: every ResBlock also takes the time embedding, giving ScoreVAE's
    time-dependent encoder e_phi(x_t, t) (ScoreVAE §3.4, App. B.1: the DDPM U-Net without its
    upsampling half and skips)."""

    def __init__(self, in_channels: int, image_size: int, z_dim: int, model_channels: int = 64,
                 channel_mult: Sequence[int] = (1, 2, 4), num_res_blocks: int = 1,
                 attention_resolutions: Sequence[int] = (), time_conditioned: bool = False, head: str = "mean"):
        super().__init__()
        if head not in ENCODER_HEADS:
            raise ValueError(f"unknown encoder head {head!r}; known: {', '.join(ENCODER_HEADS)}")
        ch = model_channels
        self.model_channels = ch
        emb_dim = 4 * ch if time_conditioned else None
        self.time_mlp = (nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
                         if time_conditioned else None)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ch, 3, padding=1)]
        res_now, cur = image_size, ch
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers.append(ResBlock(cur, mult * ch, emb_dim))
                cur = mult * ch
                if res_now in attention_resolutions:
                    layers.append(Attention(cur))
            if level != len(channel_mult) - 1:
                layers.append(Downsample(cur))
                res_now //= 2
        self.body = nn.ModuleList(layers)
        self.norm = group_norm(cur)
        self.pool = head
        self.head = nn.Linear(cur * (res_now**2 if head == "flatten" else 1), z_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        emb = (self.time_mlp(timestep_embedding(t, self.model_channels, dtype=self.time_mlp[0].weight.dtype))
               if self.time_mlp is not None else None)
        h = x
        for layer in self.body:
            h = to_layout(h)
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        h = F.silu(self.norm(h))
        h = h.flatten(1) if self.pool == "flatten" else h.mean(dim=(2, 3))
        return self.head(h)


class MirrorDecoder(nn.Module):
    """The beta-VAE's decoder z -> x: the Encoder's layers in reverse (ScoreVAE App. B.2, "a mirror
    decoder with symmetric architecture"): Linear to the coarsest feature map, then per level
    (coarse to fine) ResBlocks, attention where the encoder has it, nearest x2 upsampling + conv."""

    def __init__(self, z_dim: int, out_channels: int, image_size: int, model_channels: int = 64,
                 channel_mult: Sequence[int] = (1, 2, 4), num_res_blocks: int = 1,
                 attention_resolutions: Sequence[int] = ()):
        super().__init__()
        ch = model_channels
        levels = len(channel_mult)
        self.res = image_size // 2 ** (levels - 1)
        if self.res * 2 ** (levels - 1) != image_size:
            raise ValueError(f"MirrorDecoder: image size {image_size} is not divisible by 2^{levels - 1}")
        cur = channel_mult[-1] * ch
        self.start = cur
        self.fc = nn.Linear(z_dim, cur * self.res**2)
        layers: list[nn.Module] = []
        res_now = self.res
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_res_blocks):
                layers.append(ResBlock(cur, mult * ch))
                cur = mult * ch
                if res_now in attention_resolutions:
                    layers.append(Attention(cur))
            if level != 0:
                layers.append(Upsample(cur))
                res_now *= 2
        self.body = nn.Sequential(*layers)
        self.out = nn.Sequential(group_norm(cur), nn.SiLU(), nn.Conv2d(cur, out_channels, 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], self.start, self.res, self.res)
        for layer in self.body:
            h = layer(to_layout(h))
        return self.out(to_layout(h)).contiguous()


class EndpointDecoder(nn.Module):
    """DBAE's Dec_psi: z -> x_T, a small upsampling generator after FastGAN's (Liu et al. 2021) without
    its noise injection (DBAE App. C.1): Linear to a 4x4 map, then [nearest x2, conv, GroupNorm,
    GLU] blocks halving the channels, a 3x3 conv to the image channels. No output squashing: the
    endpoint is not an image and need not lie in [-1, 1]."""

    def __init__(self, z_dim: int, out_channels: int, image_size: int, model_channels: int = 32):
        super().__init__()
        levels = round(math.log2(image_size / 4))
        if 4 * 2**levels != image_size:
            raise ValueError(f"EndpointDecoder needs an image size of 4 * 2^k, got {image_size}")
        ch = model_channels * 2**levels
        self.start = ch
        self.fc = nn.Linear(z_dim, ch * 16)
        blocks: list[nn.Module] = []
        for _ in range(levels):
            nxt = max(ch // 2, model_channels)
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, 2 * nxt, 3, padding=1),
                       group_norm(2 * nxt), nn.GLU(dim=1)]
            ch = nxt
        self.body = nn.Sequential(*blocks)
        self.out = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.fc(z)).view(z.shape[0], self.start, 4, 4)
        for layer in self.body:
            h = layer(to_layout(h)) if isinstance(layer, nn.Conv2d) else layer(h)
        return self.out(to_layout(h)).contiguous()
