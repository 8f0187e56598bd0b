"""LPIPS, the perceptual distance of the metrics tables (``lpips``) and of PPL (the VGG variant).

Reference: Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric",
CVPR 2018 (AlexNet trunk, v0.1 linear layers; VGG-16 for PPL).

Nothing here downloads: the torchvision trunk is loaded from ``weights_dir`` (see weights.py, which
raises WeightsMissing when it is absent) and the linear layers from the lpips package, checked
against their sha256. Image formats: image_format.py.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from daebench.evaluate.image_format import to_rgb, torch_device
from daebench.evaluate.weights import DEFAULT_WEIGHTS_DIR, LPIPS_LINEAR, LPIPS_LINEAR_VGG, require, sha256_file

__all__ = ["LPIPS_MIN_SIZE", "LPIPS_NETS", "lpips_distance"]

LPIPS_MIN_SIZE = 32  # AlexNet's conv/pool stack needs >= 31 px per side

_LPIPS_CACHE: dict[tuple[str, str], torch.nn.Module] = {}


# The two LPIPS networks: (weights entry of the torchvision trunk, packaged linear layers, lpips net name).
LPIPS_NETS = {"alex": ("alexnet", LPIPS_LINEAR), "vgg": ("vgg16", LPIPS_LINEAR_VGG)}


def _build_lpips(trunk_path: Path, device: torch.device, net: str = "alex") -> torch.nn.Module:
    import lpips

    _, packaged = LPIPS_NETS[net]
    linear = Path(lpips.__file__).parent / "weights" / "v0.1" / packaged.filename
    if not linear.is_file() or sha256_file(linear) != packaged.sha256:
        raise RuntimeError(
            f"the lpips package's v0.1 {net} linear layers ({linear}) are missing or differ from "
            f"sha256 {packaged.sha256}; reinstall lpips==0.1.4"
        )
    # pnet_rand=True builds the trunk without weights (torchvision would otherwise download them);
    # pretrained=True loads the packaged linear layers from disk.
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    tv_state = torch.load(trunk_path, map_location="cpu", weights_only=True)
    # lpips keeps torchvision's layer indices inside its slices: slice2.3.weight <- features.3.weight
    trunk = {k: tv_state["features." + k.split(".", 1)[1]] for k in model.net.state_dict()}
    model.net.load_state_dict(trunk, strict=True)
    return model.eval().requires_grad_(False).to(device)


@torch.no_grad()
def lpips_distance(
    x: torch.Tensor,
    y: torch.Tensor,
    weights_dir: str | os.PathLike = DEFAULT_WEIGHTS_DIR,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    net: str = "alex",
) -> torch.Tensor:
    """LPIPS (v0.1; AlexNet, or VGG-16 with ``net="vgg"`` as PPL uses) per image pair; x, y float NCHW in
    [-1, 1]. Returns [B] on x's device.

    Images are clamped to [-1, 1] (scored as displayed, like metrics.py) and
    passed with normalize=False, since lpips expects [-1, 1].  Images smaller
    than 32 px are bilinearly upsampled to 32 (AlexNet cannot run on them).
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"expected two NCHW batches of equal shape, got {tuple(x.shape)}, {tuple(y.shape)}")
    trunk_name, _ = LPIPS_NETS[net]
    path = require(weights_dir, trunk_name)[trunk_name]
    dev = torch_device(device)
    key = (str(path.resolve()), str(dev))
    model = _LPIPS_CACHE.get(key)
    if model is None:
        model = _LPIPS_CACHE[key] = _build_lpips(path, dev, net)
    out = []
    for i in range(0, x.shape[0], batch_size):
        a = to_rgb(x[i : i + batch_size].to(dev, torch.float32).clamp(-1, 1))
        b = to_rgb(y[i : i + batch_size].to(dev, torch.float32).clamp(-1, 1))
        h, w = a.shape[-2:]
        if min(h, w) < LPIPS_MIN_SIZE:
            s = LPIPS_MIN_SIZE / min(h, w)
            size = (round(h * s), round(w * s))
            a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
            b = F.interpolate(b, size=size, mode="bilinear", align_corners=False)
        out.append(model(a, b, normalize=False).flatten())
    return torch.cat(out).to(x.device)
