"""DDVI's claims (Tables 1, 2, 3, 5 and 8; Table 6 is Table 1 on CIFAR-10), on results/ddvi/table{1,2,3,5,8}.csv.

Rows are "<method> · <prior>" (semi-supervised rows add " · semi-supervised"). Our tables carry each seed's
value (``<metric>_seeds``), so a claim's verdict comes from Welch's interval of the difference of means (the
latent NLL, heavy-tailed across seeds: the difference of medians, bootstrapped); the paper's "mean ± h" is a
95 % interval over 3 seeds (§5: "All results below are reported with 95% confidence interval using 3
different seeds") and is judged by the same rule. Table 5 is one context per training budget.

Two ELBO estimators: ``elbo`` is the exact bound the project computes (primary); ``elbo_release`` is
the release's estimator (`DiffVAEWarmup.get_elbo` for DDVI: a deterministic DDIM chain without the
last step's density, chain KLs averaged over dimensions; the AEVB family's log q with log sigma^2 where
1/2 log sigma^2 belongs), which produced the paper's numbers. Each ELBO claim is made under each
estimator, and says which."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .core import Best, Better, Claim, measurements, melt

STUDY, PAPER = "ddvi", "DDVI"
PRIORS = ("pinwheel", "swiss_roll", "square")
SEMI = " · semi-supervised"
EXACT, RELEASE = "exact bound (elbo)", "the release's estimator (elbo_release)"
ELBO_METHODS = ("AEVB", "AEVB-IAF", "H-AEVB", "DDVI")
METRICS = ["elbo", "elbo_release", "mmd", "latent_nll", "knn_acc", "cluster_purity", "cluster_completeness", "nmi"]
REFERENCE, REFERENCE_CLUSTER = "ddvi_tables.csv", "ddvi_table3_genotype_clustering.csv"
REFERENCE_TIME = "ddvi_table5_nmi_time.csv"
MOST, FEWEST = " @ longest training", " @ shortest training"
PAPER_SEEDS = 3  # §5: the ± of Tables 1-3 are 95 % intervals over 3 seeds
T5 = " [T5]"     # Table 5's rows, one context per training budget ("<genotypes> @ x<scale>", "... @ <minutes> min")
CLUSTER_METHODS = ("AEVB", "AEVB-IAF", "AAEB", "DDVI")


def r(method: str, prior: str | None = None, semi: bool = False) -> str:
    return method + (f" · {prior}" if prior else "") + (SEMI if semi else "")


def _claims() -> list[Claim]:
    out: list[Claim] = []
    for p in PRIORS:
        for metric, est in (("elbo", EXACT), ("elbo_release", RELEASE)):
            tag = "" if metric == "elbo" else "_release"
            out.append(Better(f"ddvi_gt_aevb_elbo{tag}_{p}", "Table 1", f"DDVI has a higher ELBO than AEVB ({p} prior)",
                              metric, r("DDVI", p), r("AEVB", p), estimator=est))
            out.append(Best(f"ddvi_best_elbo{tag}_{p}", "Table 1", f"DDVI has the highest ELBO of the methods with one "
                            f"({p} prior)", metric, r("DDVI", p), tuple(r(m, p) for m in ELBO_METHODS), estimator=est))
        out.append(Better(f"ddvi_lt_aevb_latent_nll_{p}", "Table 1", f"DDVI's latent NLL is lower than AEVB's ({p} "
                          "prior: encoded test points fit the prior better)", "latent_nll", r("DDVI", p), r("AEVB", p),
                          estimator="KDE of the prior"))
        out.append(Better(f"ddvi_lt_aevb_mmd_{p}", "Table 1", f"DDVI's MMD to the prior is lower than AEVB's ({p} "
                          "prior)", "mmd", r("DDVI", p), r("AEVB", p)))
        out.append(Better(f"ddvi_gt_aevb_acc_semi_{p}", "Table 2", f"semi-supervised: DDVI's k-NN accuracy on the "
                          f"latents is higher than AEVB's ({p} prior)", "knn_acc", r("DDVI", p, True),
                          r("AEVB", p, True)))
        out.append(Better(f"ddvi_gt_aevb_elbo_semi_{p}", "Table 2", f"semi-supervised: DDVI has a higher ELBO than "
                          f"AEVB ({p} prior)", "elbo", r("DDVI", p, True), r("AEVB", p, True), estimator=EXACT))
        out.append(Better(f"sleep_lt_nosleep_latent_nll_{p}", "Table 8", f"DDVI's sleep term lowers the latent NLL "
                          f"({p} prior; Table 8: without it, 'insufficient to learn a good q')", "latent_nll",
                          r("DDVI", p), r("DDVI (w/o sleep term)", p), estimator="KDE of the prior"))
    for p in PRIORS:
        # §5.2: "For MNIST, DDVI always achieves the best ELBO" (Table 2, semi-supervised)
        out.append(Best(f"ddvi_best_elbo_semi_{p}", "Table 2", f"semi-supervised: DDVI has the highest ELBO of the "
                        f"methods with one ({p} prior; 'DDVI always achieves the best ELBO')", "elbo", r("DDVI", p, True),
                        tuple(r(m, p, True) for m in ("AEVB", "AEVB-IAF", "DDVI")), estimator=EXACT))
    out.append(Better("ddvi_gt_aevb_nmi", "Table 3", "genotype clustering: DDVI's NMI is higher than AEVB's", "nmi",
                      "DDVI", "AEVB", estimator="clusters: the mixture prior's component of each encoded individual"))
    # §5.3 on Table 3: "DDVI attains the best" cluster purity and NMI
    for metric in ("nmi", "cluster_purity"):
        out.append(Best(f"ddvi_best_{metric}", "Table 3", "genotype clustering: DDVI has the highest {metric} of the "
                        "four methods (§5.3: DDVI attains the best)", metric, "DDVI", CLUSTER_METHODS,
                        estimator="clusters: the mixture prior's component of each encoded individual"))
    # Table 5 (App. C: "DDVI outperforms baselines at all timestamps"): one verdict per training budget (the
    # paper: 20 to 60 minutes, DDVI's first 10 being warm-up; ours: every scale of ddvi.table5.scales)
    for base in ("AEVB", "AAEB"):
        out.append(Better(f"t5_ddvi_t10_gt_{base.lower()}_nmi", "Table 5", f"at this training budget, DDVI (T=10) "
                          f"clusters better than {base} (NMI; App. C: 'DDVI outperforms baselines at all timestamps')",
                          "nmi", "DDVI (T=10)" + T5, base + T5))
    out.append(Better("t5_ddvi_t10_improves", "Table 5", "DDVI (T=10)'s NMI grows from the shortest to the longest "
                      "training (App. C: it 'continues to improve after the baselines have plateaued')", "nmi",
                      "DDVI (T=10)" + MOST, "DDVI (T=10)" + FEWEST))
    return out


CLAIMS = _claims()
TABLES = {"table1": "results/ddvi/table1.csv", "table2": "results/ddvi/table2.csv",
          "table3": "results/ddvi/table3.csv", "table8": "results/ddvi/table8.csv", "table5": "results/ddvi/table5.csv"}


def ours(tables: dict[str, pd.DataFrame], cfg: dict, samples: dict[str, dict] | None = None) -> pd.DataFrame:
    """``cfg``: {dataset: the image dataset of tables 1, 2, 8; genotypes: the source of table 3}."""
    recs = []
    genotypes = cfg.get("genotypes", "genotypes")
    for name in ("table1", "table8", "table2"):
        if name in tables:
            t = tables[name]
            rows = pd.Series([r(lab, p, name == "table2") for lab, p in zip(t["label"], t["prior"])], index=t.index)
            recs += melt(t, cfg["dataset"], rows, METRICS)
    if "table3" in tables:
        t = tables["table3"]
        recs += melt(t, genotypes, t["label"], METRICS)
    if "table5" in tables:
        t = tables["table5"]
        for tag, pick in ((MOST, "max"), (FEWEST, "min")):
            ends = t[t["scale"] == getattr(t["scale"], pick)()]
            recs += melt(ends, genotypes, ends["label"] + tag, ["nmi"])
        recs += melt(t, genotypes + " @ x" + t["scale"].map("{:g}".format), t["label"] + T5, ["nmi"])
    ms = measurements(recs)
    # Tables 1 and 8 share runs (DDVI, AEVB...): one measurement each
    return ms.drop_duplicates(["context", "row", "metric"]).reset_index(drop=True)


def paper(ref_dir: Path) -> pd.DataFrame:
    t = pd.read_csv(ref_dir / REFERENCE).rename(columns={"acc": "knn_acc", "acc_pm": "knn_acc_pm"})
    rows = pd.Series([r(m, p, s == "semi_supervised") for m, p, s in zip(t["method"], t["prior"], t["setting"])],
                     index=t.index)
    recs = melt(t, t["dataset"], rows, METRICS, n_seeds=PAPER_SEEDS)
    # The paper's ELBO column was computed by the release's estimator: it supports both ELBO claims.
    recs += [{**x, "metric": "elbo_release"} for x in recs if x["metric"] == "elbo"]
    c = pd.read_csv(ref_dir / REFERENCE_CLUSTER)
    recs += melt(c, "1000_genomes", c["method"], METRICS, n_seeds=PAPER_SEEDS)
    t5 = pd.read_csv(ref_dir / REFERENCE_TIME)
    t5["label"] = t5["method"] + t5["T"].map(lambda x: "" if pd.isna(x) else f" (T={int(x)})")
    for tag, minutes in ((MOST, 60), (FEWEST, 20)):
        ends = t5[t5["minutes"] == minutes]
        recs += melt(ends, "1000_genomes", ends["label"] + tag, ["nmi"])
    recs += melt(t5, "1000_genomes @ " + t5["minutes"].astype(str) + " min", t5["label"] + T5, ["nmi"])
    return measurements(recs)
