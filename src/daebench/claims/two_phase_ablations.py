"""The two-phase DAE paper's ablation claims (§4.2-4.4, §5.2, supp. §11) on results/two_phase/ and on the
published Tables 1-3, 5, 10 and 11.

Rows are named by what a table varies: ``T1 <prediction>``, ``T2 <prediction> <schedule>``,
``T3 <phase 1> > <phase 2>`` (``t1`` for t = 1, ``none`` for no phase 2), ``T5 <method>`` and
``T10 <kind> <method>`` (the macro-average AUROC over classes or attributes). Tables 1-3 are CIFAR-10 in the
paper; Table 5 has four datasets; Table 10 is CelebA's attributes and Table 11 CIFAR-10's classes.
FID statements fall back to ``fd_domain``, PPL to the domain-feature distance (named as such)."""
from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd

from .core import Best, Better, Claim, measurements, melt, uses_z_record
from .two_phase import BASELINE, LABELS, ONE_PHASE, TWO_PHASE

STUDY, PAPER = "two_phase_ablations", "Two-phase DAE training (ablations)"
SIMILARITY = ("psnr", "ssim")
FID = ("fid_tf", "fid_cf", "fd_domain")
PPL = ("ppl_lpips_vgg", "ppl_featdist_domain")
SCHEDULES = ("linear_beta", "sc1", "sc2", "sc4", "sc8")
PLURAL = {"class": "classes", "attribute": "attributes"}  # Table 10's row kinds, in claim statements
PHASE2 = ("sc2", "sc4", "sc8", "sc16")
METRICS = ["psnr", "ssim", "mse", "lpips", "fid_tf", "fid_cf", "fd_domain", "featdist_domain"]

TABLES = {t: f"results/two_phase/{t}.csv" for t in ("table1", "table2", "table3", "table5", "table10")}


def t2(pred: str, sched: str) -> str:
    return f"T2 {pred} {sched}"


def t3(p1: str, p2: str = "none") -> str:
    return f"T3 {p1} > {p2}"


def _table1() -> list[Claim]:
    out = [Better(f"t1_{p}_gt_eps_{m}", "Table 1", f"{p}-prediction has higher {m.upper()} than ε-prediction on SC-4 "
                  "(§4.2: the ε-prediction model performs poorly on the image similarity metrics)", m, f"T1 {p}", "T1 eps")
           for p in ("x", "v") for m in SIMILARITY]
    out.append(Better("t1_x_gt_v_psnr", "Table 1", "x-prediction has higher PSNR than v-prediction on SC-4", "psnr",
                      "T1 x", "T1 v"))
    return out


def _table2() -> list[Claim]:
    out = []
    for pred in ("x", "v"):
        for a, b in itertools.pairwise(SCHEDULES):
            out.append(Better(f"t2_{pred}_{a}_gt_{b}_psnr", "Table 2",
                              f"{pred}-prediction: {a} has higher PSNR than {b} (§4.3, first trend: less time in "
                              "the high-noise region, worse image similarity)", "psnr", t2(pred, a), t2(pred, b)))
        out.append(Better(f"t2_{pred}_linear_gt_sc8_ssim", "Table 2", f"{pred}-prediction: linear-β has higher SSIM "
                          "than SC-8 (§4.3, first trend)", "ssim", t2(pred, "linear_beta"), t2(pred, "sc8")))
        out.append(Best(f"t2_{pred}_sc4_best_fid", "Table 2", f"{pred}-prediction: SC-4 has the lowest {{metric}} of "
                        "the five schedules (§4.3, second trend: FID improves until SC-4, then worsens at SC-8)", FID,
                        t2(pred, "sc4"), tuple(t2(pred, s) for s in SCHEDULES)))
    for s in SCHEDULES:
        out.append(Better(f"t2_{s}_x_gt_v_psnr", "Table 2", f"{s}: x-prediction has higher PSNR than v-prediction "
                          "(§4.3, third trend)", "psnr", t2("x", s), t2("v", s)))
    for s in SCHEDULES[1:]:
        out.append(Better(f"t2_{s}_v_lt_x_fid", "Table 2", f"{s}: v-prediction has lower {{metric}} than x-prediction "
                          "(§4.3, third trend: x-prediction generally has worse FID)", FID, t2("v", s), t2("x", s)))
    return out


def _table3() -> list[Claim]:
    two = tuple(t3("t1", s) for s in PHASE2)
    out = [Better(f"t3_2phase_gt_1phase_{m}", "Table 3", f"2-phase SC-4 has higher {m.upper()} than 1-phase SC-4 "
                  "(§4.4)", m, t3("t1", "sc4"), t3("sc4")) for m in SIMILARITY]
    out += [Better(f"t3_{s}_lt_t1only_fid", "Table 3", f"2-phase {s} has lower {{metric}} than t = 1 only (phase 2 "
                   "restores the detail that phase 1 alone lacks)", FID, t3("t1", s), t3("t1")) for s in PHASE2]
    out.append(Best("t3_sc2_best_psnr", "Table 3", "of the 2-phase runs, phase 2 on SC-2 has the highest PSNR",
                    "psnr", t3("t1", "sc2"), two))
    out.append(Better("t3_sc8_gt_sc16_psnr", "Table 3", "2-phase SC-8 has higher PSNR than SC-16 (too little time "
                      "in the high-noise region)", "psnr", t3("t1", "sc8"), t3("t1", "sc16")))
    out.append(Best("t3_sc4_best_fid", "Table 3", "of the 2-phase runs, SC-4 has the lowest {metric} (§4.4: SC-4 "
                    "yields the best balance)", FID, t3("t1", "sc4"), two))
    return out


CLAIMS: list[Claim] = [
    *_table1(), *_table2(), *_table3(),
    Best("t5_2phase_lowest_ppl", "Table 5", "2-phase SC-4 has the lowest {metric} of the three methods (§5.2: "
         "'our method achieves the lowest PPLs')", PPL, f"T5 {TWO_PHASE}", tuple(f"T5 {m}" for m in LABELS)),
    *[Better(f"t10_2phase_near_base_{k}", "Table 10", f"2-phase SC-4's macro AUROC over {PLURAL[k]} is at least 99 % of "
             "Preechakul et al.'s (supp. §11: 'only 0.0068 or 0.73% below the best baseline')", "auroc",
             f"T10 {k} {TWO_PHASE}", f"T10 {k} {BASELINE}", factor=0.99) for k in ("class", "attribute")],
    # Not encoded: "Preechakul et al. has the highest macro AUROC" -- supp. §11 reports that ordering only to say
    # the proposed method came last by 0.73 %, which t10_2phase_near_base_* encodes; the ordering is incidental.
]


def _recon_rows(name: str, t: pd.DataFrame) -> pd.Series:
    if name == "table1":
        return "T1 " + t["prediction"].astype(str)
    if name == "table2":
        return "T2 " + t["prediction"].astype(str) + " " + t["schedule"].astype(str)
    p1 = t["phase1"].astype(str).str.replace("t = 1", "t1", regex=False).str.replace("t=1", "t1", regex=False)
    p2 = t["phase2"].fillna("none").astype(str).replace({"N/A": "none", "": "none"})
    return "T3 " + p1 + " > " + p2


def _probe_rows(t: pd.DataFrame, labels: dict[str, str], context) -> list[dict]:
    avg = t[t["name"] == "Average"]
    return [{"context": context if isinstance(context, str) else x["dataset"], "row": f"T10 {x['kind']} {lab}",
             "metric": "auroc", "value": x[col], "ci95": float("nan")}
            for _, x in avg.iterrows() for col, lab in labels.items() if col in t.columns]


def ours(tables: dict[str, pd.DataFrame], cfg: dict, samples: dict[str, dict] | None = None) -> pd.DataFrame:
    recs = []
    for name in ("table1", "table2", "table3"):
        if name in tables:
            t = tables[name]
            rows = _recon_rows(name, t)
            # each row's scoring job: results/metrics/<dataset>/<method>/stochastic.json
            scores = [samples.get(f"{d}/{m}/stochastic") for d, m in zip(t["dataset"], t["method"])] if samples \
                else [None] * len(t)
            recs += melt(t, t["dataset"], rows, METRICS, scores)
            for d, r, sc in zip(t["dataset"], rows, scores):
                recs += uses_z_record(d, r, sc)
    if "table5" in tables:
        t = tables["table5"]
        recs += melt(t, t["dataset"], "T5 " + t["label"].astype(str), list(PPL))
    if "table10" in tables:
        t = tables["table10"]
        labels = {m: lab for m, lab in cfg.get("labels", {}).items()}
        recs += _probe_rows(t, labels, None)
    return measurements(recs)


def paper(ref_dir: Path) -> pd.DataFrame:
    ref = pd.read_csv(ref_dir / "dae_two_phase_tables_1_2_3.csv", dtype={"phase1": str, "phase2": str})
    recs = []
    for n in (1, 2, 3):
        t = ref[ref["table"] == n].copy()
        if n == 3:
            t["phase1"] = t["phase1"].fillna("")
            t["phase2"] = t["phase2"].fillna("none")
        recs += melt(t, "cifar10", _recon_rows(f"table{n}", t), METRICS)
    ppl = pd.read_csv(ref_dir / "dae_two_phase_table5_ppl.csv")
    for ds in ppl.columns[1:]:
        recs += [{"context": ds, "row": f"T5 {m}", "metric": "ppl_lpips_vgg", "value": v, "ci95": float("nan")}
                 for m, v in zip(ppl["method"], ppl[ds])]
    auroc = pd.read_csv(ref_dir / "dae_two_phase_tables_10_11_auroc.csv")
    recs += _probe_rows(auroc, {"preechakul": BASELINE, "one_phase": ONE_PHASE, "two_phase": TWO_PHASE}, None)
    return measurements(recs)
