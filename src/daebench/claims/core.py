"""Claims of the four papers, tested on our tables and on the papers' own, each verdict with an interval.

A study turns its result tables into *measurements*: a long frame with one row per (context, row, metric)
-- context is the dataset (the paper's or ours), row names what was measured (a method, a method in a mode,
a method on a prior), ``value`` is the number, ``ci95`` the half-width of its 95 % interval where the table
has one, and ``evidence`` what an interval of a *difference* can be built from (``Evidence``): the per-image
values of a reconstruction (with the chance level of each image), a distribution metric on shared bootstrap
resamples, per-seed values, or a published "mean ± h" over n seeds. The published tables become the same
frame, so one claim is judged by one rule on both sides:

- on ours, the verdict comes from the interval of the difference of the two rows (``stats``): *holds* when
  it lies wholly on the claimed side, *fails* when wholly on the other, *inconclusive* when it straddles;
  *untestable* when a row has no value; *vs-collapsed* when the row the claim beats does not use its code
  z (its reconstructions are no closer to their originals than other images' reconstructions are), so a win over it is
  not a finding (a claim that fails even against such a row still fails). Rows without evidence are
  compared by their point values, and ``test`` says "no interval".
- on the paper's, the same rule over the paper's datasets: *robust* when it holds on every one that has the
  numbers; *paper-inconclusive* when the paper's own ± do not separate the rows on one of them (never
  robust). Where a claim names several real metrics (FID (tf) and FID (cf)) it must hold under each.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..evaluate import stats
from ..evaluate.stats import Interval

MEASUREMENT_COLUMNS = ["context", "row", "metric", "value", "ci95", "evidence"]
COLUMNS = ["study", "paper", "table", "dataset", "claim_id", "statement", "estimator", "paper_datasets", "robust",
           "paper_verdict", "measured", "difference", "ci_low", "ci_high", "test", "stand_in", "verdict", "holds"]
VERDICTS = ("holds", "fails", "inconclusive", "vs-collapsed", "untestable")
PAPER_VERDICTS = ("robust", "paper-inconclusive", "not robust", "not in the paper's tables")
LOWER_IS_BETTER = {"mse", "l2", "lpips", "fid_tf", "fid_cf", "fid", "fd_domain", "featdist_domain", "latent_nll",
                   "mmd", "ppl_lpips_vgg", "ppl_featdist_domain"}
# Metrics whose per-seed values are heavy-tailed (one run's latent NLL can be ten times another's: the KDE of
# a prior scores codes that fall off it without bound): compared by medians, not means.
HEAVY_TAILED = {"latent_nll"}
NAMES = {"psnr": "PSNR", "ssim": "SSIM", "mse": "MSE", "l2": "L2", "lpips": "LPIPS", "fid_tf": "FID (tf)",
         "fid_cf": "FID (cf)", "fid": "FID", "fd_domain": "fd_domain", "featdist_domain": "featdist_domain",
         "elbo": "ELBO", "elbo_release": "ELBO (release estimator)", "latent_nll": "latent NLL", "mmd": "MMD",
         "knn_acc": "k-NN accuracy", "nmi": "NMI", "ap": "AP", "tad": "TAD", "precision": "precision",
         "auroc": "AUROC", "is": "IS", "is_domain": "is_domain", "ppl_lpips_vgg": "PPL (LPIPS VGG)",
         "ppl_featdist_domain": "PPL (featdist_domain)", "cluster_purity": "cluster purity"}
# Stand-ins where a metric needs pretrained weights this run does not have: the first candidate with
# values for every row a claim needs is used, and the statement says which.
STAND_IN = {"fd_domain": "stand-in: fd_domain, a Fréchet distance in our domain classifier's features, not an FID",
            "featdist_domain": "stand-in: featdist_domain, a distance in our domain classifier's features, not LPIPS",
            "is_domain": "stand-in: is_domain, an Inception Score from our domain classifier's logits",
            "ppl_featdist_domain": "stand-in: a PPL in our domain classifier's features, not LPIPS VGG's",
            "precision_domain": "stand-in: precision_domain, k-NN precision in our domain classifier's features, "
                                "not Inception's"}
# The metric that says whether a row's decoder uses z, where the claim's own metric has no chance level
USES_Z = "uses_z"


@dataclass(frozen=True, eq=False)
class Evidence:
    """What an interval of a difference can be built from, for one measurement.

    kind: ``per_image`` (``values``: one per test image, in the test split's order; ``chance``: the same metric
    between each test image and another one), ``replicates`` (``values``: the metric on shared bootstrap
    resamples, drawn as ``key`` = (n, resamples, seed)), ``seeds`` (``values``: one per seed), or ``ci95``
    (a published mean ± ``half`` over ``n`` seeds)."""
    kind: str
    values: np.ndarray = field(default_factory=lambda: np.empty(0))
    chance: np.ndarray | None = None
    key: tuple = ()
    half: float = math.nan
    n: int = 0


def measurements(records: list[dict]) -> pd.DataFrame:
    """Records {context, row, metric, value[, ci95][, evidence]} -> the measurement frame (NaN values dropped)."""
    df = pd.DataFrame(records, columns=MEASUREMENT_COLUMNS)
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    df["ci95"] = pd.to_numeric(df["ci95"], errors="coerce")
    df["evidence"] = df["evidence"].astype(object).where(df["evidence"].notna(), None)
    return df[df["value"].notna()].reset_index(drop=True)


def _seed_values(cell) -> np.ndarray | None:
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return None
    vals = np.array([float(v) for v in str(cell).split()], float)
    return vals if len(vals) else None


def melt(table: pd.DataFrame, context, row, metrics: list[str], samples: list[dict | None] | None = None,
         n_seeds: int | None = None) -> list[dict]:
    """Records of ``metrics`` per table row; ``context`` and ``row`` are one value or one per table row, in the
    table's order. Evidence comes from ``samples`` (per table row: a scoring job's JSON, see ``from_scores``),
    from ``<metric>_seeds`` columns (per-seed values, space-separated), or from ``<metric>_ci95`` /
    ``<metric>_pm`` (a published ± over ``n_seeds``)."""
    n = len(table)
    ctx = [context] * n if isinstance(context, str) else list(context)
    names = [row] * n if isinstance(row, str) else list(row)
    out = []
    for i, (_, x) in enumerate(table.iterrows()):
        for m in metrics:
            if m not in table.columns:
                continue
            ci = math.nan
            for col in (f"{m}_ci95", f"{m}_pm"):
                if col in table.columns and pd.notna(x[col]):
                    ci = float(x[col])
            ev = from_scores(samples[i], m) if samples is not None and samples[i] is not None else None
            seeds = _seed_values(x[f"{m}_seeds"]) if f"{m}_seeds" in table.columns else None
            if ev is None and seeds is not None:
                ev = Evidence("seeds", seeds)
            if ev is None and not math.isnan(ci) and n_seeds:
                ev = Evidence("ci95", half=ci, n=int(n_seeds))
            out.append({"context": ctx[i], "row": names[i], "metric": m, "value": x[m], "ci95": ci, "evidence": ev})
    return out


def from_scores(scores: dict, metric: str) -> Evidence | None:
    """Evidence of ``metric`` from a reconstruction scoring job's JSON (evaluate.scoring): its per-image values
    and chance level, or its bootstrap replicates."""
    if metric in scores.get("per_image", {}):
        chance = scores.get("chance", {}).get(metric)
        return Evidence("per_image", np.asarray(scores["per_image"][metric], float),
                        None if chance is None else np.asarray(chance, float))
    b = scores.get("bootstrap", {})
    if metric in b:
        return Evidence("replicates", np.asarray(b[metric], float), key=(b["n"], b["resamples"], b["seed"]))
    return None


def uses_z_record(context: str, row: str, scores: dict | None) -> list[dict]:
    """The record saying whether ``row``'s decoder uses z, from the SSIM of its reconstructions (``scores``)
    against chance; rows that are not reconstructions (a probe, a prior's samples) take it from their model's
    stochastic reconstructions."""
    ev = from_scores(scores, "ssim") if scores else None
    if ev is None or ev.chance is None:
        return []
    return [{"context": context, "row": row, "metric": USES_Z, "value": float(ev.values.mean()), "ci95": math.nan,
             "evidence": ev}]


@dataclass(frozen=True)
class Better:
    """Row ``a`` is better than row ``b`` in ``metric`` (by a factor ``factor`` when not 1: a*factor < b for a
    lower-is-better metric, a > b*factor otherwise)."""
    claim_id: str
    table: str
    statement: str
    metric: str | tuple[str, ...]
    a: str
    b: str
    factor: float = 1.0
    estimator: str = ""
    check_z: bool = True  # False where the comparator's collapse is what the claim asserts

    def rows(self) -> list[str]:
        return [self.a, self.b]


@dataclass(frozen=True)
class Best:
    """Row ``row`` is better in ``metric`` than every other row of ``among``."""
    claim_id: str
    table: str
    statement: str
    metric: str | tuple[str, ...]
    row: str
    among: tuple[str, ...] = field(default_factory=tuple)
    estimator: str = ""
    factor: float = 1.0
    check_z: bool = True

    def rows(self) -> list[str]:
        return [self.row] + [r for r in self.among if r != self.row]


Claim = Better | Best


_INDEX: dict[int, tuple[weakref.ref, int, dict]] = {}


def _lookup(ms: pd.DataFrame, context: str, row: str, metric: str) -> pd.Series | None:
    # A claims job looks up ~1,500 (context, row, metric) triples: a dict built once per frame rather than a
    # boolean mask over the whole frame each time (seconds of a job otherwise; measurement frames are not
    # modified once built, and a frame of another length is indexed again)
    hit = _INDEX.get(id(ms))
    if hit is None or hit[0]() is not ms or hit[1] != len(ms):
        index: dict = {}
        for i, key in enumerate(zip(ms["context"], ms["row"], ms["metric"])):
            index.setdefault(key, []).append(i)
        _INDEX[id(ms)] = hit = (weakref.ref(ms), len(ms), index)
    found = hit[2].get((context, row, metric), [])
    if len(found) > 1:
        raise ValueError(f"{len(found)} measurements of {metric!r} for {row!r} in {context!r}: expected at most one")
    return ms.iloc[found[0]] if found else None


def _metrics(claim: Claim, ms: pd.DataFrame, context: str) -> list[str]:
    """The metrics a claim is judged on in one context: every real (not stand-in) candidate with values for all
    its rows -- two FID protocols must agree -- else the first stand-in that has them, else the last candidate
    (untestable)."""
    cands = (claim.metric,) if isinstance(claim.metric, str) else claim.metric
    have = [m for m in cands if all(_lookup(ms, context, r, m) is not None for r in claim.rows())]
    real = [m for m in have if m not in STAND_IN]
    return real or have[:1] or [cands[-1]]


def _settings(iv: dict | None) -> dict:
    """params.yaml ``intervals`` (level, resamples, seed) over the defaults."""
    return {"level": stats.LEVEL, "resamples": stats.RESAMPLES, "seed": stats.SEED, **(iv or {})}


def interval(a: pd.Series, b: pd.Series, metric: str, factor: float = 1.0, iv: dict | None = None) -> Interval:
    """The interval of a - b (a / b when ``factor`` is not 1) from two measurements, by the strongest test both
    rows' evidence allows."""
    iv = _settings(iv)
    ratio = factor != 1.0
    ea, eb = a["evidence"], b["evidence"]
    va, vb = float(a["value"]), float(b["value"])
    if ea is None or eb is None:
        why = "a single value per row" if ea is None and eb is None else "only one row has per-item values"
        return stats.point(va, vb, ratio=ratio, why=why)
    if ea.kind == eb.kind == "per_image":
        return stats.paired_bootstrap(ea.values, eb.values, ratio=ratio, level=iv["level"],
                                      resamples=iv["resamples"], seed=iv["seed"])
    if ea.kind == eb.kind == "replicates" and ea.key == eb.key:
        return stats.paired_replicates(va, vb, ea.values, eb.values, ratio=ratio, level=iv["level"],
                                       what=f" over {ea.key[0]} test images")
    if ratio:
        return stats.point(va, vb, ratio=True, why="no interval of a ratio over seeds")
    if ea.kind == eb.kind == "seeds":
        if metric in HEAVY_TAILED:
            return stats.median_bootstrap(ea.values, eb.values, level=iv["level"], resamples=iv["resamples"],
                                          seed=iv["seed"])
        return stats.welch_samples(ea.values, eb.values, level=iv["level"])
    if {ea.kind, eb.kind} <= {"seeds", "ci95"}:
        def se(e: Evidence, v: float) -> tuple[float, float, int]:
            if e.kind == "ci95":
                return v, stats.se_from_ci95(e.half, e.n), e.n
            return float(e.values.mean()), float(e.values.std(ddof=1) / math.sqrt(len(e.values))), len(e.values)
        return stats.welch(*se(ea, va), *se(eb, vb), level=iv["level"])
    return stats.point(va, vb, why=f"evidence of kinds {ea.kind} and {eb.kind} does not pair")


def uses_z(ms: pd.DataFrame, context: str, row: str, metric: str, iv: dict | None = None) -> bool | None:
    """Whether ``row``'s reconstructions beat chance (each test image against the reconstruction of another test
    image), paired over the test images: in the claim's metric where it has a chance level, else in SSIM (the
    ``uses_z`` record).
    None when nothing says."""
    for m in (metric, USES_Z):
        x = _lookup(ms, context, row, m)
        if x is not None and x["evidence"] is not None and x["evidence"].kind == "per_image" \
                and x["evidence"].chance is not None:
            ev = x["evidence"]
            lower = (m if m != USES_Z else "ssim") in LOWER_IS_BETTER
            return stats.verdict(stats.paired_bootstrap(ev.values, ev.chance, **_settings(iv)), lower) == "holds"
    return None


def _fmt(x: pd.Series) -> str:
    return f"{x['value']:.5g}" if math.isnan(x["ci95"]) else f"{x['value']:.5g} ± {x['ci95']:.2g}"


def _fmt_iv(i: Interval) -> str:
    what = "ratio" if i.ratio else "difference"
    if not i.has_interval:
        return f"{what} {i.estimate:.4g}"
    return f"{what} {i.estimate:.4g} [{i.lo:.4g}, {i.hi:.4g}]"


@dataclass
class Judgement:
    """One claim in one context: the verdict, and the comparison that decided it."""
    statement: str
    measured: str
    verdict: str
    interval: Interval | None = None
    stand_in: bool = False


def _judge_metric(claim: Claim, ms: pd.DataFrame, context: str, metric: str, iv: dict | None,
                  check_z: bool) -> tuple[str, str, Interval | None, bool]:
    """(verdict, measured, the deciding interval, a comparator does not use z) under one metric."""
    name = NAMES.get(metric, metric)
    values = {r: _lookup(ms, context, r, metric) for r in claim.rows()}
    missing = [r for r, v in values.items() if v is None]
    if missing:
        return "untestable", f"{name}: no value for " + "; ".join(missing), None, False
    lower = metric in LOWER_IS_BETTER
    winner, others = claim.rows()[0], claim.rows()[1:]
    pairs = []
    for o in others:
        i = interval(values[winner], values[o], metric, claim.factor, iv)
        pairs.append((o, i, stats.verdict(i, lower, claim.factor)))
    # the deciding comparison: a failing one, else an inconclusive one, else the narrowest win
    rank = {"fails": 0, "inconclusive": 1, "holds": 2}
    o, i, v = min(pairs, key=lambda p: (rank[p[2]], abs(p[1].estimate)))
    collapsed = check_z and any(uses_z(ms, context, r, metric, iv) is False for r in others)
    measured = f"{name}: " + ", ".join(f"{r} {_fmt(x)}" for r, x in values.items())
    if claim.factor != 1.0:
        measured += f" (needs a factor {claim.factor:g})"
    measured += f"; {_fmt_iv(i)}" + (f" vs {o}" if len(others) > 1 else "")
    return v, measured, i, collapsed


def evaluate_one(claim: Claim, ms: pd.DataFrame, context: str, iv: dict | None = None,
                 check_z: bool = True) -> Judgement:
    """The judgement of ``claim`` on the measurements of one context."""
    metrics = _metrics(claim, ms, context)
    label = " and ".join(f"{NAMES.get(m, m)} ({STAND_IN[m]})" if m in STAND_IN else NAMES.get(m, m) for m in metrics)
    statement = claim.statement.format(metric=label)
    judged = [_judge_metric(claim, ms, context, m, iv, check_z and claim.check_z) for m in metrics]
    verdicts = [j[0] for j in judged]
    verdict = next((v for v in ("untestable", "fails", "inconclusive") if v in verdicts), "holds")
    deciding = next(j for j in judged if j[0] == verdict)
    collapsed = any(j[3] for j in judged)
    measured = " | ".join(j[1] for j in judged)
    if collapsed and verdict in ("holds", "inconclusive"):
        measured += f" (without the collapsed comparator: {verdict})"
        verdict = "vs-collapsed"
    return Judgement(statement, measured, verdict, deciding[2], any(m in STAND_IN for m in metrics))


def claim_values(claim: Claim, ms: pd.DataFrame, context: str) -> tuple[str, list[dict]]:
    """(the metric used, [{row, value, ci95}] of every row the claim compares) in one context."""
    metric = _metrics(claim, ms, context)[0]
    out = []
    for r in claim.rows():
        v = _lookup(ms, context, r, metric)
        out.append({"row": r, "value": math.nan if v is None else v["value"],
                    "ci95": math.nan if v is None else v["ci95"]})
    return metric, out


def paper_support(claims: list[Claim], paper: pd.DataFrame, iv: dict | None = None
                  ) -> dict[str, tuple[str, object, str]]:
    """claim_id -> (the paper's datasets on which it holds, robust, the paper verdict): robust when it holds on
    every one of the paper's datasets that has the numbers, under the same interval rule as ours (NA when none
    has); paper-inconclusive when the paper's own ± leave one of them undecided."""
    out = {}
    contexts = list(dict.fromkeys(paper["context"]))
    for claim in claims:
        verdicts = {c: evaluate_one(claim, paper, c, iv, check_z=False).verdict for c in contexts}
        known = {c: v for c, v in verdicts.items() if v != "untestable"}
        if not known:
            out[claim.claim_id] = ("not in the paper's tables", pd.NA, PAPER_VERDICTS[3])
            continue
        held = [c for c, v in known.items() if v == "holds"]
        undecided = [c for c, v in known.items() if v == "inconclusive"]
        text = ", ".join(held) if held else "none"
        not_held = [c for c in known if c not in held and c not in undecided]
        if undecided:
            text += f" (the paper's ± do not separate: {', '.join(undecided)})"
        if not_held:
            text += f" (not {', '.join(not_held)})"
        robust = len(held) == len(known)
        pv = PAPER_VERDICTS[0] if robust else PAPER_VERDICTS[1] if undecided and not not_held else PAPER_VERDICTS[2]
        out[claim.claim_id] = (text, robust, pv)
    return out


def contexts_of(claim: Claim, ms: pd.DataFrame) -> list[str]:
    """The contexts (datasets) in which any row the claim compares was measured -- a study's tables may cover
    several datasets (DDVI: images and genotypes), and a claim belongs to those its rows come from. A claim
    with no row anywhere is reported once, untestable, in the first context (none if there is none)."""
    contexts = list(dict.fromkeys(ms["context"]))
    have = [c for c in contexts if ms[(ms["context"] == c) & ms["row"].isin(claim.rows())].shape[0]]
    return have or contexts[:1]


def evaluate(study: str, paper_name: str, claims: list[Claim], ours: pd.DataFrame, paper: pd.DataFrame,
             iv: dict | None = None) -> pd.DataFrame:
    """One row per (claim, dataset it applies to), in ``COLUMNS``; ``iv``: the intervals' {level, resamples,
    seed} (params.yaml ``intervals``)."""
    support = paper_support(claims, paper, iv)
    rows = []
    for claim in claims:
        for context in contexts_of(claim, ours):
            j = evaluate_one(claim, ours, context, iv)
            paper_ds, robust, paper_verdict = support[claim.claim_id]
            i = j.interval
            rows.append({"study": study, "paper": paper_name, "table": claim.table, "dataset": context,
                         "claim_id": claim.claim_id, "statement": j.statement, "estimator": claim.estimator,
                         "paper_datasets": paper_ds, "robust": robust, "paper_verdict": paper_verdict,
                         "measured": j.measured, "difference": i.estimate if i else math.nan,
                         "ci_low": i.lo if i else math.nan, "ci_high": i.hi if i else math.nan,
                         "test": i.test if i else "", "stand_in": j.stand_in, "verdict": j.verdict,
                         "holds": {"holds": True, "fails": False}.get(j.verdict, pd.NA)})
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["holds"] = df["holds"].astype("boolean")
    df["robust"] = df["robust"].astype("boolean")
    df["stand_in"] = df["stand_in"].astype(bool)
    return df
