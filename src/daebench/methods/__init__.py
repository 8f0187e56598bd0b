"""Method families. One explicit factory: family name -> module exposing build and phase_loss, and for
autoencoders encode, decode, cost, diffusion_nfe, reconstruct, MODES and ENDPOINT_MODE / ENDPOINT_BY
(one interface, so evaluation never asks which family). A loss may name the child modules its phase
trains (``trainable``); the others are frozen for that phase.

  dae      two-phase DAE paper / DiffAE        dbae     diffusion bridge autoencoder
  uncond   unconditional VP diffusion (ScoreVAE's prior)
  scorevae ScoreVAE / ScoreVAE+                diffdec  conditional-diffusion decoder (baseline)
  vae      beta-VAE with a mirror decoder (baseline)
"""
from __future__ import annotations

from types import ModuleType

from . import dae, dbae, diffdec, scorevae, uncond, vae

FAMILIES: dict[str, ModuleType] = {"dae": dae, "dbae": dbae, "uncond": uncond, "scorevae": scorevae,
                                   "diffdec": diffdec, "vae": vae}


def get_family(name: str) -> ModuleType:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown method family {name!r}; known families: {', '.join(sorted(FAMILIES))}") from None
