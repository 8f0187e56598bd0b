"""FID under its two protocols (torch-fidelity's and clean-fid's), and the in-memory clean-fid feature
pipeline and Frechet distance that the domain classifier's ``fd_domain`` shares.

References
- FID: Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge
  to a Local Nash Equilibrium", NeurIPS 2017.
- clean-fid: Parmar et al., "On Aliased Resizing and Surprising Subtleties in
  GAN Evaluation", CVPR 2022 (mode 'clean': PIL bicubic resize to 299).
- torch-fidelity: Obukhov et al., 2020 (TF1-compatible Inception + resize).

Inputs are quantised to uint8 and 1-channel images repeated to RGB (image_format.py). Nothing here
downloads: the Inception networks are loaded from ``weights_dir`` (see weights.py, which raises
WeightsMissing when they are absent). Nothing here imports cleanfid.fid or torchvision either, so a
metrics job does not pay for those imports.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import numpy as np
import torch

from daebench.evaluate.frechet import frechet_distance, frechet_distance_eig
from daebench.evaluate.image_format import to_rgb_uint8, to_uint8_nhwc, torch_device
from daebench.evaluate.weights import DEFAULT_WEIGHTS_DIR, require

log = logging.getLogger("daebench")

__all__ = ["cleanfid_features", "fid_cf", "fid_tf", "frechet_distance", "frechet_distance_eig"]


class _UInt8CHWDataset(torch.utils.data.Dataset):
    """torch-fidelity input: uint8 3xHxW tensors."""

    def __init__(self, arr: np.ndarray):
        self.arr = to_rgb_uint8(arr)

    def __len__(self) -> int:
        return len(self.arr)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.arr[i]).permute(2, 0, 1).contiguous()


def fid_tf(
    real: Any,
    fake: Any,
    weights_dir: str | os.PathLike = DEFAULT_WEIGHTS_DIR,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 64,
) -> tuple[float, str]:
    """FID via torch-fidelity with its Inception loaded from weights_dir.

    Returns (fid, mode) with mode 'inception-v3-compat' (torch-fidelity's
    TF1-compatible extractor, 2048-d features, internal bilinear resize).
    """
    path = require(weights_dir, "inception_tf")["inception_tf"]
    import torch_fidelity

    dev = torch_device(device)
    if dev.type == "cuda" and dev.index not in (None, torch.cuda.current_device()):
        raise ValueError("torch-fidelity only uses the current CUDA device; set it with torch.cuda.set_device")
    metrics = torch_fidelity.calculate_metrics(
        input1=_UInt8CHWDataset(to_uint8_nhwc(real)),
        input2=_UInt8CHWDataset(to_uint8_nhwc(fake)),
        fid=True,
        feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=str(path),
        cuda=dev.type == "cuda",
        batch_size=batch_size,
        cache=False,  # its cache keys on input names, which in-memory inputs lack
        save_cpu_ram=True,  # no DataLoader worker processes copying the arrays
        datasets_download=False,
        verbose=False,
    )
    return float(metrics["frechet_inception_distance"]), "inception-v3-compat"


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """torchvision.transforms.ToTensor on an HW or HWC array, op for op (uint8 becomes float32 / 255, float32
    stays as it is), so that a metrics job does not import torchvision: that import pulls in torch._dynamo
    through torchvision's ops and would be a large share of a short metrics job's time (measured in
    docs/findings.md, "Evaluation plumbing")."""
    img = img[:, :, None] if img.ndim == 2 else img
    t = torch.from_numpy(img.transpose((2, 0, 1))).contiguous()
    return t.to(dtype=torch.float32).div(255) if t.dtype == torch.uint8 else t


def cleanfid_features(arr: np.ndarray, extractor, *, mode: str, custom_fn_resize=None, batch_size: int,
                      device: torch.device) -> np.ndarray:
    """Features of uint8 NHWC images exactly as clean-fid's folder path computes them for the same images
    saved one .npy per file (cleanfid.utils.ResizeDataset, default collation, cleanfid.fid.get_batch_features),
    but from memory: per image the mode's resize (build_resizer(mode), or ``custom_fn_resize``), then
    ToTensor (x 255 for uint8 results, as clean-fid does); batches of ``batch_size`` in order. A test checks
    the values equal clean-fid's folder path."""
    from cleanfid.resize import build_resizer

    fn_resize = custom_fn_resize if custom_fn_resize is not None else build_resizer(mode)

    def load(img: np.ndarray) -> torch.Tensor:
        out = fn_resize(img)
        if out.dtype == np.uint8:
            return _to_tensor(np.array(out)) * 255
        if out.dtype == np.float32:
            return _to_tensor(out)
        raise TypeError(f"clean-fid resize returned {out.dtype}; expected uint8 or float32")

    feats = []
    for i in range(0, len(arr), batch_size):  # cleanfid.fid.get_batch_features
        with torch.no_grad():
            feats.append(extractor(torch.stack([load(img) for img in arr[i:i + batch_size]]).to(device)).cpu().numpy())
    return np.concatenate(feats)


def _cleanfid_distance(real: np.ndarray, fake: np.ndarray, extractor, *, mode: str, custom_fn_resize=None,
                       batch_size: int, device: torch.device) -> float:
    """clean-fid's Frechet distance between two uint8 NHWC image sets, computed in memory: the same features
    (see cleanfid_features), statistics and matrix square root (frechet_distance) as
    cleanfid.fid.compute_fid(folder1, folder2, custom_feat_extractor=...) on a folder of .npy files per set,
    without writing one file per image (a test checks the two agree)."""
    kw = {"mode": mode, "custom_fn_resize": custom_fn_resize, "batch_size": batch_size, "device": device}
    return frechet_distance(cleanfid_features(real, extractor, **kw), cleanfid_features(fake, extractor, **kw))


_CF_CACHE: dict[tuple[str, str, bool], torch.nn.Module] = {}


def fid_cf(
    real: Any,
    fake: Any,
    weights_dir: str | os.PathLike = DEFAULT_WEIGHTS_DIR,
    *,
    mode: str = "clean",
    device: str | torch.device | None = None,
    batch_size: int = 64,
) -> tuple[float, str]:
    """FID via clean-fid with its TorchScript Inception loaded from weights_dir.

    mode: 'clean' (PIL bicubic resize to 299 outside the network, the
    clean-fid default) or 'legacy_tensorflow' (TF-style resize inside).
    The extractor is built here (clean-fid's own build_feature_extractor
    always downloads to /tmp) and run through clean-fid's feature pipeline
    in memory (_cleanfid_distance: the same value as compute_fid on folders
    of the images, without writing them). Returns (fid, mode).
    """
    if mode not in ("clean", "legacy_tensorflow"):
        raise ValueError(f"fid_cf mode must be 'clean' or 'legacy_tensorflow', got {mode!r}")
    path = require(weights_dir, "inception_cf")["inception_cf"]
    from cleanfid.inception_torchscript import InceptionV3W

    dev = torch_device(device)
    resize_inside = mode == "legacy_tensorflow"
    key = (str(path.resolve()), str(dev), resize_inside)
    model = _CF_CACHE.get(key)
    if model is None:
        # download=False: InceptionV3W then only torch.jit.loads <dir>/inception-2015-12-05.pt.
        # torch 2.15 deprecates (but still supports) torch.jit.load, which clean-fid relies on.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated", category=FutureWarning)
            model = InceptionV3W(str(path.parent), download=False, resize_inside=resize_inside)
        model = _CF_CACHE[key] = model.to(dev).eval()

    def extractor(x: torch.Tensor) -> torch.Tensor:
        return model(x.to(dev))

    value = _cleanfid_distance(
        to_rgb_uint8(to_uint8_nhwc(real)),
        to_rgb_uint8(to_uint8_nhwc(fake)),
        extractor,
        mode=mode,
        batch_size=batch_size,
        device=dev,
    )
    return value, mode
