"""What every job shares: writing its outputs, the execution settings it logs, and the JSON form of a
config slice that Snakemake compares to decide reruns."""
from __future__ import annotations

import json
from pathlib import Path

from ..config import ConfigError  # slice builders raise it too; Snakemake shows its message


def as_json(obj) -> str:
    """A slice as Snakemake's params see it: compact and key-sorted, so equal configs compare equal."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def save_npz(out: Path, **arrays) -> None:
    import numpy as np

    from ..data.store import atomic_path

    with atomic_path(Path(out)) as tmp:
        np.savez(tmp, **arrays)


def write_json(out: Path, obj: dict) -> None:
    from ..data.store import atomic_path

    with atomic_path(Path(out)) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def compute_settings(device_name: str) -> dict:
    """compute.* for this job (DAEBENCH_COMPUTE), and what it uses on its device, for the run's params."""
    from .. import compute
    from ..checkpoint import resolve_device

    settings = compute.from_env()
    return {"settings": settings, "effective": compute.effective(settings, resolve_device(device_name))}


def validate(params: str, schema: str, overlay: list | None = None, progress: bool = True) -> None:
    """params.yaml with the overlays (a preset, a --configfile) merged over it, checked as the workflow does;
    the problems one per line, without a traceback."""
    from ..config import load

    try:
        load(params, schema, overlay or ())
    except ConfigError as err:
        hint = "" if overlay else ("\n(an overlay such as a preset or a --configfile is checked over params.yaml: "
                                   f"python -m daebench validate --overlay {params})")
        raise SystemExit(f"{' + '.join([params, *(overlay or [])])}: {err}{hint}") from None
    print(f"{' + '.join([params, *(overlay or [])])}: valid")
