"""The four papers' claims tested on our tables (see core.py for the verdicts and robustness).

Each study module declares its claims once (``CLAIMS``), the tables they read (``TABLES``), and how its
tables and the paper's published ones become measurements (``ours``, ``paper``). ``results/claims/<study>.csv``
holds one study's claims; ``results/claims.csv`` every study that has run."""
from __future__ import annotations

import importlib.resources
from pathlib import Path

import pandas as pd

from ..data.store import atomic_path
from . import dbae, ddvi, scorevae, two_phase, two_phase_ablations
from .core import COLUMNS, LOWER_IS_BETTER, NAMES, VERDICTS, evaluate
from .two_phase import BASELINE, LABELS, ONE_PHASE, TWO_PHASE

STUDIES = {"two_phase": two_phase, "two_phase_ablations": two_phase_ablations, "dbae": dbae, "scorevae": scorevae,
           "ddvi": ddvi}

__all__ = ["BASELINE", "COLUMNS", "LABELS", "LOWER_IS_BETTER", "NAMES", "ONE_PHASE", "STUDIES", "TWO_PHASE", "VERDICTS",
           "combine", "evaluate_claims", "read_claims", "reference_dir", "study_cfg", "study_claims", "summary",
           "write_claims", "write_study_claims"]


def reference_dir() -> Path:
    """The published tables shipped in the package (daebench/reference)."""
    return Path(str(importlib.resources.files("daebench") / "reference"))


def _module(study: str):
    try:
        return STUDIES[study]
    except KeyError:
        raise ValueError(f"unknown study {study!r}; known: {', '.join(STUDIES)}") from None


def study_cfg(study: str, config: dict) -> dict:
    """What a study's claims need from the resolved configuration that its tables do not say."""
    probe = config["two_phase"]["probe"]["methods"]
    return {"two_phase": {}, "scorevae": {}, "dbae": {"dae": config["dbae"]["dae"]},
            "two_phase_ablations": {"labels": {m: config["methods"][m]["label"] for m in probe}},
            "ddvi": {"dataset": config["dataset"], "genotypes": config["ddvi"]["genotypes"]["source"]}}[study]


def summary(claims: pd.DataFrame) -> str:
    """One line: how many claims hold, fail, are inconclusive or untestable, and how the robust ones fare."""
    v = claims["verdict"].value_counts()
    robust = claims[claims["robust"].fillna(False).astype(bool)]
    text = (f"{int(v.get('holds', 0))} of {len(claims)} claims hold, {int(v.get('fails', 0))} fail, "
            f"{int(v.get('inconclusive', 0))} are inconclusive (95 % intervals overlap), "
            f"{int(v.get('untestable', 0))} cannot be tested with the columns this run produced")
    if len(robust):
        text += (f"; of the {len(robust)} robust claims (those the paper shows on every one of its datasets), "
                 f"{int((robust['verdict'] == 'holds').sum())} hold")
    return text + "."


def study_claims(study: str, tables: dict[str, pd.DataFrame], cfg: dict | None = None,
                 ref_dir: Path | None = None) -> pd.DataFrame:
    """One study's claims on its ``tables`` (name -> frame, names of ``STUDIES[study].TABLES``)."""
    mod = _module(study)
    unknown = set(tables) - set(mod.TABLES)
    if unknown:
        raise ValueError(f"{study} claims read tables {', '.join(mod.TABLES)}; got also {', '.join(sorted(unknown))}")
    ours = mod.ours(tables, cfg or {})
    return evaluate(study, mod.PAPER, mod.CLAIMS, ours, mod.paper(Path(ref_dir or reference_dir())))


def evaluate_claims(table4: pd.DataFrame) -> pd.DataFrame:
    """The two-phase paper's Table 4 claims on a Table 4 frame (ours or the published one)."""
    return study_claims("two_phase", {"table4": table4})


def read_claims(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"holds": "boolean", "robust": "boolean"}, keep_default_na=False,
                       na_values={"holds": [""], "robust": [""]})


def _write(df: pd.DataFrame, out: str | Path) -> None:
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)


def write_study_claims(study: str, tables: dict[str, str | Path], cfg: dict, out: str | Path) -> pd.DataFrame:
    """Read the study's table CSVs (name -> path), evaluate its claims, write ``out`` atomically."""
    df = study_claims(study, {name: pd.read_csv(p) for name, p in tables.items()}, cfg)
    _write(df, out)
    return df


def write_claims(table4_csv: str | Path, out_csv: str | Path) -> pd.DataFrame:
    """Table 4's claims alone (the two-phase study's claims file)."""
    return write_study_claims("two_phase", {"table4": table4_csv}, {}, out_csv)


def combine(paths: list[str | Path], out: str | Path) -> pd.DataFrame:
    """Concatenate per-study claims files (in the order given) into ``out``."""
    df = pd.concat([read_claims(p) for p in paths], ignore_index=True) if paths else pd.DataFrame(columns=COLUMNS)
    _write(df[COLUMNS], out)
    return df
