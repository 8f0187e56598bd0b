"""The domain classifier and the metrics measured in its features: the substitutes for FID and LPIPS that
need no pretrained weights (``fd_domain``, ``featdist_domain``).

The classifier (nets/classifier.py) is trained here on the dataset's own train split
(``train_classifier``), saved and loaded as a state_dict plus JSON-safe config (``save_classifier``,
``load_classifier``); its penultimate features (``domain_features``) give a Frechet distance between image
sets, clean-fid's value (``frechet_distance_domain``), and a per-pair distance (``feature_distance_domain``),
all computed by domain_numpy.py (the scoring jobs load the checkpoint there without torch); the functions
here take the torch model. Neither is an FID or LPIPS, and neither is comparable to published values
(features.COLUMN_DESCRIPTIONS). Image formats: image_format.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from daebench.compute import eager_optimizer
from daebench.data.store import atomic_path
from daebench.data.transforms import UInt8Images
from daebench.evaluate import domain_numpy, image_format
from daebench.evaluate.image_format import to_uint8_nhwc, torch_device
from daebench.nets.classifier import DomainClassifier, classifier_config

__all__ = [
    "domain_features",
    "feature_distance_domain",
    "frechet_distance_domain",
    "load_classifier",
    "save_classifier",
    "train_classifier",
]


# --------------------------------------------------------------------------
# training


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
    workflow jobs sharing the cores) OpenMP's spinning threads contend for
    the cores and slow training down many times over (measured in
    docs/findings.md, "Evaluation plumbing"); None keeps torch's current setting.
    """
    with _torch_threads(num_threads if torch_device(device).type == "cpu" else None):
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
    dev = torch_device(device)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DomainClassifier(config)
    model.to(dev).train()
    gen = torch.Generator().manual_seed(seed)
    opt = eager_optimizer(torch.optim.AdamW, model.parameters(), lr=lr, weight_decay=weight_decay)
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


# --------------------------------------------------------------------------
# checkpoint


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


# --------------------------------------------------------------------------
# features and the distances measured in them: one forward pass, domain_numpy's (the torch model only
# trains); these wrappers take the torch model and return tensors for the callers that hold torch


def _extractor(model: DomainClassifier | domain_numpy.ClassifierFeatures) -> domain_numpy.ClassifierFeatures:
    if isinstance(model, domain_numpy.ClassifierFeatures):
        return model
    return domain_numpy.ClassifierFeatures.from_model(model)


def domain_features(model: DomainClassifier, x: Any, *, batch_size: int = 256) -> torch.Tensor:
    """Penultimate features [B, F] of the domain classifier.

    x: float NCHW in [-1, 1] (returned on x's device) or uint8 NHWC (returned on CPU).
    """
    out_device = x.device if torch.is_tensor(x) else torch.device("cpu")
    return torch.from_numpy(_extractor(model)(image_format.float_nchw_array(x), batch_size)).to(out_device)


def frechet_distance_domain(real: Any, fake: Any, model: DomainClassifier,
                            resamples: np.ndarray | None = None) -> float | tuple[float, np.ndarray]:
    """domain_numpy.frechet_distance_domain with a torch model (or its numpy extractor)."""
    return domain_numpy.frechet_distance_domain(real, fake, _extractor(model), resamples=resamples)


def feature_distance_domain(x: Any, y: Any, model: DomainClassifier) -> torch.Tensor:
    """domain_numpy.feature_distance_domain as a tensor on x's device (or the CPU), shape [B]."""
    d = torch.from_numpy(domain_numpy.feature_distance_domain(x, y, _extractor(model)))
    return d.to(x.device) if torch.is_tensor(x) else d
