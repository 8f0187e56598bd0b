"""Method families. One explicit factory: family name -> module exposing build and phase_loss, and for
autoencoders encode, decode, cost, diffusion_nfe, reconstruct, MODES and ENDPOINT_MODE / ENDPOINT_BY
(one interface, so evaluation never asks which family). A loss may name the child modules its phase
trains (``trainable``); the others are frozen for that phase.

  dae      two-phase DAE paper / DiffAE        dbae     diffusion bridge autoencoder
  uncond   unconditional VP diffusion (ScoreVAE's prior)
  scorevae ScoreVAE / ScoreVAE+                diffdec  conditional-diffusion decoder (baseline)
  vae      beta-VAE with a mirror decoder (baseline)

The DDVI study's latent-variable models (flat data, 2-D structured latents) have their own interface,
``LVMFamily``, and their own factory ``get_lvm_family``: ddvi, aevb, aevb_iaf, haevb, aaeb.
"""
from __future__ import annotations

from types import ModuleType

from . import dae, dbae, ddvi, diffdec, lvm_baselines, scorevae, uncond, vae
from .lvm import LVMFamily

FAMILIES: dict[str, ModuleType] = {"dae": dae, "dbae": dbae, "uncond": uncond, "scorevae": scorevae,
                                   "diffdec": diffdec, "vae": vae}


def get_family(name: str) -> ModuleType:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown method family {name!r}; known families: {', '.join(sorted(FAMILIES))}") from None


_B = lvm_baselines
LVM_FAMILIES: dict[str, LVMFamily] = {
    "ddvi": LVMFamily(ddvi.build, ddvi.stages, ddvi.elbo, ddvi.encode),
    "aevb": LVMFamily(_B.build_aevb, _B.variational_stages, _B.variational_elbo, _B.variational_encode),
    "aevb_iaf": LVMFamily(_B.build_iaf, _B.variational_stages, _B.variational_elbo, _B.variational_encode),
    "haevb": LVMFamily(_B.build_haevb, _B.variational_stages, _B.variational_elbo, _B.variational_encode),
    "aaeb": LVMFamily(_B.build_aaeb, _B.aaeb_stages, None, _B.aaeb_encode),
}


def get_lvm_family(name: str) -> LVMFamily:
    try:
        return LVM_FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown DDVI-study family {name!r}; known families: {', '.join(sorted(LVM_FAMILIES))}"
                         ) from None
