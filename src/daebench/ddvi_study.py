"""One run of the DDVI study: (setting, prior, method, seed) -> trained model -> metrics.

Settings (`ddvi_denoising_diffusion_variational_inference` §5): ``unsup`` (Table 1 / 8: images, a
structured prior), ``semi`` (Table 2: the prior's partitions known for ``labels`` training images) and
``cluster`` (Table 3: genotype PCA features, §4.2's mixture prior with learnable means; every individual
is both trained on and clustered, as in the paper's visualisation setting).

Every job receives the resolved slice ``cfg``: setting, likelihood, method (its per-setting overrides
already merged), nets, prior, kde, train (seed = the run's seed), eval and the setting's own block.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .evaluate import ddvi as metrics
from .methods import get_ddvi_family
from .methods.ddvi_common import Ctx, mean_x
from .methods.family import DDVIFamily
from .methods.objective import Objective
from .methods.priors import MixturePrior, StructuredPrior

log = logging.getLogger(__name__)
SETTINGS = ("unsup", "semi", "cluster")


@dataclass
class Data:
    x_train: torch.Tensor
    y_train: np.ndarray
    x_test: torch.Tensor
    y_test: np.ndarray
    names: list[str]


def load_data(cfg: dict, data_dir: Path) -> Data:
    """Images as flat [0, 1] vectors (bce), or genotype features (gaussian; train = test = everyone)."""
    if cfg["setting"] == "cluster":
        from .data.genotypes import load_genotypes

        x, y, names = load_genotypes(data_dir)
        xt = torch.from_numpy(np.asarray(x, np.float32))
        return Data(xt, y, xt, y, list(names))
    from .data import load_split, read_manifest

    def flat(split):
        images, labels = load_split(data_dir, split)
        return torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0), labels.astype(np.int64)

    (xa, ya), (xb, yb) = flat("train"), flat("test")
    return Data(xa, ya, xb, yb, read_manifest(data_dir).get("class_names", [str(i) for i in range(10)]))


def partition_labels(cfg: dict, y: np.ndarray) -> torch.Tensor:
    """Known partition per training example: the class for ``semi.labels`` seeded picks, -1 elsewhere."""
    part = torch.full((len(y),), -1, dtype=torch.long)
    if cfg["setting"] == "semi":
        n = int(cfg["semi"]["labels"])
        if n > len(y):
            raise ValueError(f"ddvi.settings.semi.labels = {n} exceeds the {len(y)} training examples")
        pick = torch.randperm(len(y), generator=torch.Generator().manual_seed(int(cfg["semi"]["label_seed"])))[:n]
        part[pick] = torch.from_numpy(y[pick.numpy()])
    return part


def make_prior(cfg: dict):
    p = cfg["prior"]
    if p["name"] == "mixture":
        return MixturePrior(int(p["clusters"]), float(p["std"]), float(p["init_radius"]), int(cfg["train"]["seed"]))
    return StructuredPrior(p["name"], p["params"], cfg["kde"])


class DDVILoss(Objective):
    """The family's stages plus a progress hook for in-loss schedules (KL annealing, AAEB's noise)."""

    def __init__(self, family: DDVIFamily, method: dict, ctx: Ctx, stage: str = "main"):
        """``stage``: "main", or "stage1", the release's first model (methods/ddvi.py, ``stage1``)."""
        self.ctx = ctx
        if stage == "stage1":
            from .methods.ddvi import stage1_stages

            self.stages = stage1_stages(method, ctx)
        else:
            self.stages = family.stages(method, ctx)

    def set_progress(self, fraction: float) -> None:
        self.ctx.progress = fraction


def build(cfg: dict, dim: int) -> tuple[DDVIFamily, nn.Module, Ctx]:
    m = cfg["method"]
    family = get_ddvi_family(m["family"])
    torch.manual_seed(cfg["train"]["seed"])
    model = family.build(cfg["nets"], dim, m, cfg["setting"] == "semi")
    prior = make_prior(cfg)
    if isinstance(prior, nn.Module):
        model.add_module("prior", prior)
        prior = None
    ctx = Ctx(prior=prior, likelihood=cfg["likelihood"], kl_weight=float(m.get("kl_weight", 1.0)),
              anneal=bool(m.get("anneal", False)), prior_weight=float(m.get("prior_weight", 1.0)))
    return family, model, ctx


@torch.no_grad()
def _batched(fn, x: torch.Tensor, bs: int = 512) -> torch.Tensor:
    return torch.cat([fn(x[i:i + bs]) for i in range(0, len(x), bs)])


@torch.no_grad()
def evaluate(cfg: dict, family: DDVIFamily, model: nn.Module, ctx: Ctx, data: Data) -> tuple[dict, dict]:
    """(metrics, arrays to keep: test codes and labels, decoded prior samples)."""
    ev = cfg["eval"]
    model.eval()
    g = torch.Generator().manual_seed(int(ev["seed"]))
    prior = model.prior if hasattr(model, "prior") else ctx.prior
    out: dict = {}
    z_test = _batched(lambda x: family.encode(model, x, g), data.x_test)
    arrays = {"z_test": z_test.numpy(), "y_test": data.y_test, "names": np.array(data.names)}
    if family.elbo is not None and cfg["setting"] != "cluster":
        no_label = torch.full((len(data.x_test),), -1, dtype=torch.long)
        runs = [_batched_elbo(family, model, ctx, data.x_test, no_label, g) for _ in range(int(ev["elbo_samples"]))]
        for k in runs[0]:
            out[k] = float(torch.stack([r[k] for r in runs]).mean())
    z_prior = prior.sample(int(ev["prior_samples"]), g)
    out["latent_nll"] = metrics.latent_nll(z_test, z_prior)
    if cfg["setting"] == "unsup":
        n = min(int(ev["mmd_samples"]), len(data.x_test))
        x_gen = mean_x(model.decoder(prior.sample(n, g)), ctx.likelihood)
        out["mmd"] = metrics.mmd2(x_gen, data.x_test[:n], ev["mmd_sigmas"])
        arrays["x_generated"] = x_gen[:64].numpy()
    if cfg["setting"] == "semi":
        z_train = _batched(lambda x: family.encode(model, x, g), data.x_train)
        out["knn_acc"] = metrics.knn_accuracy(z_train.numpy(), data.y_train, z_test.numpy(), data.y_test,
                                              int(ev["knn_k"]))
    if cfg["setting"] == "cluster":
        z_cluster = cluster_codes(family, model, data.x_test, g, ev.get("cluster_codes", "chain_mean"),
                                  int(ev.get("cluster_draws", 16)))
        clusters = prior.assign(z_cluster).numpy()
        out |= metrics.clustering_scores(data.y_test, clusters)
        arrays["clusters"] = clusters
        arrays["z_cluster"] = z_cluster.numpy()
    return out, arrays


CLUSTER_CODES = ("chain_mean", "sample")


@torch.no_grad()
def cluster_codes(family: DDVIFamily, model: nn.Module, x: torch.Tensor, g: torch.Generator, how: str,
                  draws: int) -> torch.Tensor:
    """The codes the clusters are read from: "chain_mean", the posterior mean of z estimated by ``draws``
    draws (for DDVI the mean of the chain's final z over ``draws`` chains; AAEB's codes are deterministic),
    or "sample", one draw z ~ q(z | x) per individual."""
    if how == "sample":
        return _batched(lambda xb: family.encode(model, xb, g), x)
    if how != "chain_mean":
        raise ValueError(f"unknown ddvi.eval.cluster_codes {how!r}; known: {', '.join(CLUSTER_CODES)}")
    return _batched(lambda xb: torch.stack([family.encode(model, xb, g) for _ in range(draws)]).mean(0), x)


def pretrain(cfg: dict, model: nn.Module, ctx: Ctx, stage1: bool = False) -> list[float]:
    """DDVI's optional warm-up of a denoiser on prior samples, the release's unconditional diffusion
    pretraining: the main denoiser (method key ``pretrain_examples``) or, with ``stage1``, the first model's
    context-free one (``stage1.pretrain_examples``); nothing for other families or 0 examples."""
    m = cfg["method"]
    n = int(((m.get("stage1") or {}) if stage1 else m).get("pretrain_examples", 0) or 0)
    if m["family"] != "ddvi" or n <= 0:
        return []
    from .methods.ddvi import pretrain_denoiser

    prior = model.prior if hasattr(model, "prior") else ctx.prior
    tr = cfg["train"]
    return pretrain_denoiser(model, prior, n, int(tr["batch_size"]), float(tr["lr"]), int(tr["seed"]), stage1)


def _batched_elbo(family, model, ctx, x, part, g, bs: int = 512) -> dict[str, torch.Tensor]:
    parts = [family.elbo(model, (x[i:i + bs], part[i:i + bs]), ctx, g) for i in range(0, len(x), bs)]
    return {k: torch.cat([p[k] for p in parts]).mean() for k in parts[0]}
