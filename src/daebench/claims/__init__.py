"""The four papers' claims tested on our tables (see core.py for the verdicts and robustness).

Each study's claims module declares its claims once (``CLAIMS``), the tables they read (``TABLES``), and how
its tables and the paper's published ones become measurements (``ours``, ``paper``); the functions here take
that module (a study's ``Study.claims``, daebench/studies/). ``results/claims/<study>.csv`` holds one study's
claims; ``results/claims.csv`` every study that has run."""
from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import pandas as pd

from ..data.store import atomic_path
from . import two_phase
from .core import COLUMNS, LOWER_IS_BETTER, NAMES, PAPER_VERDICTS, VERDICTS, evaluate
from .two_phase import BASELINE, LABELS, ONE_PHASE, TWO_PHASE

__all__ = ["BASELINE", "COLUMNS", "LABELS", "LOWER_IS_BETTER", "NAMES", "ONE_PHASE", "PAPER_VERDICTS", "TWO_PHASE",
           "VERDICTS", "combine", "counts", "evaluate_claims", "read_claims", "read_samples", "reference_dir",
           "study_claims", "summary", "write_claims", "write_study_claims"]


def reference_dir() -> Path:
    """The published tables shipped in the package (daebench/reference)."""
    return Path(str(importlib.resources.files("daebench") / "reference"))


def counts(claims: pd.DataFrame) -> dict[str, int]:
    """The numbers every summary of a claims file gives (the report's, the README's, docs/findings.md's)."""
    v = claims["verdict"].value_counts()
    robust = claims[claims["robust"].fillna(False).astype(bool)]
    held = robust[robust["verdict"] == "holds"]
    stand_in = claims["stand_in"].astype(bool) if "stand_in" in claims else pd.Series(False, index=claims.index)
    out = {"claims": len(claims), **{k: int(v.get(k, 0)) for k in VERDICTS}, "robust": len(robust),
           "robust_holds": len(held), "robust_holds_stand_in": int(stand_in[held.index].sum()),
           "paper_inconclusive": int((claims.get("paper_verdict") == PAPER_VERDICTS[1]).sum())}
    return out


def summary(claims: pd.DataFrame) -> str:
    """One line: how many claims hold, fail, are inconclusive, won only against a collapsed comparator or
    untestable, and how the robust ones fare (those on stand-in metrics counted apart)."""
    c = counts(claims)
    text = (f"{c['holds']} of {c['claims']} claims hold, {c['fails']} fail, {c['inconclusive']} are inconclusive "
            f"(the 95 % interval of the difference straddles zero), {c['vs-collapsed']} are won only against a "
            f"comparator whose decoder ignores z (vs-collapsed), {c['untestable']} cannot be tested with the "
            "columns this run produced")
    if c["robust"]:
        text += (f"; {c['robust_holds']} of the {c['robust']} robust findings (those the paper's own numbers "
                 f"separate on every one of its datasets) hold ({c['robust_holds_stand_in']} of them on stand-in "
                 "metrics)")
    if c["paper_inconclusive"]:
        text += f"; {c['paper_inconclusive']} claims are paper-inconclusive (the paper's own ± do not separate)"
    return text + "."


def read_samples(paths: list[str | Path]) -> dict[str, dict]:
    """Reconstruction scoring JSONs by their name under ``metrics/`` (``<dataset>/<method>/<mode>``, DBAE's
    ``..._nfe<n>``, ScoreVAE's ``<phase>_<mode>``): what each study's rows are looked up by."""
    out = {}
    for p in map(Path, paths):
        parts = p.with_suffix("").parts
        if "metrics" not in parts:
            raise ValueError(f"{p}: a samples file is a scoring job's JSON under a metrics/ folder")
        last = len(parts) - 1 - parts[::-1].index("metrics")  # the innermost metrics/ folder
        out["/".join(parts[last + 1:])] = json.loads(p.read_text())
    return out


def study_claims(mod, tables: dict[str, pd.DataFrame], cfg: dict | None = None,
                 ref_dir: Path | None = None, samples: dict[str, dict] | None = None) -> pd.DataFrame:
    """One study's claims (``mod``: its claims module) on its ``tables`` (name -> frame, names of
    ``mod.TABLES``), with the per-image evidence of its scoring jobs (``samples``, ``read_samples``) where it has
    any; ``cfg``: what the claims need from the configuration (``Study.claims_cfg`` and ``intervals``)."""
    unknown = set(tables) - set(mod.TABLES)
    if unknown:
        raise ValueError(f"{mod.STUDY} claims read tables {', '.join(mod.TABLES)}; got also {', '.join(sorted(unknown))}")
    cfg = cfg or {}
    ours = mod.ours(tables, cfg, samples or {})
    return evaluate(mod.STUDY, mod.PAPER, mod.CLAIMS, ours, mod.paper(Path(ref_dir or reference_dir())),
                    cfg.get("intervals"))


def evaluate_claims(table4: pd.DataFrame, samples: dict[str, dict] | None = None) -> pd.DataFrame:
    """The two-phase paper's Table 4 claims on a Table 4 frame (ours or the published one)."""
    return study_claims(two_phase, {"table4": table4}, samples=samples)


def read_claims(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"holds": "boolean", "robust": "boolean", "stand_in": "boolean"},
                       keep_default_na=False, na_values={"holds": [""], "robust": [""], "difference": [""],
                                                         "ci_low": [""], "ci_high": [""]})


def _write(df: pd.DataFrame, out: str | Path) -> None:
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)


def write_study_claims(mod, tables: dict[str, str | Path], cfg: dict, out: str | Path,
                       samples: list[str | Path] = ()) -> pd.DataFrame:
    """Read the study's table CSVs (name -> path) and scoring JSONs (``samples``), evaluate its claims, write
    ``out`` atomically."""
    df = study_claims(mod, {name: pd.read_csv(p) for name, p in tables.items()}, cfg,
                      samples=read_samples(samples))
    _write(df, out)
    return df


def write_claims(table4_csv: str | Path, out_csv: str | Path, samples: list[str | Path] = ()) -> pd.DataFrame:
    """Table 4's claims alone (the two-phase study's claims file)."""
    return write_study_claims(two_phase, {"table4": table4_csv}, {}, out_csv, samples)


def combine(paths: list[str | Path], out: str | Path) -> pd.DataFrame:
    """Concatenate per-study claims files (in the order given) into ``out``."""
    df = pd.concat([read_claims(p) for p in paths], ignore_index=True) if paths else pd.DataFrame(columns=COLUMNS)
    _write(df[COLUMNS], out)
    return df
