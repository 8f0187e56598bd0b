"""Reconstruction of a test split by a trained autoencoder (two-phase DAE paper §4.1, §5:
stochastic autoencoding and DDIM inversion, 50 steps each by default)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data import load_split, to_tensor
from ..methods import get_family


def load_model(ckpt: dict):
    """Rebuild a method's networks from a checkpoint (state_dict + resolved config, no pickled code)."""
    cfg = json.loads(ckpt["config_json"])
    fam = get_family(cfg["method"]["family"])
    h, _, c = cfg["data_shape"]
    model = fam.build(cfg, c, h)
    model.load_state_dict(ckpt["ema"])  # the paper evaluates EMA weights
    return model.eval(), cfg, fam


def reconstruct_split(ckpt: dict, data_dir: Path, method: dict, mode: str, *, steps: int, n_images: int | None,
                      batch_size: int, seed: int, clip_x0: bool, device: torch.device, progress: bool = True) -> dict:
    model, _, fam = load_model(ckpt)
    model.to(device)
    images, labels = load_split(data_dir, "test")
    if n_images is not None:
        images, labels = images[:n_images], labels[:n_images]
    x = to_tensor(images)
    gen = torch.Generator().manual_seed(seed)  # one stream over batches: image i's x_T depends on (seed, i)
    out, t0 = [], time.time()
    for i in tqdm(range(0, len(x), batch_size), desc=f"reconstruct ({mode})", disable=not progress):
        xb = x[i:i + batch_size].to(device)
        out.append(fam.reconstruct(model, method, xb, mode, steps, gen, clip_x0).clamp(-1, 1).cpu())
    seconds = time.time() - t0
    recon = torch.cat(out).numpy().astype(np.float32)
    nfe = steps * (2 if mode == "inversion" else 1)
    return {"original": x.numpy().astype(np.float32), "recon": recon, "labels": labels,
            "seconds": seconds, "nfe": nfe}


def save_grid(path: Path, rows: list[np.ndarray], n: int = 12, pad: int = 1, scale: int = 3) -> None:
    """PNG grid: one row per array (e.g. original / stochastic / inversion), first ``n`` images."""
    from PIL import Image

    tiles = []
    for arr in rows:
        a = ((np.clip(arr[:n], -1, 1) + 1) * 127.5).round().astype(np.uint8)  # NCHW
        a = np.pad(a, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=255)
        tiles.append(np.concatenate(list(a.transpose(0, 2, 3, 1)), axis=1))
    grid = np.concatenate(tiles, axis=0)
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
