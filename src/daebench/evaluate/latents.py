"""Jobs over the tractable latent z of a trained autoencoder: encoding splits, fitting the latent
prior, unconditional / +AE generation (DBAE Table 4) and the cost of latent inference (Table 5)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..data import load_split, to_tensor
from ..methods import latent_prior
from ..progress import tqdm
from .reconstruction import load_model


@torch.no_grad()
def encode_split(model, fam, images: np.ndarray, device: torch.device, batch_size: int = 256) -> np.ndarray:
    # Converted batch by batch (the same floats as converting the whole split): a memory-mapped split is
    # never held as float32.
    return torch.cat([fam.encode(model, to_tensor(images[i:i + batch_size]).to(device)).cpu()
                      for i in range(0, len(images), batch_size)]).numpy()


def load_prior(ckpt: dict) -> latent_prior.LatentPrior:
    import json

    prior = latent_prior.build(json.loads(ckpt["config_json"]))
    prior.load_state_dict(ckpt["ema"])
    return prior.eval()


@torch.no_grad()
def generate(ckpt: dict, data_dir: Path, method: dict, source: str, *, n: int, nfe: int, sampler: dict,
             prior_ckpt: dict | None, prior_steps: int, seed: int, batch_size: int, device: torch.device,
             progress: bool = True) -> dict:
    """``source`` "prior": z ~ p_omega(z) (unconditional generation); "ae": z = Enc(x) of the first n
    test images (the +AE rows). Then the family's decoder with ``nfe`` evaluations."""
    model, _, fam = load_model(ckpt)
    model.to(device)
    gen = torch.Generator().manual_seed(seed)
    images, _ = load_split(data_dir, "test")
    image_shape = tuple(to_tensor(images[:1]).shape[1:])
    t0 = time.time()
    if source == "prior":
        if prior_ckpt is None:
            raise ValueError("source 'prior' needs the latent prior checkpoint")
        z = latent_prior.sample(load_prior(prior_ckpt).to(device), n, prior_steps, gen)
    elif source == "ae":
        z = torch.from_numpy(encode_split(model, fam, images[:n], device)).to(device)
    else:
        raise ValueError(f"unknown generation source {source!r}; known: prior, ae")
    out = []
    for i in tqdm(range(0, len(z), batch_size), desc=f"generate ({source}, NFE {nfe})", disable=not progress):
        zb = z[i:i + batch_size]
        out.append(fam.decode(model, method, zb, nfe, gen, sampler, shape=(len(zb), *image_shape)).clamp(-1, 1).cpu())
    return {"samples": torch.cat(out).numpy().astype(np.float32), "z": z.cpu().numpy(),
            "seconds": time.time() - t0}


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@torch.no_grad()
def inference_cost(ckpt: dict, data_dir: Path, method: dict, *, n: int, nfe: int, sampler: dict,
                   device: torch.device, repeats: int = 3) -> dict:
    """NFE and wall time (ms per image, best of ``repeats``) to get the tractable latent z and the
    endpoint x_T for n test images: a DAE inverts DDIM (nfe steps), DBAE runs its decoder once."""
    model, _, fam = load_model(ckpt)
    model.to(device)
    images, _ = load_split(data_dir, "test")
    x = to_tensor(images[:n]).to(device)
    cost = fam.cost(method, fam.endpoint_mode, nfe, sampler)
    z = fam.encode(model, x)
    t_enc = _timed(lambda: fam.encode(model, x), repeats)
    t_end = _timed(lambda: fam.infer_endpoint(model, method, x, z, nfe, sampler), repeats)
    per = 1000.0 / len(x)
    return {"nfe_encoder": cost["nfe_encoder"], "nfe_endpoint": cost["nfe_endpoint"],
            "endpoint_by": fam.endpoint_by,
            "ms_encoder": t_enc * per, "ms_endpoint": t_end * per, "ms_total": (t_enc + t_end) * per,
            "n_images": len(x), "batch_size": len(x), "device": str(device),
            "threads": torch.get_num_threads()}
