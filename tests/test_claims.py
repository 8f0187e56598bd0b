"""The claims of the four studies: verdicts with and without 95 % intervals, robustness from the papers'
own tables, each study's claims on hand-made tables, and the combined file."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from daebench.claims import (
    combine,
    counts,
    read_claims,
    reference_dir,
    study_claims,
    summary,
    write_study_claims,
)
from daebench.claims.core import Best, Better, Evidence, evaluate, evaluate_one, measurements, paper_support, uses_z
from daebench.evaluate import stats
from daebench.studies import REGISTRY, get

STUDIES = {name: study.claims for name, study in REGISTRY.items()}  # each study's claims module

NAN = math.nan


# --- verdicts ---------------------------------------------------------------------------------------------

def _ms(rows):
    return measurements([{"context": c, "row": r, "metric": m, "value": v, "ci95": ci} for c, r, m, v, ci in rows])


def _images(rows, metric="psnr", context="d", chance=None):
    """A measurement frame of per-image values: {row: values}; ``chance``: {row: chance-level values}."""
    chance = chance or {}
    return measurements([{"context": context, "row": r, "metric": metric, "value": float(np.mean(v)), "ci95": NAN,
                          "evidence": Evidence("per_image", np.asarray(v, float),
                                               None if r not in chance else np.asarray(chance[r], float))}
                         for r, v in rows.items()])


@pytest.mark.parametrize("a, b, lower, factor, want", [
    (1.0, 2.0, True, 1.0, "holds"),
    (2.0, 2.0, True, 1.0, "fails"),          # without an interval a tie fails
    (3.0, 2.0, False, 1.0, "holds"),
    (1.0, 2.5, True, 2.0, "holds"),          # 2 * 1 < 2.5
    (1.5, 2.5, True, 2.0, "fails"),          # 2 * 1.5 >= 2.5
])
def test_point_verdicts_without_an_interval(a, b, lower, factor, want):
    metric = "mse" if lower else "psnr"
    ms = _ms([("d", "a", metric, a, NAN), ("d", "b", metric, b, NAN)])
    j = evaluate_one(Better("c", "T", "a beats b", metric, "a", "b", factor), ms, "d")
    assert j.verdict == want and j.interval.test.startswith("no interval")


def test_paired_bootstrap_holds_fails_and_is_inconclusive_by_the_size_of_the_difference():
    rng = np.random.default_rng(0)
    base = rng.normal(20.0, 3.0, 300)   # the images' own difficulty, shared by both rows
    noise = lambda: rng.normal(0.0, 1.0, 300)
    claim = Better("c", "T", "a has the higher {metric}", "psnr", "a", "b")
    far = evaluate_one(claim, _images({"a": base + 1.0 + noise(), "b": base + noise()}), "d")
    assert far.verdict == "holds" and far.interval.lo > 0 and "paired bootstrap over 300" in far.interval.test
    reverse = evaluate_one(claim, _images({"a": base + noise(), "b": base + 1.0 + noise()}), "d")
    assert reverse.verdict == "fails" and reverse.interval.hi < 0
    # a mean difference of 0.01 dB against a per-image spread of 1.4 dB: inside the noise
    near = evaluate_one(claim, _images({"a": base + 0.01 + noise(), "b": base + noise()}), "d")
    assert near.verdict == "inconclusive" and near.interval.lo < 0 < near.interval.hi


def test_the_bootstrap_is_paired():
    # Two rows that differ by 0.2 dB on every image, on images whose own PSNR spreads over 10 dB: resampled
    # separately their intervals overlap widely, paired (the same images in every resample) the difference
    # is 0.2 with no spread at all.
    base = np.linspace(10.0, 40.0, 200)
    a, b = base + 0.2, base
    idx = stats.bootstrap_indices(200, 2000, 0)
    ra, rb = a[idx].mean(axis=1), b[np.random.default_rng(1).integers(0, 200, (2000, 200))].mean(axis=1)
    assert np.quantile(ra, 0.025) < np.quantile(rb, 0.975)  # unpaired intervals overlap
    iv = stats.paired_bootstrap(a, b)
    assert iv.lo == pytest.approx(0.2) and iv.hi == pytest.approx(0.2)
    assert stats.verdict(iv, lower_is_better=False) == "holds"


def test_a_collapsed_comparator_gives_vs_collapsed():
    rng = np.random.default_rng(0)
    chance = rng.normal(10.0, 1.0, 200)      # PSNR of each test image against another test image
    good = chance + 8.0 + rng.normal(0, 1, 200)
    collapsed = chance + rng.normal(0, 1, 200)  # a decoder that ignores z: no closer than another image
    ms = _images({"a": good, "b": collapsed}, chance={"a": chance, "b": chance})
    j = evaluate_one(Better("c", "T", "a beats b", "psnr", "a", "b"), ms, "d")
    assert j.verdict == "vs-collapsed" and "without the collapsed comparator: holds" in j.measured
    assert uses_z(ms, "d", "a", "psnr") is True and uses_z(ms, "d", "b", "psnr") is False
    # losing to a collapsed comparator is still a failure
    assert evaluate_one(Better("c", "T", "b beats a", "psnr", "b", "a"), ms, "d").verdict == "fails"
    # a claim that the comparator collapses (ScoreVAE's "DiffDecoder collapses at β 0.01") does not check it
    assert evaluate_one(Better("c", "T", "a beats b", "psnr", "a", "b", check_z=False), ms, "d").verdict == "holds"
    # a comparator that uses z: the plain verdict
    ms = _images({"a": good, "b": chance + 4.0 + rng.normal(0, 1, 200)}, chance={"a": chance, "b": chance})
    assert evaluate_one(Better("c", "T", "a beats b", "psnr", "a", "b"), ms, "d").verdict == "holds"


def test_welch_over_seeds_and_medians_for_heavy_tails():
    # Welch's interval on a hand-computed case: means 2 and 1, sample variances 1 and 1 over 4 seeds each:
    # se = sqrt(1/4 + 1/4), df = 6, t(0.975, 6) = 2.4469
    a, b = np.array([1.0, 2.0, 2.0, 3.0]) * 1.0, np.array([0.0, 1.0, 1.0, 2.0])
    a = 2.0 + (a - a.mean()) * math.sqrt(1.0 / a.var(ddof=1))
    b = 1.0 + (b - b.mean()) * math.sqrt(1.0 / b.var(ddof=1))
    iv = stats.welch_samples(a, b)
    assert iv.estimate == pytest.approx(1.0)
    assert iv.hi - 1.0 == pytest.approx(2.4469 * math.sqrt(0.5), abs=1e-4)
    ms = measurements([{"context": "d", "row": r, "metric": m, "value": float(np.mean(v)), "ci95": NAN,
                        "evidence": Evidence("seeds", np.asarray(v, float))}
                       for m in ("elbo", "latent_nll") for r, v in (("a", [1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.02, 50.0]),
                                                                    ("b", [3.0, 3.1, 2.9, 3.0, 3.05, 2.95, 3.02, 3.0]))])
    nll = evaluate_one(Better("c", "T", "a lower", "latent_nll", "a", "b"), ms, "d")
    assert nll.verdict == "holds" and "medians" in nll.interval.test  # one wild seed does not decide
    elbo = evaluate_one(Better("c", "T", "b higher", "elbo", "b", "a"), ms, "d")
    assert elbo.verdict == "inconclusive" and "Welch" in elbo.interval.test


def test_papers_own_plus_minus_turns_a_claim_paper_inconclusive():
    # DDVI Table 1, pinwheel: DDVI -3.88 +- 0.96 vs AEVB-IAF -4.19 +- 0.05 (95 % intervals over 3 seeds):
    # the difference 0.31 has a Welch interval of about +-0.96, so the paper does not separate them.
    claim = Better("c", "T", "DDVI beats AEVB-IAF", "elbo", "DDVI", "AEVB-IAF")
    paper = measurements([{"context": "mnist", "row": r, "metric": "elbo", "value": v, "ci95": h,
                           "evidence": Evidence("ci95", half=h, n=3)}
                          for r, v, h in (("DDVI", -3.88, 0.96), ("AEVB-IAF", -4.19, 0.05))])
    text, robust, verdict = paper_support([claim], paper)["c"]
    assert (robust, verdict) == (False, "paper-inconclusive") and "do not separate" in text
    bare = _ms([("mnist", "DDVI", "elbo", -3.88, NAN), ("mnist", "AEVB-IAF", "elbo", -4.19, NAN)])
    assert paper_support([claim], bare)["c"][1:] == (True, "robust")  # the means alone would call it robust


def test_best_and_robustness_from_the_paper():
    claims = [Best("x_best", "T", "x is best in {metric}", "ssim", "x", ("x", "y", "z")),
              Better("x_gt_y", "T", "x beats y", "ssim", "x", "y")]
    paper = _ms([("p1", "x", "ssim", 0.9, NAN), ("p1", "y", "ssim", 0.8, NAN), ("p1", "z", "ssim", 0.7, NAN),
                 ("p2", "x", "ssim", 0.9, NAN), ("p2", "y", "ssim", 0.8, NAN), ("p2", "z", "ssim", 0.95, NAN)])
    sup = paper_support(claims, paper)
    assert sup["x_best"] == ("p1 (not p2)", False, "not robust") and sup["x_gt_y"] == ("p1, p2", True, "robust")
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, 300)
    ours = _images({"x": base + 0.05 + rng.normal(0, 0.01, 300), "y": base + rng.normal(0, 0.01, 300),
                    "z": base + 0.049 + rng.normal(0, 0.05, 300)}, metric="ssim")
    df = evaluate("s", "P", claims, ours, paper).set_index("claim_id")
    assert df.loc["x_best", "verdict"] == "inconclusive" and df.loc["x_gt_y", "verdict"] == "holds"
    assert df.loc["x_best", "statement"] == "x is best in SSIM"
    assert df.loc["x_gt_y", "ci_low"] > 0.04 and df.loc["x_gt_y", "test"].startswith("paired bootstrap")
    assert df["holds"].isna().tolist() == [True, False] and bool(df.loc["x_gt_y", "robust"])


def test_two_fid_columns_must_agree_on_both_sides():
    # the two-phase paper's Table 3: SC-4 is best in FID (tf), SC-8 in FID (cf)
    claim = Best("c", "T", "a has the lowest {metric}", ("fid_tf", "fid_cf", "fd_domain"), "a", ("a", "b"))
    ms = _ms([("d", "a", "fid_tf", 2.9, NAN), ("d", "b", "fid_tf", 3.0, NAN),
              ("d", "a", "fid_cf", 2.72, NAN), ("d", "b", "fid_cf", 2.66, NAN)])
    j = evaluate_one(claim, ms, "d")
    assert j.verdict == "fails" and "FID (tf) and FID (cf)" in j.statement
    assert paper_support([claim], ms)["c"][2] == "not robust"


def test_stand_in_metric_is_named_in_the_statement_and_counted_apart():
    claims = [Better("c", "T", "a is better in {metric}", ("lpips", "featdist_domain"), "a", "b")]
    ours = _ms([("d", "a", "featdist_domain", 0.1, NAN), ("d", "b", "featdist_domain", 0.2, NAN)])
    paper = _ms([("p", "a", "lpips", 0.1, NAN), ("p", "b", "lpips", 0.2, NAN)])
    df = evaluate("s", "P", claims, ours, paper)
    assert df["verdict"].iloc[0] == "holds" and "stand-in" in df["statement"].iloc[0] and df["stand_in"].iloc[0]
    c = counts(df)
    assert (c["robust_holds"], c["robust_holds_stand_in"]) == (1, 1)
    assert "1 of the 1 robust findings" in summary(df) and "(1 of them on stand-in metrics)" in summary(df)
    df = evaluate("s", "P", claims, ours, _ms([]))
    assert df["paper_datasets"].iloc[0] == "not in the paper's tables" and df["robust"].isna().all()


# --- each study on hand-made tables -----------------------------------------------------------------------

def _scorevae_table(l2):
    rows = [("VAE", 0.01, "vae", "decoder"), ("ScoreVAE", 0.01, "scorevae", "sde"),
            ("ScoreVAE+", 0.01, "scorevae", "sde"), ("DiffDecoder", 0.01, "diffdec", "sde"),
            ("DiffDecoder", 0.0, "diffdec_b0", "sde"), ("ScoreVAE", 0.01, "scorevae", "ode")]
    return pd.DataFrame([{"dataset": "digits", "label": lab, "beta": b, "method": m, "mode": mode, "l2": v,
                          "featdist_domain": v / 10, "ssim": 0.5} for (lab, b, m, mode), v in zip(rows, l2)])


def test_scorevae_claims_follow_the_paper_on_a_paper_like_table():
    # CIFAR-10's Table 1 L2 (the ODE row must be ignored: the paper's numbers are reverse-SDE ones)
    df = study_claims(STUDIES["scorevae"], {"table1": _scorevae_table([3.41, 2.634, 2.591, 19.53, 2.851, 99.0])})
    v = df.set_index("claim_id")["verdict"]
    assert (v == "holds").all(), v[v != "holds"]
    df = study_claims(STUDIES["scorevae"], {"table1": _scorevae_table([3.41, 5.0, 2.591, 5.5, 5.2, 1.0])})
    v = df.set_index("claim_id")["verdict"]
    assert v["scorevae_lt_vae_l2"] == "fails" and v["diffdec_collapses_l2"] == "fails"
    assert not bool(df.set_index("claim_id").loc["scorevae_lt_vae_l2", "robust"])  # CelebA: the VAE wins


def _ddvi_table(values, spread, labels=("AEVB", "AEVB-IAF", "H-AEVB", "DDVI")):
    """Three seeds per row at value - spread, value, value + spread (as tables.write_ddvi_table writes them)."""
    seeds = lambda v: " ".join(f"{v + d * spread:g}" for d in (-1, 0, 1))
    return pd.DataFrame([{"prior": p, "method": lab.lower(), "label": lab, "elbo": values[lab],
                          "elbo_seeds": seeds(values[lab]), "elbo_release": values[lab] - 1,
                          "elbo_release_seeds": seeds(values[lab] - 1), "latent_nll": -values[lab] / 4,
                          "latent_nll_seeds": seeds(-values[lab] / 4), "mmd": 0.5, "n_seeds": 3}
                         for p in ("pinwheel", "swiss_roll", "square") for lab in labels])


def test_ddvi_claims_judge_the_difference_over_seeds():
    vals = {"AEVB": -12.0, "AEVB-IAF": -5.5, "H-AEVB": -7.0, "DDVI": -4.0}
    cfg = {"dataset": "digits"}
    sep = study_claims(STUDIES["ddvi"], {"table1": _ddvi_table(vals, 0.5)}, cfg).set_index("claim_id")
    assert sep.loc["ddvi_gt_aevb_elbo_pinwheel", "verdict"] == "holds"
    assert sep.loc["ddvi_gt_aevb_elbo_pinwheel", "test"].startswith("Welch t over 3 and 3 seeds")
    assert sep.loc["ddvi_gt_aevb_elbo_pinwheel", "difference"] == pytest.approx(8.0)
    assert sep.loc["ddvi_best_elbo_square", "verdict"] == "holds"
    assert sep.loc["ddvi_gt_aevb_elbo_pinwheel", "estimator"].startswith("exact bound")
    assert "release" in sep.loc["ddvi_gt_aevb_elbo_release_pinwheel", "estimator"]
    assert "medians" in sep.loc["ddvi_lt_aevb_latent_nll_pinwheel", "test"]
    assert sep.loc["ddvi_gt_aevb_nmi", "verdict"] == "untestable"  # no table 3 given
    # seeds spread by 8 around means 8 apart: Welch's interval of the difference straddles 0
    wide = study_claims(STUDIES["ddvi"], {"table1": _ddvi_table(vals, 8.0)}, cfg).set_index("claim_id")
    assert wide.loc["ddvi_gt_aevb_elbo_pinwheel", "verdict"] == "inconclusive"
    assert wide.loc["ddvi_best_elbo_pinwheel", "verdict"] == "inconclusive"
    # the paper's own ± (MNIST and CIFAR-10, 3 seeds): DDVI's ELBO beats AEVB's on every prior
    assert bool(sep.loc["ddvi_gt_aevb_elbo_swiss_roll", "robust"])
    assert sep.loc["ddvi_best_elbo_square", "paper_verdict"] == "not robust"
    assert sep.loc["ddvi_best_elbo_pinwheel", "paper_verdict"] == "paper-inconclusive"  # -3.88 ± 0.96 vs -4.19 ± 0.05


def _dbae_table2():
    return pd.DataFrame([
        {"dataset": "digits", "method": "dae_baseline", "label": "Preechakul et al. (random x_T)", "x_T": "random x_T",
         "ssim": 0.3, "mse": 0.05},
        {"dataset": "digits", "method": "dae_baseline", "label": "Preechakul et al. (inferred x_T)",
         "x_T": "inferred x_T", "ssim": 0.99, "mse": 0.001},
        {"dataset": "digits", "method": "dbae", "label": "DBAE", "x_T": "Dec(z)", "ssim": 0.7, "mse": 0.02},
        {"dataset": "digits", "method": "dbae_d", "label": "DBAE-d", "x_T": "Dec(z)", "ssim": 0.75, "mse": 0.015}])


def test_dbae_claims_map_our_comparator_to_the_papers_diffae():
    t2 = _dbae_table2()
    df = study_claims(STUDIES["dbae"], {"table2": t2}, {"dae": "dae_baseline"}).set_index("claim_id")
    for c in ("dbae_gt_dae_random_ssim", "dbae_lt_dae_random_mse", "dbaed_gt_dbae_ssim", "dae_inferred_gt_dbae_ssim"):
        assert df.loc[c, "verdict"] == "holds", c
    assert df.loc["dbae_gt_dae_tad", "verdict"] == "untestable"


# The claims the papers' own tables do not make robust, each for a reason the paper's numbers show: a flipped
# metric direction (or a parser reading the wrong column) changes this set.
NOT_ROBUST = {
    "two_phase": {"1phase_lt_base_stoch_psnr", "1phase_lt_base_stoch_ssim",  # LSUN Bedroom: 1-phase beats the baseline
                  "1phase_best_stoch_fid", "1phase_best_inv_fid"},  # Bedroom / ImageNet: 2-phase's FID is lower
    "two_phase_ablations": {"t3_sc4_best_fid"},  # Table 3: SC-4 best in FID (tf), SC-8 in FID (cf)
    "dbae": set(),
    "scorevae": {"scorevae_lt_vae_l2", "diffdec0_lt_vae_l2"},  # CelebA: the β-VAE has the lower L2
    "ddvi": {"ddvi_best_elbo_pinwheel", "ddvi_best_elbo_release_pinwheel",  # -3.88 ± 0.96 vs AEVB-IAF's -4.19 ± 0.05
             "ddvi_best_elbo_swiss_roll", "ddvi_best_elbo_release_swiss_roll", "ddvi_best_elbo_square",
             "ddvi_best_elbo_release_square", "ddvi_lt_aevb_latent_nll_swiss_roll", "ddvi_lt_aevb_mmd_swiss_roll",
             "ddvi_lt_aevb_mmd_square", "ddvi_best_elbo_semi_swiss_roll", "ddvi_best_nmi"},
}


def test_every_claim_has_a_unique_id_and_the_papers_numbers_decide_robustness():
    for name, mod in STUDIES.items():
        ids = [c.claim_id for c in mod.CLAIMS]
        assert len(ids) == len(set(ids)), name
        sup = paper_support(mod.CLAIMS, mod.paper(reference_dir()))
        assert all(text != "not in the paper's tables" for text, _, _ in sup.values()), name
        assert {c for c, (_, robust, _) in sup.items() if not robust} == NOT_ROBUST[name], name


def _inverse(t: pd.DataFrame, metrics) -> pd.DataFrame:
    """Every metric v -> 1/v: reverses every ordering of same-signed values (PSNR, FID, ELBO alike)."""
    t = t.copy()
    for m in metrics:
        if m in t.columns:
            t[m] = 1.0 / t[m]
        if f"{m}_seeds" in t.columns:
            t[f"{m}_seeds"] = t[f"{m}_seeds"].map(lambda c: " ".join(f"{1.0 / float(v):g}" for v in c.split()))
    return t


def _paper_like(study: str) -> tuple[dict, dict]:
    """Our tables of ``study`` filled with one of the paper's datasets (its orderings), and the claims' cfg."""
    ref = reference_dir()
    if study == "two_phase":
        t = pd.read_csv(ref / "dae_two_phase_table4.csv")
        t = t[t["dataset"] == "cifar10_32"].assign(label=lambda d: d["method"])
        return {"table4": t}, {}
    if study == "two_phase_ablations":
        r = pd.read_csv(ref / "dae_two_phase_tables_1_2_3.csv", dtype={"phase1": str, "phase2": str})
        r = r.assign(dataset="cifar10", method=[f"m{i}" for i in range(len(r))])
        r["phase1"], r["phase2"] = r["phase1"].fillna(""), r["phase2"].fillna("none")
        return {f"table{n}": r[r["table"] == n] for n in (1, 2, 3)}, {}
    if study == "scorevae":
        return {"table1": _scorevae_table([3.41, 2.634, 2.591, 19.53, 2.851, 99.0])}, {}
    if study == "ddvi":
        return {"table1": _ddvi_table({"AEVB": -12.0, "AEVB-IAF": -5.5, "H-AEVB": -7.0, "DDVI": -4.0}, 0.5)}, \
            {"dataset": "digits"}
    return {"table2": _dbae_table2()}, {"dae": "dae_baseline"}


@pytest.mark.parametrize("study", list(STUDIES))
def test_each_studys_claims_hold_on_the_papers_ordering_and_fail_on_its_reverse(study):
    tables, cfg = _paper_like(study)
    mod = STUDIES[study]
    metrics = {m for c in mod.CLAIMS for m in ((c.metric,) if isinstance(c.metric, str) else c.metric)}
    held = study_claims(mod, tables, cfg).set_index("claim_id")["verdict"]
    # ordering claims (not the "within a factor" ones, which a reversal keeps) that hold on the paper's numbers
    ordering = {c.claim_id for c in mod.CLAIMS if c.factor >= 1.0}
    holding = {c for c in ordering if held.get(c) == "holds"}
    assert len(holding) >= 3, held
    flipped = study_claims(mod, {k: _inverse(t, metrics) for k, t in tables.items()}, cfg)
    flipped = flipped.set_index("claim_id")["verdict"]
    assert {c: flipped[c] for c in holding if flipped[c] != "fails"} == {}


def test_write_and_combine(tmp_path):
    (tmp_path / "t1.csv").write_text(_scorevae_table([3.41, 2.634, 2.591, 19.53, 2.851, 99.0]).to_csv(index=False))
    a = write_study_claims(STUDIES["scorevae"], {"table1": tmp_path / "t1.csv"}, {}, tmp_path / "claims" / "scorevae.csv")
    both = combine([tmp_path / "claims" / "scorevae.csv", tmp_path / "claims" / "scorevae.csv"], tmp_path / "all.csv")
    back = read_claims(tmp_path / "all.csv")
    assert len(back) == 2 * len(a) and str(back["holds"].dtype) == "boolean" and len(both) == len(back)
    with pytest.raises(ValueError, match="unknown study"):
        get("nope")
    with pytest.raises(ValueError, match="read tables"):
        study_claims(STUDIES["scorevae"], {"table9": pd.DataFrame()})


def test_samples_are_found_by_their_scoring_jobs_names(tmp_path):
    from daebench.claims import read_samples

    paths = [tmp_path / "results/metrics/digits/dae_baseline/stochastic.json",
             tmp_path / "results/dbae/metrics/digits/dbae/endpoint_nfe5.json",
             tmp_path / "results/emergence/dbae/x2/results/scorevae/metrics/digits/vae/main_decoder.json"]
    for i, p in enumerate(paths):
        p.parent.mkdir(parents=True)
        p.write_text(f'{{"i": {i}}}')
    assert read_samples(paths) == {"digits/dae_baseline/stochastic": {"i": 0}, "digits/dbae/endpoint_nfe5": {"i": 1},
                                   "digits/vae/main_decoder": {"i": 2}}
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="metrics/ folder"):
        read_samples([tmp_path / "x.json"])
