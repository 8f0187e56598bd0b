"""Method families, each declared once in its own module (``FAMILY = ...``, family.py): one registry,
``FAMILIES``, for both kinds.

  image  dae      two-phase DAE paper / DiffAE        dbae     diffusion bridge autoencoder
         uncond   unconditional VP diffusion (ScoreVAE's prior)
         scorevae ScoreVAE / ScoreVAE+                diffdec  conditional-diffusion decoder (baseline)
         vae      beta-VAE with a mirror decoder (baseline)
  ddvi   ddvi, aevb, aevb_iaf, haevb, aaeb: the DDVI study's latent-variable models (flat data, 2-D latents;
         ddvi.py, ddvi_baselines.py, their shared pieces in ddvi_common.py)

``phase_loss`` returns what train.train_phase takes (objective.py): a plain callable of unreduced terms, or
an ``Objective`` (stages, the child modules its phase trains, a progress hook)."""
from __future__ import annotations

from . import dae, dbae, ddvi, ddvi_baselines, diffdec, scorevae, uncond, vae
from .family import BaseFamily, DDVIFamily, ImageFamily

FAMILIES: dict[str, BaseFamily] = {f.name: f for f in (
    dae.FAMILY, dbae.FAMILY, uncond.FAMILY, scorevae.FAMILY, diffdec.FAMILY, vae.FAMILY,
    ddvi.FAMILY, *ddvi_baselines.FAMILIES)}


def families(kind: str) -> dict[str, BaseFamily]:
    return {n: f for n, f in FAMILIES.items() if f.kind == kind}


def get_family(name: str, kind: str = "image") -> ImageFamily | DDVIFamily:
    known = families(kind)
    if name not in known:
        what = "method family" if kind == "image" else "DDVI-study family"
        raise ValueError(f"unknown {what} {name!r}; known families: {', '.join(sorted(known))}")
    return known[name]


def get_ddvi_family(name: str) -> DDVIFamily:
    return get_family(name, "ddvi")
