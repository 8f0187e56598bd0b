"""Interpolation between two images' codes and its perceptual path length (two-phase DAE paper §5.2,
Table 5, supplementary §10; PPL after Karras et al. 2019).

The DAE's latent is the pair (z, x_T): the semantic code and the stochastic subcode from DDIM inversion.
Both are interpolated by slerp (Fig. 7), decoded by DDIM, and the path is measured deterministically
(supp. §10): with N pieces of length 1/N and ε = 1/N,

    PPL = N · Σ_{i=0}^{N-1} d(G(slerp(z_1, z_2; i/N)), G(slerp(z_1, z_2; (i+1)/N))),

where d is LPIPS (VGG) in the paper and G decodes an interpolated code.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical linear interpolation of rows ``a`` and ``b`` ([B, ...]) at fractions ``t`` ([T]):
    [T, B, ...]. The angle is between the flattened rows; the norm is interpolated linearly with it
    (as DiffAE's and StyleGAN's slerp: sin-weighted sum of the unnormalised vectors), and nearly
    parallel rows fall back to linear interpolation."""
    a2, b2 = a.flatten(1).double(), b.flatten(1).double()
    cos = (a2 * b2).sum(1) / (a2.norm(dim=1) * b2.norm(dim=1)).clamp_min(1e-30)
    theta = torch.arccos(cos.clamp(-1.0, 1.0))  # [B]
    t = t.double().view(-1, 1)  # [T, 1]
    sin = torch.sin(theta)
    parallel = sin.abs() < 1e-6
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    wa = torch.where(parallel, 1.0 - t, torch.sin((1.0 - t) * theta) / safe)  # [T, B]
    wb = torch.where(parallel, t.expand_as(wa), torch.sin(t * theta) / safe)
    out = wa[:, :, None] * a2[None] + wb[:, :, None] * b2[None]
    return out.view(len(t), *a.shape).to(a.dtype)


def path_fractions(n: int) -> torch.Tensor:
    """The N + 1 fractions i/N of supp. §10 (101 in-betweens for N = 100)."""
    return torch.arange(n + 1, dtype=torch.float64) / n


def path_length(distances: torch.Tensor) -> torch.Tensor:
    """PPL of each path from its neighbour distances [P, N]: N · Σ_i d_i (supp. §10, ε = 1/N)."""
    n = distances.shape[-1]
    return n * distances.sum(-1)


def perceptual_path_lengths(decode: Callable[[torch.Tensor], torch.Tensor],
                            distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                            n_pairs: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PPL of ``n_pairs`` paths. ``decode(i)`` returns path i's N + 1 images [N + 1, C, H, W] in order;
    ``distance(x, y)`` the per-image distances of two equal batches. Returns (PPL per pair [P], the
    neighbour distances [P, N])."""
    dists = []
    for i in range(n_pairs):
        imgs = decode(i)
        if len(imgs) != n + 1:
            raise ValueError(f"path {i}: decode gave {len(imgs)} images, expected N + 1 = {n + 1}")
        dists.append(distance(imgs[:-1], imgs[1:]).double().reshape(n))
    d = torch.stack(dists) if dists else torch.zeros(0, n, dtype=torch.float64)
    return path_length(d), d


def pair_indices(n_images: int, n_pairs: int, seed: int) -> list[tuple[int, int]]:
    """``n_pairs`` ordered pairs of distinct test images, drawn with a seeded generator (the same pairs for
    every method)."""
    if n_images < 2:
        raise ValueError(f"PPL needs at least 2 test images, got {n_images}")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_pairs):
        i, j = torch.randperm(n_images, generator=gen)[:2].tolist()
        out.append((i, j))
    return out


def angle(a: torch.Tensor, b: torch.Tensor) -> float:
    """The angle between two flattened vectors, in radians (for tests and logs)."""
    a, b = a.flatten().double(), b.flatten().double()
    return math.acos(max(-1.0, min(1.0, float(a @ b / (a.norm() * b.norm())))))


STRIP_PAIRS, STRIP_COLUMNS = 4, 11  # the figure: a few paths, each at 11 evenly spaced in-betweens


@torch.no_grad()
def model_ppl(ckpt: dict, data_dir, method: dict, *, pairs: int, n: int, seed: int, batch_size: int, nfe: int,
              sampler: dict, classifier, weights_dir, device: torch.device, progress: bool = True) -> dict:
    """Table 5 for one trained DAE: ``pairs`` test-image pairs, each encoded to (z, x_T by DDIM inversion),
    both slerped at N + 1 fractions and decoded by DDIM with ``nfe`` steps; PPL per pair from neighbour
    distances (LPIPS VGG when ``weights_dir`` has it, else ``featdist_domain`` in the domain classifier's
    features). Returns the mean, median and std over pairs, and a strip of in-betweens for the figure."""
    from ..data import load_split, to_tensor
    from ..progress import tqdm
    from . import features, weights
    from .reconstruction import load_model

    model, _, fam = load_model(ckpt)
    model.to(device)
    if fam.infer_endpoint is None or fam.endpoint_mode is None:
        raise ValueError(f"PPL interpolates (z, x_T): family {fam.name} has no inferred x_T")
    images, _ = load_split(data_dir, "test")
    x = to_tensor(images)
    idx = pair_indices(len(x), pairs, seed)
    ends = x[torch.tensor([i for p in idx for i in p])].to(device)  # [2P, C, H, W]: pair i is rows 2i, 2i + 1
    z = torch.cat([fam.encode(model, ends[i:i + batch_size]) for i in range(0, len(ends), batch_size)])
    x_T = torch.cat([fam.infer_endpoint(model, method, ends[i:i + batch_size], z[i:i + batch_size], nfe, sampler)
                     for i in range(0, len(ends), batch_size)])
    fr = path_fractions(n).to(device)
    if weights.available(weights_dir).get("vgg16"):
        name = "lpips_vgg"

        def distance(a, b):
            return features.lpips_distance(a, b, weights_dir, net="vgg", device=device)
    else:
        from .domain_numpy import load_features

        name, clf = "featdist_domain", load_features(classifier)  # read once, not converted per decoded pair

        def distance(a, b):
            return features.feature_distance_domain(a, b, clf)
    gen = torch.Generator().manual_seed(seed)  # unused by DDIM from a given x_T; the family API takes one
    strip, cols = [], torch.linspace(0, n, STRIP_COLUMNS).round().long()
    bar = tqdm(total=pairs, desc=f"PPL ({pairs} pairs, N = {n})", disable=not progress)

    def decode(i: int) -> torch.Tensor:
        zs = slerp(z[2 * i:2 * i + 1], z[2 * i + 1:2 * i + 2], fr)[:, 0]          # [N + 1, D]
        xs = slerp(x_T[2 * i:2 * i + 1], x_T[2 * i + 1:2 * i + 2], fr)[:, 0]      # [N + 1, C, H, W]
        imgs = torch.cat([fam.decode(model, method, zs[j:j + batch_size], nfe, gen, sampler, x_T=xs[j:j + batch_size])
                          for j in range(0, n + 1, batch_size)]).clamp(-1, 1)
        if i < STRIP_PAIRS:
            strip.append(imgs[cols].cpu().numpy())
        bar.update(1)
        return imgs

    ppl, _ = perceptual_path_lengths(decode, distance, pairs, n)
    bar.close()
    return {"ppl": float(ppl.mean()), "ppl_median": float(ppl.median()), "ppl_std": float(ppl.std()),
            "distance": name, "pairs": pairs, "steps": n, "nfe": nfe, "strip": strip, "strip_columns": STRIP_COLUMNS}
