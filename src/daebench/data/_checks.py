"""Argument checks shared by the genotype modules (simulation, VCF parsing, PCA)."""

from __future__ import annotations

from typing import Any

import numpy as np


def require_int(key: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")


def require_number(key: str, value: Any, *, positive: bool) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if not ok or not np.isfinite(value) or (value <= 0 if positive else value < 0):
        raise ValueError(f"{key} must be a finite {'positive' if positive else 'non-negative'} number, "
                         f"got {value!r}")
