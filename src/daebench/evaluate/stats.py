"""Intervals behind the claims' verdicts (issue 27): one function per kind of evidence, each returning an
``Interval`` of the difference of two rows (or of their ratio, for claims with a factor).

- Per-image metrics (PSNR, SSIM, MSE, L2, featdist): a *paired* bootstrap over the test images. Both rows
  were scored on the same images in the same order, so every resample draws the same image indices for
  both; the image-to-image spread, which both rows share, cancels in the difference (Efron & Tibshirani,
  *An Introduction to the Bootstrap*, 1993, ch. 13, percentile interval).
- Distribution metrics (fd_domain): the metrics job evaluates the metric on each of the same resamples
  (``bootstrap_indices`` with the same seed, resample count and image count), so the claim pairs the
  replicates one by one.
- Several seeds (DDVI): Welch's interval of the difference of means (unpaired: a seed sets each method's
  initialisation and data order through its own network, so seed s of two methods shares no data draw);
  heavy-tailed metrics by the difference of medians with a bootstrap interval over seeds.
- A paper's "mean ± h" (h the half-width of a 95 % Student-t interval over n seeds, DDVI §5): the
  standard error is h / t(0.975, n-1), and Welch's interval follows as for our seeds.

All resampling is seeded, so a rerun gives the same verdicts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEVEL, RESAMPLES, SEED = 0.95, 1000, 0  # the schema's defaults (intervals: in params.yaml)


@dataclass(frozen=True)
class Interval:
    """``estimate`` of a - b (or a / b when ``ratio``) and its interval [lo, hi] at ``level``; ``test`` names
    how it was computed. lo = hi = NaN when no interval could be computed (``test`` says why)."""
    estimate: float
    lo: float
    hi: float
    test: str
    ratio: bool = False

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.lo) or math.isnan(self.hi))


def bootstrap_indices(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """[resamples, n] image indices drawn with replacement; the same (n, resamples, seed) gives the same
    indices in every job, which is what pairs a distribution metric's replicates across rows."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _percentile(reps: np.ndarray, level: float) -> tuple[float, float]:
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(reps[np.isfinite(reps)], [a, 1.0 - a])
    return float(lo), float(hi)


def _combine(ra: np.ndarray, rb: np.ndarray, ratio: bool) -> np.ndarray:
    return ra / rb if ratio else ra - rb


def paired_bootstrap(a, b, *, ratio: bool = False, level: float = LEVEL, resamples: int = RESAMPLES,
                     seed: int = SEED) -> Interval:
    """Per-image values of two rows on the same images (same order) -> the interval of mean(a) - mean(b)
    (or mean(a) / mean(b)), one set of resampled indices for both rows."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1:
        return Interval(math.nan, math.nan, math.nan, f"no interval: per-image values of {a.shape} and {b.shape} "
                        "images are not paired", ratio)
    idx = bootstrap_indices(len(a), resamples, seed)
    reps = _combine(a[idx].mean(axis=1), b[idx].mean(axis=1), ratio)
    lo, hi = _percentile(reps, level)
    return Interval(float(_combine(a.mean(), b.mean(), ratio)), lo, hi,
                    f"paired bootstrap over {len(a)} test images ({resamples} resamples, {level:.0%})", ratio)


def paired_replicates(est_a: float, est_b: float, reps_a, reps_b, *, ratio: bool = False, level: float = LEVEL,
                      what: str = "") -> Interval:
    """A distribution metric evaluated on the same bootstrap resamples for both rows -> the percentile
    interval of the replicate-wise difference (or ratio); the estimate is that of the full sets."""
    ra, rb = np.asarray(reps_a, float), np.asarray(reps_b, float)
    est = float(_combine(np.float64(est_a), np.float64(est_b), ratio))
    if ra.shape != rb.shape or ra.size < 2:
        return Interval(est, math.nan, math.nan, "no interval: the rows' bootstrap replicates do not pair", ratio)
    lo, hi = _percentile(_combine(ra, rb, ratio), level)
    return Interval(est, lo, hi, f"paired bootstrap{what} ({ra.size} shared resamples, {level:.0%})", ratio)


def welch(mean_a: float, se_a: float, n_a: int, mean_b: float, se_b: float, n_b: int, *, level: float = LEVEL,
          what: str = "seeds") -> Interval:
    """Welch's interval of mean_a - mean_b from two means and their standard errors (Welch-Satterthwaite
    degrees of freedom)."""
    from scipy.special import stdtrit  # Student-t quantile = scipy.stats.t.ppf, without scipy.stats' import

    d = mean_a - mean_b
    if min(n_a, n_b) < 2 or not (math.isfinite(se_a) and math.isfinite(se_b)):
        return Interval(d, math.nan, math.nan, f"no interval: fewer than 2 {what} on a side")
    va, vb = se_a ** 2, se_b ** 2
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Interval(d, d, d, f"Welch t over {n_a} and {n_b} {what} (no spread), {level:.0%}")
    df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    h = float(stdtrit(df, 0.5 + level / 2)) * se
    return Interval(d, d - h, d + h, f"Welch t over {n_a} and {n_b} {what} (df {df:.1f}), {level:.0%}")


def welch_samples(a, b, *, level: float = LEVEL) -> Interval:
    """Welch's interval of the difference of the means of two samples (one value per seed)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    se = lambda x: float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan
    return welch(float(a.mean()), se(a), len(a), float(b.mean()), se(b), len(b), level=level)


def se_from_ci95(half_width: float, n: int) -> float:
    """The standard error behind a printed '± h' that is the half-width of a 95 % Student-t interval over n
    runs (the DDVI paper's convention, §5)."""
    from scipy.special import stdtrit  # Student-t quantile = scipy.stats.t.ppf, without scipy.stats' import

    return half_width / float(stdtrit(n - 1, 0.975))


def median_bootstrap(a, b, *, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED) -> Interval:
    """Difference of medians of two samples (one value per seed), with a percentile interval from resampling
    each row's seeds independently: for heavy-tailed metrics, where one run can dominate a mean."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    est = float(np.median(a) - np.median(b))
    if min(len(a), len(b)) < 2:
        return Interval(est, math.nan, math.nan, "no interval: fewer than 2 seeds on a side")
    rng = np.random.default_rng(seed)
    ra = np.median(a[rng.integers(0, len(a), (resamples, len(a)))], axis=1)
    rb = np.median(b[rng.integers(0, len(b), (resamples, len(b)))], axis=1)
    lo, hi = _percentile(ra - rb, level)
    return Interval(est, lo, hi, f"difference of medians over {len(a)} and {len(b)} seeds, bootstrap "
                    f"({resamples} resamples, {level:.0%})")


def point(a: float, b: float, *, ratio: bool = False, why: str = "a single value per row") -> Interval:
    """No interval: the bare difference (or ratio), with the reason."""
    return Interval(float(_combine(np.float64(a), np.float64(b), ratio)), math.nan, math.nan,
                    f"no interval: {why}", ratio)


def verdict(iv: Interval, lower_is_better: bool, factor: float = 1.0) -> str:
    """holds / fails / inconclusive for "a is better than b (by ``factor``)": the interval of a - b (against 0)
    or of a / b (against ``factor``, or 1 / ``factor`` for a lower-is-better metric) lies wholly on the claimed
    side, wholly on the other, or straddles it. Without an interval the point estimate decides strictly (a
    tie fails), as a single run always did."""
    t = (1.0 / factor if lower_is_better else factor) if iv.ratio else 0.0
    sign = -1.0 if lower_is_better else 1.0
    if not iv.has_interval:
        return "holds" if sign * (iv.estimate - t) > 0 else "fails"
    lo, hi = sorted((sign * (iv.lo - t), sign * (iv.hi - t)))
    return "holds" if lo > 0 else "fails" if hi < 0 else "inconclusive"
