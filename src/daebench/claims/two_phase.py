"""The two-phase DAE paper's Table 4 claims (§5.1), on our results/table4.csv and on the published table.

Rows are "<label> · <mode>" of the methods labelled "Preechakul et al.", "1-phase SC-4" and "2-phase SC-4".
FID statements use FID (tf) and FID (cf) where the table has them and otherwise ``fd_domain`` as a
stand-in; LPIPS statements use LPIPS, otherwise ``featdist_domain``. The per-image metrics of each row come
from its scoring job (``results/metrics/<dataset>/<method>/<mode>.json``), so every verdict has a paired
interval, and a row whose stochastic reconstructions do not beat chance is a collapsed comparator."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .core import Best, Better, Claim, measurements, melt, uses_z_record

STUDY, PAPER, TABLE = "two_phase", "Two-phase DAE training", "Table 4"
BASELINE, ONE_PHASE, TWO_PHASE = "Preechakul et al.", "1-phase SC-4", "2-phase SC-4"
LABELS = (BASELINE, ONE_PHASE, TWO_PHASE)
METRICS = ["psnr", "ssim", "mse", "lpips", "fid_tf", "fid_cf", "fd_domain", "featdist_domain"]
FID = ("fid_tf", "fid_cf", "fd_domain")
LPIPS = ("lpips", "featdist_domain")
S, I = "stochastic", "inversion"
_MODE_SLUG = {S: "stoch", I: "inv"}
_SLUG = {BASELINE: "base", ONE_PHASE: "1phase", TWO_PHASE: "2phase"}
REFERENCE = "dae_two_phase_table4.csv"


def row(label: str, mode: str) -> str:
    return f"{label} · {mode}"


def _among(mode: str) -> tuple[str, ...]:
    return tuple(row(lab, mode) for lab in LABELS)


def _best(claim_id, statement, metric, label, mode):
    return Best(claim_id, TABLE, statement, metric, row(label, mode), _among(mode))


def _better(claim_id, statement, metric, a, b):
    return Better(claim_id, TABLE, statement, metric, row(*a), row(*b))


CLAIMS: list[Claim] = [
    *[_better(f"inv_gt_stoch_psnr_{_SLUG[m]}", f"{m}: inversion PSNR is higher than stochastic PSNR "
              "(every method, every dataset in Table 4)", "psnr", (m, I), (m, S)) for m in LABELS],
    _better("2phase_gt_1phase_stoch_psnr", "2-phase SC-4 has higher stochastic PSNR than 1-phase SC-4",
            "psnr", (TWO_PHASE, S), (ONE_PHASE, S)),
    _better("2phase_gt_1phase_stoch_ssim", "2-phase SC-4 has higher stochastic SSIM than 1-phase SC-4",
            "ssim", (TWO_PHASE, S), (ONE_PHASE, S)),
    _better("2phase_gt_base_stoch_psnr", "2-phase SC-4 has higher stochastic PSNR than Preechakul et al.",
            "psnr", (TWO_PHASE, S), (BASELINE, S)),
    _better("2phase_gt_base_stoch_ssim", "2-phase SC-4 has higher stochastic SSIM than Preechakul et al.",
            "ssim", (TWO_PHASE, S), (BASELINE, S)),
    _best("2phase_best_inv_psnr", "2-phase SC-4 has the best inversion PSNR of the three methods",
          "psnr", TWO_PHASE, I),
    _best("2phase_best_inv_ssim", "2-phase SC-4 has the best inversion SSIM of the three methods "
          "(§5.1: 'our method always yield the best image similarity metrics')", "ssim", TWO_PHASE, I),
    _best("2phase_best_stoch_lpips", "2-phase SC-4 has the lowest stochastic {metric} of the three methods "
          "(§5.1: best image similarity metrics)", LPIPS, TWO_PHASE, S),
    _best("2phase_best_inv_lpips", "2-phase SC-4 has the lowest inversion {metric} of the three methods "
          "(§5.1: best image similarity metrics)", LPIPS, TWO_PHASE, I),
    _better("1phase_lt_base_stoch_psnr", "1-phase SC-4 has lower stochastic PSNR than Preechakul et al. "
            "(§5.1: 1-phase's image similarity metrics are worse than the baseline's)",
            "psnr", (BASELINE, S), (ONE_PHASE, S)),
    _better("1phase_lt_base_stoch_ssim", "1-phase SC-4 has lower stochastic SSIM than Preechakul et al. "
            "(§5.1: 1-phase's image similarity metrics are worse than the baseline's)",
            "ssim", (BASELINE, S), (ONE_PHASE, S)),
    _better("2phase_lt_base_stoch_fid", "2-phase SC-4 has lower stochastic {metric} than Preechakul et al. "
            "(§5.1: 'all of our metrics are better than those of Preechakul et al.')", FID, (TWO_PHASE, S),
            (BASELINE, S)),
    _better("2phase_lt_base_inv_fid", "2-phase SC-4 has lower inversion {metric} than Preechakul et al. "
            "(§5.1: all metrics better than the baseline)", FID, (TWO_PHASE, I), (BASELINE, I)),
    _best("1phase_best_stoch_fid", "1-phase SC-4 has the lowest stochastic {metric} of the three methods "
          "(§5.1: 'the 1-phase training algorithm yielded the best FID scores most of the time')", FID, ONE_PHASE, S),
    _best("1phase_best_inv_fid", "1-phase SC-4 has the lowest inversion {metric} of the three methods "
          "(§5.1: best FID 'most of the time')", FID, ONE_PHASE, I),
    # §5.1: "Even when its FID scores are lower [worse] than those of the 1-phase training algorithm, the
    # differences are minimal" -- the paper's argument for 2-phase. Our reading of "minimal": under twice
    # 1-phase's (the paper's largest ratio is 1.86, CIFAR-10 stochastic FID (cf)).
    *[Better(f"2phase_fid_near_1phase_{_MODE_SLUG[m]}", TABLE, f"{m}: 2-phase SC-4's {{metric}} is less than twice 1-phase "
             "SC-4's (§5.1: 'even when its FID scores are [worse] than those of the 1-phase training algorithm, the "
             "differences are minimal')", FID, row(TWO_PHASE, m), row(ONE_PHASE, m), factor=0.5) for m in (S, I)],
]

# The tables a run of this study writes (the claims job's inputs), by name.
TABLES = {"table4": "results/table4.csv"}


def _measure(table4: pd.DataFrame, samples: dict[str, dict] | None = None) -> pd.DataFrame:
    for col in ("dataset", "label", "mode"):
        if col not in table4.columns:
            raise ValueError(f"table4 has no {col!r} column (columns: {', '.join(map(str, table4.columns))})")
    rows = table4["label"].astype(str) + " · " + table4["mode"].astype(str)
    scores = None
    if samples:  # a row's scoring job: results/metrics/<dataset>/<method>/<mode>.json
        scores = [samples.get(f"{d}/{m}/{mode}") for d, m, mode in
                  zip(table4["dataset"], table4["method"], table4["mode"])]
    recs = melt(table4, table4["dataset"], rows, METRICS, scores)
    for i, (d, r) in enumerate(zip(table4["dataset"], rows)):
        recs += uses_z_record(d, r, scores[i] if scores else None)
    return measurements(recs)


def ours(tables: dict[str, pd.DataFrame], cfg: dict, samples: dict[str, dict] | None = None) -> pd.DataFrame:
    return _measure(tables["table4"], samples)


def paper(ref_dir: Path) -> pd.DataFrame:
    return _measure(pd.read_csv(ref_dir / REFERENCE).rename(columns={"method": "label"}))
