"""The studies, one module per paper (``daebench/studies/<name>.py`` ending in ``STUDY = Study(...)``),
and the one list of them: ``NAMES``. The workflow's rules and ``study`` wildcard, the report's sections,
dvc.yaml's stages, the emergence ladder, the summaries, the schema's study enums and the CLI's ``--study``
choices all iterate over :data:`REGISTRY`; nothing else lists the studies.

Adding a study (docs/architecture.md): its module, and its name in ``NAMES``."""
from __future__ import annotations

import importlib

from .base import Section, Stage, Study

# The registration line. Order matters where studies share things: the report's section order after Table 4,
# dvc.yaml's stage order (a model folder belongs to the first stage that trains it), and which study a
# training method shared by two is counted under.
NAMES = ("two_phase", "two_phase_ablations", "dbae", "scorevae", "ddvi")

REGISTRY: dict[str, Study] = {n: importlib.import_module(f"{__name__}.{n}").STUDY for n in NAMES}

__all__ = ["NAMES", "REGISTRY", "Section", "Stage", "Study", "get"]


def get(name: str) -> Study:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown study {name!r}; known: {', '.join(REGISTRY)}") from None
