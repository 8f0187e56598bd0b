"""Reconstruction of a test split by a trained autoencoder (two-phase DAE paper §4.1, §5:
stochastic autoencoding and DDIM inversion, 50 steps each by default)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..data import load_split, to_tensor
from ..data.store import atomic_path
from ..methods import get_family
from ..methods.family import reconstruct
from ..progress import tqdm


def load_model(ckpt: dict):
    """Rebuild a method's networks from a checkpoint (state_dict + resolved config, no pickled code)."""
    cfg = json.loads(ckpt["config_json"])
    fam = get_family(cfg["method"]["family"])
    h, _, c = cfg["data_shape"]
    model = fam.build(cfg, c, h)
    model.load_state_dict(ckpt["ema"])  # the paper evaluates EMA weights
    return model.eval(), cfg, fam


def reconstruct_split(ckpt: dict, data_dir: Path, method: dict, mode: str, *, nfe: int, sampler: dict,
                      n_images: int | None, batch_size: int, seed: int, device: torch.device,
                      progress: bool = True) -> dict:
    """Reconstruct the test split; ``nfe`` is the decoding budget (DDIM steps for a DAE, bridge
    evaluations for DBAE), ``sampler`` the family's sampler options."""
    model, _, fam = load_model(ckpt)
    model.to(device)
    cost = fam.cost(method, mode, nfe, sampler)  # raises on a mode the family does not have
    images, labels = load_split(data_dir, "test")
    if n_images is not None:
        images, labels = images[:n_images], labels[:n_images]
    x = to_tensor(images)
    gen = torch.Generator().manual_seed(seed)  # one stream over batches: image i's x_T depends on (seed, i)
    out, kls, t0 = [], [], time.time()
    for i in tqdm(range(0, len(x), batch_size), desc=f"reconstruct ({mode}, NFE {nfe})", disable=not progress):
        xb = x[i:i + batch_size].to(device)
        out.append(reconstruct(fam, model, method, xb, mode, nfe, gen, sampler, cost=cost).clamp(-1, 1).cpu())
        if fam.kl is not None:
            with torch.no_grad():
                kls.append(fam.kl(model, xb))
    seconds = time.time() - t0
    recon = torch.cat(out).numpy().astype(np.float32)
    kl = None if not kls or kls[0] is None else float(torch.cat(kls).double().mean())
    return {"original": x.numpy().astype(np.float32), "recon": recon, "labels": labels, "kl_nats": kl,
            "seconds": seconds, "nfe": fam.diffusion_nfe(cost), "cost": cost,
            "n_params": sum(p.numel() for p in model.parameters())}


def to_hwc01(x: np.ndarray) -> np.ndarray:
    """float NCHW in [-1, 1] -> float NHWC in [0, 1]."""
    return np.clip((np.asarray(x, dtype=np.float32) + 1) / 2, 0, 1).transpose(0, 2, 3, 1)


def montage(rows: list[np.ndarray], pad: int = 1) -> np.ndarray:
    """Tile rows of NHWC [0, 1] images on a white canvas; HW for one channel, HWC otherwise."""
    n, h, w, c = rows[0].shape
    canvas = np.ones((len(rows) * (h + pad) + pad, n * (w + pad) + pad, c), dtype=np.float32)
    for i, imgs in enumerate(rows):
        for j, im in enumerate(imgs):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            canvas[y:y + h, x:x + w] = im
    return canvas[..., 0] if c == 1 else canvas


def save_grid(path: Path, rows: list[np.ndarray], n: int = 12, pad: int = 1, scale: int = 3) -> None:
    """PNG grid: one row per NCHW [-1, 1] array (e.g. original / stochastic / inversion), first ``n`` images."""
    from PIL import Image

    grid = (montage([to_hwc01(arr[:n]) for arr in rows], pad) * 255).round().astype(np.uint8)
    img = Image.fromarray(grid)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
