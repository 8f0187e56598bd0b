"""Feature-based metrics: LPIPS, FID (torch-fidelity and clean-fid) and the
domain-feature substitutes used when the pretrained weights are absent.

References
- LPIPS: Zhang et al., "The Unreasonable Effectiveness of Deep Features as a
  Perceptual Metric", CVPR 2018 (AlexNet trunk, v0.1 linear layers).
- FID: Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge
  to a Local Nash Equilibrium", NeurIPS 2017.
- clean-fid: Parmar et al., "On Aliased Resizing and Surprising Subtleties in
  GAN Evaluation", CVPR 2022 (mode 'clean': PIL bicubic resize to 299).
- torch-fidelity: Obukhov et al., 2020 (TF1-compatible Inception + resize).

Image conventions accepted by every function here:
- floating torch tensors: NCHW in [-1, 1] (the project-wide convention);
- uint8 arrays (numpy or torch): NHWC in [0, 255], i.e. the data module's
  format and what an image file holds.
FID inputs are converted to uint8 (round((x + 1) * 127.5)) because that is
what both FID protocols see when images are saved and re-read; 1-channel
images are repeated to RGB for the ImageNet networks.

No function here downloads anything: LPIPS/FID load their pretrained files
from ``weights_dir`` (see weights.py) and raise WeightsMissing otherwise.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from daebench.data.store import atomic_path
from daebench.data.transforms import UInt8Images
from daebench.evaluate.weights import (
    DEFAULT_WEIGHTS_DIR,
    LPIPS_LINEAR,
    LPIPS_LINEAR_VGG,
    WeightsMissing,
    require,
    sha256_file,
)
from daebench.nets.classifier import DomainClassifier, classifier_config

log = logging.getLogger("daebench")

__all__ = [
    "COLUMN_DESCRIPTIONS",
    "WeightsMissing",
    "domain_features",
    "feature_distance_domain",
    "fid_cf",
    "fid_tf",
    "frechet_distance_domain",
    "load_classifier",
    "lpips_distance",
    "protocol_info",
    "save_classifier",
    "to_float_nchw",
    "to_uint8_nhwc",
    "train_classifier",
]

COLUMN_DESCRIPTIONS: dict[str, str] = {
    "psnr": "Peak signal-to-noise ratio in dB between input and reconstruction on [0, 1] images "
    "(data range 1, capped at 100 dB for exact reconstructions); higher is better.",
    "ssim": "Structural similarity (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, matching "
    "scikit-image) between input and reconstruction, averaged over channels; higher is better.",
    "mse": "Mean squared error between input and reconstruction on [0, 1] images; lower is better.",
    "lpips": "LPIPS v0.1 perceptual distance (lpips package, AlexNet trunk, inputs in [-1, 1], "
    "images under 32 px bilinearly upsampled to 32) between input and reconstruction; lower is better.",
    "fid_tf": "Frechet Inception Distance from torch-fidelity (TF-compatible InceptionV3, 2048-d pool "
    "features) between generated samples and the fixed reference set; lower is better.",
    "fid_cf": "Frechet Inception Distance from clean-fid (mode recorded, 'clean' by default: PIL "
    "bicubic resize to 299) between generated samples and the fixed reference set; lower is better.",
    "fd_domain": "Frechet distance in the penultimate features of a small classifier trained by the "
    "pipeline on the same dataset, computed through clean-fid's custom_feat_extractor; NOT an FID, "
    "not comparable to published FIDs; lower is better.",
    "featdist_domain": "Per-pair Euclidean distance between unit-normalised penultimate features of the "
    "domain classifier (an LPIPS-like distance, in [0, 2]) between input and reconstruction; NOT LPIPS; "
    "lower is better.",
}

LPIPS_MIN_SIZE = 32  # AlexNet's conv/pool stack needs >= 31 px per side


# --------------------------------------------------------------------------
# image format helpers


def to_uint8_nhwc(images: Any) -> np.ndarray:
    """uint8 NHWC numpy array from uint8 NHWC (numpy/torch) or float NCHW [-1, 1] torch."""
    if torch.is_tensor(images):
        if images.dtype == torch.uint8:
            arr = images.detach().cpu().numpy()
        elif images.is_floating_point():
            if images.dim() != 4:
                raise ValueError(f"float images must be NCHW, got shape {tuple(images.shape)}")
            q = torch.round((images.detach().float().clamp(-1, 1) + 1) * 127.5)
            arr = q.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        else:
            raise TypeError(f"unsupported tensor dtype {images.dtype}")
    elif isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise TypeError(
                "numpy images must be uint8 NHWC in [0, 255]; pass float images as a torch tensor NCHW in [-1, 1]"
            )
        arr = images
    else:
        raise TypeError(f"unsupported image container {type(images)!r}")
    if arr.ndim == 3:  # N, H, W grayscale
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"expected NHWC with 1 or 3 channels, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def to_float_nchw(images: Any) -> torch.Tensor:
    """float32 NCHW tensor in [-1, 1] from either accepted format."""
    if torch.is_tensor(images) and images.is_floating_point():
        if images.dim() != 4:
            raise ValueError(f"float images must be NCHW, got shape {tuple(images.shape)}")
        return images.float()
    arr = to_uint8_nhwc(images)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _rgb(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise ValueError(f"expected 1 or 3 channels, got {x.shape[1]}")
    return x


def _to_rgb_uint8(arr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(arr, 3, axis=-1)) if arr.shape[-1] == 1 else arr


# --------------------------------------------------------------------------
# LPIPS

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
    dev = _device(device)
    key = (str(path.resolve()), str(dev))
    model = _LPIPS_CACHE.get(key)
    if model is None:
        model = _LPIPS_CACHE[key] = _build_lpips(path, dev, net)
    out = []
    for i in range(0, x.shape[0], batch_size):
        a = _rgb(x[i : i + batch_size].to(dev, torch.float32).clamp(-1, 1))
        b = _rgb(y[i : i + batch_size].to(dev, torch.float32).clamp(-1, 1))
        h, w = a.shape[-2:]
        if min(h, w) < LPIPS_MIN_SIZE:
            s = LPIPS_MIN_SIZE / min(h, w)
            size = (round(h * s), round(w * s))
            a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
            b = F.interpolate(b, size=size, mode="bilinear", align_corners=False)
        out.append(model(a, b, normalize=False).flatten())
    return torch.cat(out).to(x.device)


# --------------------------------------------------------------------------
# FID


class _UInt8CHWDataset(torch.utils.data.Dataset):
    """torch-fidelity input: uint8 3xHxW tensors."""

    def __init__(self, arr: np.ndarray):
        self.arr = _to_rgb_uint8(arr)

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

    dev = _device(device)
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
    stays as it is), so that a metrics job does not import torchvision: that import (its ops pull in
    torch._dynamo) was about 2 s of a smoke metrics job's 6."""
    img = img[:, :, None] if img.ndim == 2 else img
    t = torch.from_numpy(img.transpose((2, 0, 1))).contiguous()
    return t.to(dtype=torch.float32).div(255) if t.dtype == torch.uint8 else t


def _cleanfid_features(arr: np.ndarray, extractor, *, mode: str, custom_fn_resize=None, batch_size: int,
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


def _frechet_distance(f1: np.ndarray, f2: np.ndarray, eps: float = 1e-6) -> float:
    """cleanfid.fid.fid_from_feats (0.1.35) step for step: np.mean / np.cov statistics, scipy's sqrtm of
    the covariance product (an eps ridge if it is singular), its real part if the imaginary one is negligible.
    Kept here so a job does not import cleanfid.fid (which imports torchvision); a test compares the two."""
    from scipy import linalg

    mu1, s1 = np.mean(f1, axis=0), np.atleast_2d(np.cov(f1, rowvar=False))
    mu2, s2 = np.mean(f2, axis=0), np.atleast_2d(np.cov(f2, rowvar=False))
    diff = np.atleast_1d(mu1) - np.atleast_1d(mu2)
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        log.warning("Frechet distance: singular covariance product; adding %g to the diagonals", eps)
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Frechet distance: imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _frechet_distance_eig(f1: np.ndarray, f2: np.ndarray) -> float:
    """The Frechet distance of _frechet_distance with tr sqrtm(S1 S2) taken as the sum of the square roots of
    the eigenvalues of S1 S2 (real and >= 0 for covariance matrices; round-off negatives clamped): the same
    value to round-off (a test compares them) at half scipy's sqrtm cost, which matters for the bootstrap's
    thousand resamples per scoring job."""
    mu1, s1 = np.mean(f1, axis=0), np.atleast_2d(np.cov(f1, rowvar=False))
    mu2, s2 = np.mean(f2, axis=0), np.atleast_2d(np.cov(f2, rowvar=False))
    diff = np.atleast_1d(mu1) - np.atleast_1d(mu2)
    ev = np.linalg.eigvals(s1.dot(s2)).real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(ev, 0.0, None)).sum())


def _cleanfid_distance(real: np.ndarray, fake: np.ndarray, extractor, *, mode: str, custom_fn_resize=None,
                       batch_size: int, device: torch.device) -> float:
    """clean-fid's Frechet distance between two uint8 NHWC image sets, computed in memory: the same features
    (see _cleanfid_features), statistics and matrix square root (_frechet_distance) as
    cleanfid.fid.compute_fid(folder1, folder2, custom_feat_extractor=...) on a folder of .npy files per set,
    without writing one file per image (a test checks the two agree)."""
    kw = {"mode": mode, "custom_fn_resize": custom_fn_resize, "batch_size": batch_size, "device": device}
    return _frechet_distance(_cleanfid_features(real, extractor, **kw), _cleanfid_features(fake, extractor, **kw))


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

    dev = _device(device)
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
        _to_rgb_uint8(to_uint8_nhwc(real)),
        _to_rgb_uint8(to_uint8_nhwc(fake)),
        extractor,
        mode=mode,
        batch_size=batch_size,
        device=dev,
    )
    return value, mode


# --------------------------------------------------------------------------
# domain features


def _shift_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random +-1 px translation per image (replicate padding).

    Cheap invariance that lifts held-out accuracy of the tiny classifier on
    digits by a few points; one gather, whatever the batch size.
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    dy, dx = torch.randint(0, 3, (2, b, 1), generator=gen)
    rows = (torch.arange(h) + dy)[:, None, :, None]  # [B, 1, H, 1]
    cols = (torch.arange(w) + dx)[:, None, None, :]  # [B, 1, 1, W]
    bi = torch.arange(b)[:, None, None, None]
    ci = torch.arange(c)[None, :, None, None]
    return padded[bi, ci, rows, cols]


@torch.no_grad()
def _accuracy(model: DomainClassifier, x: UInt8Images, y: torch.Tensor, batch_size: int = 1024) -> float:
    model.eval()
    dev = next(model.parameters()).device
    correct = 0
    for i in range(0, len(x), batch_size):
        pred = model(x.batch(np.arange(i, min(i + batch_size, len(x))), dev)).argmax(dim=1).cpu()
        correct += int((pred == y[i : i + batch_size]).sum())
    return correct / max(1, len(x))


def train_classifier(
    train_images_uint8_nhwc: np.ndarray,
    train_labels: np.ndarray,
    *,
    steps: int = 600,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = True,
    test_images: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    weight_decay: float = 1e-4,
    augment: bool = True,
    device: str | torch.device | None = "cpu",
    num_threads: int | None = 1,
) -> tuple[DomainClassifier, dict]:
    """Train the domain classifier (nets/classifier.py) on uint8 NHWC images.

    AdamW with a cosine learning-rate decay, cross-entropy, +-1 px shifts.
    Deterministic for a given seed on CPU: weights are initialised under a
    forked global RNG and batches/augmentations come from an explicit
    torch.Generator.  Returns (model in eval mode, info); info holds the
    config, hyper-parameters, final training loss/accuracy and, when test
    data is given, test_accuracy.

    num_threads (CPU only, restored afterwards): the net is so small that
    intra-op threading buys little, while under oversubscription (several
    workflow jobs sharing the cores) OpenMP's spinning made training >10x
    slower in practice; None keeps torch's current setting.
    """
    with _torch_threads(num_threads if _device(device).type == "cpu" else None):
        return _train_classifier(
            train_images_uint8_nhwc,
            train_labels,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            progress=progress,
            test_images=test_images,
            test_labels=test_labels,
            weight_decay=weight_decay,
            augment=augment,
            device=device,
        )


@contextlib.contextmanager
def _torch_threads(n: int | None):
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _train_classifier(
    train_images_uint8_nhwc,
    train_labels,
    *,
    steps,
    batch_size,
    lr,
    seed,
    progress,
    test_images,
    test_labels,
    weight_decay,
    augment,
    device,
) -> tuple[DomainClassifier, dict]:
    t0 = time.perf_counter()
    # uint8, converted batch by batch: a paper-scale (memory-mapped) split never exists as float32.
    raw = train_images_uint8_nhwc
    x = UInt8Images(raw if isinstance(raw, np.memmap) and raw.ndim == 4 else to_uint8_nhwc(raw))
    y = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    if y.min() < 0:
        raise ValueError("labels must be non-negative class indices")
    num_classes = int(y.max()) + 1
    if test_labels is not None:
        num_classes = max(num_classes, int(np.max(test_labels)) + 1)
    config = classifier_config(x.shape[1], min(x.shape[2], x.shape[3]), num_classes)
    dev = _device(device)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DomainClassifier(config)
    model.to(dev).train()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(s, steps) / max(1, steps))))
    n = len(x)
    bs = min(batch_size, n)
    perm = torch.randperm(n, generator=gen)
    pos = 0
    ema_loss = None
    report_every = max(1, steps // 10)
    for step in range(steps):
        if pos + bs > n:  # epoch-wise sampling without replacement
            perm = torch.randperm(n, generator=gen)
            pos = 0
        idx = perm[pos : pos + bs]
        pos += bs
        xb = x.batch(idx)
        if augment:
            xb = _shift_augment(xb, gen)
        loss = F.cross_entropy(model(xb.to(dev)), y[idx].to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        lv = loss.detach().item()
        ema_loss = lv if ema_loss is None else 0.95 * ema_loss + 0.05 * lv
        if progress and ((step + 1) % report_every == 0 or step + 1 == steps):
            print(f"domain classifier step {step + 1}/{steps} loss {ema_loss:.4f}", file=sys.stderr, flush=True)
    model.eval()
    info: dict[str, Any] = {
        "config": config,
        "steps": int(steps),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "weight_decay": float(weight_decay),
        "augment": bool(augment),
        "seed": int(seed),
        "num_train": int(n),
        "train_loss": float(ema_loss) if ema_loss is not None else None,
        "train_accuracy": _accuracy(model, x, y),
        "torch_version": torch.__version__,
    }
    if test_images is not None and test_labels is not None:
        xt = UInt8Images(to_uint8_nhwc(test_images))
        yt = torch.as_tensor(np.asarray(test_labels), dtype=torch.long)
        info["num_test"] = len(xt)
        info["test_accuracy"] = _accuracy(model, xt, yt)
    info["seconds"] = round(time.perf_counter() - t0, 3)
    if progress:
        acc = f", test accuracy {info['test_accuracy']:.4f}" if "test_accuracy" in info else ""
        print(
            f"domain classifier: train accuracy {info['train_accuracy']:.4f}{acc} in {info['seconds']:.1f}s",
            file=sys.stderr,
        )
    return model, info


def _json_safe(obj: Any) -> Any:
    # Round-trip through JSON so the checkpoint holds only primitives, which
    # torch.load(weights_only=True) accepts, and the info stays printable.
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def save_classifier(path: str | os.PathLike, model: DomainClassifier, info: dict | None = None) -> None:
    """state_dict + JSON-safe config/info, written atomically (no pickled code)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": "daebench.domain_classifier/1",
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "config": _json_safe(model.config),
        "info": _json_safe(info or {}),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)


def load_classifier(path: str | os.PathLike, device: str | torch.device = "cpu") -> DomainClassifier:
    """Inverse of save_classifier: the model in eval mode; the saved info dict is on ``model.info``."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "state_dict" not in payload or "config" not in payload:
        raise ValueError(f"{path} is not a daebench domain-classifier checkpoint")
    model = DomainClassifier(payload["config"])
    model.load_state_dict(payload["state_dict"], strict=True)
    model.info = dict(payload.get("info", {}))
    return model.to(device).eval()


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _match_channels(x: torch.Tensor, c: int) -> torch.Tensor:
    if x.shape[1] == c:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, c, -1, -1)
    if c == 1:
        return x.mean(dim=1, keepdim=True)
    raise ValueError(f"cannot feed {x.shape[1]}-channel images to a {c}-channel classifier")


@torch.no_grad()
def domain_features(model: DomainClassifier, x: Any, *, batch_size: int = 1024) -> torch.Tensor:
    """Penultimate features [B, F] of the domain classifier.

    x: float NCHW in [-1, 1] (returned on x's device) or uint8 NHWC (returned on CPU).
    """
    out_device = x.device if torch.is_tensor(x) else torch.device("cpu")
    xf = to_float_nchw(x)
    model.eval()
    dev = _model_device(model)
    feats = []
    for i in range(0, len(xf), batch_size):
        xb = _match_channels(xf[i : i + batch_size].to(dev, torch.float32).clamp(-1, 1), model.in_channels)
        feats.append(model.features(xb).float())
    if not feats:
        return torch.empty(0, model.config["feature_dim"], device=out_device)
    return torch.cat(feats).to(out_device)


def frechet_distance_domain(real: Any, fake: Any, model: DomainClassifier, *, batch_size: int = 256,
                            resamples: np.ndarray | None = None) -> float | tuple[float, np.ndarray]:
    """Frechet distance between two image sets in the domain classifier's features.

    Goes through clean-fid's feature pipeline in memory with the classifier
    as the extractor (_cleanfid_distance: the statistics and the matrix
    square root are clean-fid's, the value that of compute_fid with
    custom_feat_extractor on folders of the images), with
    custom_fn_resize = identity: the 299x299 resize exists for Inception and
    would only blur a classifier trained at native resolution.  Images are
    quantised to uint8 first, as for FID.  Tiny negative values from
    round-off are clamped to 0. With ``resamples`` ([B, n] indices into the
    paired sets, stats.bootstrap_indices) also the B distances of the resampled
    pairs: (value, replicates).
    """
    dev = _model_device(model)

    def extractor(batch: torch.Tensor) -> torch.Tensor:
        # clean-fid hands over float [0, 255] NCHW; rounding undoes ToTensor's /255*255 drift
        # so the features equal domain_features() on the same uint8 images.
        xb = torch.round(batch.float()) / 127.5 - 1.0
        return domain_features(model, xb.to(dev), batch_size=batch_size)

    kw = {"mode": "clean", "custom_fn_resize": lambda img: img, "batch_size": batch_size, "device": dev}
    f1 = _cleanfid_features(to_uint8_nhwc(real), extractor, **kw)
    f2 = _cleanfid_features(to_uint8_nhwc(fake), extractor, **kw)
    value = max(_frechet_distance(f1, f2), 0.0)
    if resamples is None:
        return value
    # One distance per resample of the (real, fake) pairs: the same indices in every row's job, so a claim
    # compares two rows resample by resample (stats.paired_replicates).
    reps = np.array([max(_frechet_distance_eig(f1[i], f2[i]), 0.0) for i in resamples])
    return value, reps


@torch.no_grad()
def feature_distance_domain(x: Any, y: Any, model: DomainClassifier) -> torch.Tensor:
    """Per-pair ||f(x)/|f(x)| - f(y)/|f(y)| ||_2 in domain-classifier features, shape [B].

    Unit-normalising before the distance follows LPIPS (which normalises each
    layer's activations across channels), so the scale of the features does
    not matter and the value lies in [0, 2].
    """
    fx = F.normalize(domain_features(model, x), dim=1)
    fy = F.normalize(domain_features(model, y), dim=1)
    if fx.shape != fy.shape:
        raise ValueError(f"x and y must be paired batches, got {tuple(fx.shape)} vs {tuple(fy.shape)}")
    return (fx - fy).norm(dim=1)


def protocol_info(weights_dir: str | os.PathLike = DEFAULT_WEIGHTS_DIR) -> dict:
    """Versions and settings to record next to every metrics table."""
    from importlib import metadata

    from daebench.evaluate.weights import available

    def ver(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    return {
        "torch": torch.__version__,
        "lpips": ver("lpips"),
        "clean-fid": ver("clean-fid"),
        "torch-fidelity": ver("torch-fidelity"),
        "scikit-image": ver("scikit-image"),
        "ssim": "gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, data_range 1",
        "psnr": "data_range 1, capped at 100 dB",
        "lpips_net": "alex v0.1, normalize=False, min side 32",
        "fid_cf_mode": "clean",
        "fid_tf_extractor": "inception-v3-compat",
        "weights_available": available(weights_dir),
    }
