"""Method families. One explicit factory: family name -> module exposing build/phase_loss/reconstruct."""
from __future__ import annotations

from types import ModuleType

from . import dae

FAMILIES: dict[str, ModuleType] = {"dae": dae}


def get_family(name: str) -> ModuleType:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown method family {name!r}; known families: {', '.join(sorted(FAMILIES))}") from None
