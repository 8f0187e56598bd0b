"""Claims of the four papers, tested on our tables and on the papers' own.

A study turns its result tables into *measurements*: a long frame with one row per
(context, row, metric) -- context is the dataset (the paper's or ours), row names what was measured
(a method, a method in a mode, a method on a prior), value is the number and ``ci95`` the half-width of
its 95 % interval where the table has several seeds. The published tables are turned into the same
frame, so one claim is evaluated the same way on both:

- on ours, it gives the verdict: *holds* / *fails* / *inconclusive* / *untestable*. With intervals
  (several seeds) it holds or fails only when the intervals separate, otherwise it is inconclusive:
  seeded runs are not bit-identical across CPUs, and a single-run ordering can flip. Without
  intervals the comparison is strict (a tie fails).
- on the paper's, it gives the datasets on which the paper itself shows the claim; a claim that holds
  on all of them is *robust*.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

MEASUREMENT_COLUMNS = ["context", "row", "metric", "value", "ci95"]
COLUMNS = ["study", "paper", "table", "dataset", "claim_id", "statement", "estimator", "paper_datasets", "robust",
           "measured", "verdict", "holds"]
VERDICTS = ("holds", "fails", "inconclusive", "untestable")
LOWER_IS_BETTER = {"mse", "l2", "lpips", "fid_tf", "fid_cf", "fid", "fd_domain", "featdist_domain", "latent_nll",
                   "mmd", "ppl_lpips_vgg", "ppl_featdist_domain"}
NAMES = {"psnr": "PSNR", "ssim": "SSIM", "mse": "MSE", "l2": "L2", "lpips": "LPIPS", "fid_tf": "FID (tf)",
         "fid_cf": "FID (cf)", "fid": "FID", "fd_domain": "fd_domain", "featdist_domain": "featdist_domain",
         "elbo": "ELBO", "elbo_release": "ELBO (release estimator)", "latent_nll": "latent NLL", "mmd": "MMD",
         "knn_acc": "k-NN accuracy", "nmi": "NMI", "ap": "AP", "tad": "TAD", "precision": "precision",
         "auroc": "AUROC", "is": "IS", "is_domain": "is_domain", "ppl_lpips_vgg": "PPL (LPIPS VGG)", "ppl_featdist_domain": "PPL (featdist_domain)"}
# Stand-ins where a metric needs pretrained weights this run does not have: the first candidate with
# values for every row a claim needs is used, and the statement says which.
STAND_IN = {"fd_domain": "stand-in: fd_domain, a Fréchet distance in our domain classifier's features, not an FID",
            "featdist_domain": "stand-in: featdist_domain, a distance in our domain classifier's features, not LPIPS",
            "is_domain": "stand-in: is_domain, an Inception Score from our domain classifier's logits",
            "ppl_featdist_domain": "stand-in: a PPL in our domain classifier's features, not LPIPS VGG's",
            "precision_domain": "stand-in: precision_domain, k-NN precision in our domain classifier's features, "
                                "not Inception's"}


def measurements(records: list[dict]) -> pd.DataFrame:
    """Records {context, row, metric, value[, ci95]} -> the measurement frame (NaN values dropped)."""
    df = pd.DataFrame(records, columns=MEASUREMENT_COLUMNS)
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    df["ci95"] = pd.to_numeric(df["ci95"], errors="coerce")
    return df[df["value"].notna()].reset_index(drop=True)


def melt(table: pd.DataFrame, context, row, metrics: list[str]) -> list[dict]:
    """Records of ``metrics`` (with ``<metric>_ci95`` when the table has it) per table row; ``context`` and
    ``row`` are one value or one per table row, in the table's order."""
    n = len(table)
    ctx = [context] * n if isinstance(context, str) else list(context)
    names = [row] * n if isinstance(row, str) else list(row)
    out = []
    for i, (_, x) in enumerate(table.iterrows()):
        for m in metrics:
            if m in table.columns:
                ci = x[f"{m}_ci95"] if f"{m}_ci95" in table.columns else math.nan
                out.append({"context": ctx[i], "row": names[i], "metric": m, "value": x[m], "ci95": ci})
    return out


@dataclass(frozen=True)
class Better:
    """Row ``a`` is better than row ``b`` in ``metric`` (by a factor ``factor`` when > 1: a*factor < b for a
    lower-is-better metric, a > b*factor otherwise)."""
    claim_id: str
    table: str
    statement: str
    metric: str | tuple[str, ...]
    a: str
    b: str
    factor: float = 1.0
    estimator: str = ""

    def rows(self) -> list[str]:
        return [self.a, self.b]


@dataclass(frozen=True)
class Best:
    """Row ``row`` is strictly better in ``metric`` than every other row of ``among``."""
    claim_id: str
    table: str
    statement: str
    metric: str | tuple[str, ...]
    row: str
    among: tuple[str, ...] = field(default_factory=tuple)
    estimator: str = ""

    def rows(self) -> list[str]:
        return [self.row] + [r for r in self.among if r != self.row]


Claim = Better | Best


def _lookup(ms: pd.DataFrame, context: str, row: str, metric: str) -> tuple[float, float] | None:
    sel = ms[(ms["context"] == context) & (ms["row"] == row) & (ms["metric"] == metric)]
    if len(sel) > 1:
        raise ValueError(f"{len(sel)} measurements of {metric!r} for {row!r} in {context!r}: expected at most one")
    if sel.empty:
        return None
    return float(sel["value"].iloc[0]), float(sel["ci95"].iloc[0])


def _metric(claim: Claim, ms: pd.DataFrame, context: str) -> str:
    cands = (claim.metric,) if isinstance(claim.metric, str) else claim.metric
    for m in cands:
        if all(_lookup(ms, context, r, m) is not None for r in claim.rows()):
            return m
    return cands[-1]


def compare(a: tuple[float, float], b: tuple[float, float], lower: bool, factor: float = 1.0) -> str:
    """holds / fails / inconclusive for "a better than b (by ``factor``)". (value, ci95) pairs; where either
    side has an interval the verdict needs the intervals to separate, else it is inconclusive."""
    (va, ha), (vb, hb) = a, b
    ha, hb = (0.0 if math.isnan(h) else h for h in (ha, hb))
    if lower:
        holds, fails = factor * (va + ha) < vb - hb, factor * (va - ha) >= vb + hb
    else:
        holds, fails = va - ha > factor * (vb + hb), va + ha <= factor * (vb - hb)
    return "holds" if holds else "fails" if fails else "inconclusive"


def _fmt(v: tuple[float, float]) -> str:
    value, ci = v
    return f"{value:.5g}" if math.isnan(ci) else f"{value:.5g} ± {ci:.2g}"


def evaluate_one(claim: Claim, ms: pd.DataFrame, context: str, lower_is_better=LOWER_IS_BETTER
                 ) -> tuple[str, str, str]:
    """(statement, measured, verdict) of ``claim`` on the measurements of one context."""
    metric = _metric(claim, ms, context)
    name = NAMES.get(metric, metric)
    statement = claim.statement.format(metric=f"{name} ({STAND_IN[metric]})" if metric in STAND_IN else name)
    values = {r: _lookup(ms, context, r, metric) for r in claim.rows()}
    missing = [r for r, v in values.items() if v is None]
    if missing:
        return statement, f"{name}: no value for " + "; ".join(missing), "untestable"
    lower = metric in lower_is_better
    if isinstance(claim, Better):
        measured = f"{name}: {claim.a} {_fmt(values[claim.a])} vs {claim.b} {_fmt(values[claim.b])}"
        if claim.factor != 1.0:
            measured += f" (needs a factor {claim.factor:g})"
        return statement, measured, compare(values[claim.a], values[claim.b], lower, claim.factor)
    verdicts = [compare(values[claim.row], values[o], lower) for o in claim.rows()[1:]]
    measured = f"{name}: " + ", ".join(f"{r} {_fmt(v)}" for r, v in values.items())
    verdict = "fails" if "fails" in verdicts else "inconclusive" if "inconclusive" in verdicts else "holds"
    return statement, measured, verdict


def claim_values(claim: Claim, ms: pd.DataFrame, context: str) -> tuple[str, list[dict]]:
    """(the metric used, [{row, value, ci95}] of every row the claim compares) in one context."""
    metric = _metric(claim, ms, context)
    out = []
    for r in claim.rows():
        v = _lookup(ms, context, r, metric)
        out.append({"row": r, "value": math.nan if v is None else v[0], "ci95": math.nan if v is None else v[1]})
    return metric, out


def paper_support(claims: list[Claim], paper: pd.DataFrame) -> dict[str, tuple[str, object]]:
    """claim_id -> (the paper's datasets on which it holds, robust): robust when it holds on every one of the
    paper's datasets that has the numbers (NA when none has)."""
    out = {}
    contexts = list(dict.fromkeys(paper["context"]))
    for claim in claims:
        verdicts = {c: evaluate_one(claim, paper, c)[2] for c in contexts}
        known = {c: v for c, v in verdicts.items() if v != "untestable"}
        if not known:
            out[claim.claim_id] = ("not in the paper's tables", pd.NA)
            continue
        held = [c for c, v in known.items() if v == "holds"]
        text = ", ".join(held) if held else "none"
        not_held = [c for c in known if c not in held]
        if not_held:
            text += f" (not {', '.join(not_held)})"
        out[claim.claim_id] = (text, len(held) == len(known))
    return out


def contexts_of(claim: Claim, ms: pd.DataFrame) -> list[str]:
    """The contexts (datasets) in which any row the claim compares was measured -- a study's tables may cover
    several datasets (DDVI: images and genotypes), and a claim belongs to those its rows come from. A claim
    with no row anywhere is reported once, untestable, in the first context (none if there is none)."""
    contexts = list(dict.fromkeys(ms["context"]))
    have = [c for c in contexts if ms[(ms["context"] == c) & ms["row"].isin(claim.rows())].shape[0]]
    return have or contexts[:1]


def evaluate(study: str, paper_name: str, claims: list[Claim], ours: pd.DataFrame, paper: pd.DataFrame
             ) -> pd.DataFrame:
    """One row per (claim, dataset it applies to), in ``COLUMNS``."""
    support = paper_support(claims, paper)
    rows = []
    for claim in claims:
        for context in contexts_of(claim, ours):
            statement, measured, verdict = evaluate_one(claim, ours, context)
            paper_ds, robust = support[claim.claim_id]
            rows.append({"study": study, "paper": paper_name, "table": claim.table, "dataset": context,
                         "claim_id": claim.claim_id, "statement": statement, "estimator": claim.estimator,
                         "paper_datasets": paper_ds, "robust": robust, "measured": measured, "verdict": verdict,
                         "holds": {"holds": True, "fails": False}.get(verdict, pd.NA)})
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["holds"] = df["holds"].astype("boolean")
    df["robust"] = df["robust"].astype("boolean")
    return df
