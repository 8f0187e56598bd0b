"""Method families. One explicit factory: family name -> module exposing build, phase_loss, encode,
infer_endpoint, decode, cost, diffusion_nfe, reconstruct, MODES and ENDPOINT_MODE / ENDPOINT_BY
(one interface, so evaluation never asks which family)."""
from __future__ import annotations

from types import ModuleType

from . import dae, dbae

FAMILIES: dict[str, ModuleType] = {"dae": dae, "dbae": dbae}


def get_family(name: str) -> ModuleType:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown method family {name!r}; known families: {', '.join(sorted(FAMILIES))}") from None
