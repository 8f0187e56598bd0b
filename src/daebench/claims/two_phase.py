"""The two-phase DAE paper's Table 4 claims (§5.1), on our results/table4.csv and on the published table.

Rows are "<label> · <mode>" of the methods labelled "Preechakul et al.", "1-phase SC-4" and "2-phase SC-4".
FID statements use FID (tf) or FID (cf) where the table has them and otherwise ``fd_domain`` as a
stand-in; LPIPS claims are untestable without LPIPS weights."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .core import Best, Better, Claim, measurements, melt

STUDY, PAPER, TABLE = "two_phase", "Two-phase DAE training", "Table 4"
BASELINE, ONE_PHASE, TWO_PHASE = "Preechakul et al.", "1-phase SC-4", "2-phase SC-4"
LABELS = (BASELINE, ONE_PHASE, TWO_PHASE)
METRICS = ["psnr", "ssim", "mse", "lpips", "fid_tf", "fid_cf", "fd_domain", "featdist_domain"]
FID = ("fid_tf", "fid_cf", "fd_domain")
S, I = "stochastic", "inversion"
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
    _best("2phase_best_stoch_lpips", "2-phase SC-4 has the lowest stochastic LPIPS of the three methods "
          "(§5.1: best image similarity metrics; untestable without LPIPS weights)", "lpips", TWO_PHASE, S),
    _best("2phase_best_inv_lpips", "2-phase SC-4 has the lowest inversion LPIPS of the three methods "
          "(§5.1: best image similarity metrics; untestable without LPIPS weights)", "lpips", TWO_PHASE, I),
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
]

# The tables a run of this study writes (the claims job's inputs), by name.
TABLES = {"table4": "results/table4.csv"}


def _measure(table4: pd.DataFrame) -> pd.DataFrame:
    for col in ("dataset", "label", "mode"):
        if col not in table4.columns:
            raise ValueError(f"table4 has no {col!r} column (columns: {', '.join(map(str, table4.columns))})")
    rows = table4["label"].astype(str) + " · " + table4["mode"].astype(str)
    return measurements(melt(table4, table4["dataset"], rows, METRICS))


def ours(tables: dict[str, pd.DataFrame], cfg: dict) -> pd.DataFrame:
    return _measure(tables["table4"])


def paper(ref_dir: Path) -> pd.DataFrame:
    return _measure(pd.read_csv(ref_dir / REFERENCE).rename(columns={"method": "label"}))
