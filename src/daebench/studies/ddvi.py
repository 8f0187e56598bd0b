"""The DDVI study (Piriyakulkij et al.): diffusion posteriors (wake-sleep) against AEVB, AEVB-IAF, AAEB and
H-AEVB on 2-D structured priors: unsupervised (Tables 1, 8), semi-supervised (Table 2), clustering of
genotypes (Table 3) and its NMI against training time (Table 5)."""
from __future__ import annotations

from types import SimpleNamespace as W

from .. import paths
from ..claims import ddvi as claims
from ..jobs import data, ddvi, ddvi_budget
from .base import Section, Stage, Study


def _split(name: str) -> tuple[str, str]:
    """DDVI run names are <setting>/<prior>/<method>/seed<k>: the method, and where it ran."""
    setting, prior, method, _ = (name.split("/") + ["", "", "", ""])[:4]
    return method, f"{setting}/{prior}"


def _jobs(config):
    out = [data.genotypes_slice(config, config["ddvi"]["genotypes"]["source"]), ddvi_budget.table5_cfg(config, W())]
    out += [ddvi_budget.budget_slice(config, c["run"], c["scale"], c["seed"]) for c in ddvi_budget.table5_cells(config)]
    for table in ddvi.SETTING_OF_TABLE:
        out.append(ddvi.ddvi_table_cfg(config, W(table=table)))
        setting = ddvi.SETTING_OF_TABLE[table]
        out += [ddvi.ddvi_eval_cfg(config, W(setting=setting, prior=p, method=m, seed=s))
                for p in ddvi.ddvi_priors(config, setting) for m in config["ddvi"]["tables"][table]
                for s in config["ddvi"]["seeds"]]
    return out


SECTION = Section(
    title="The DDVI study",
    intro="Diffusion posteriors (DDVI, wake-sleep) against AEVB, AEVB-IAF, AAEB and H-AEVB on 2-D "
          "structured priors: unsupervised (Table 1), without the sleep term (Table 8), semi-supervised "
          "(Table 2), clustering of genotypes (Table 3) and its NMI against training time (Table 5). Each "
          "number is the mean over the seeds with its 95 % Student-t half-width (`*_ci95`). The latent plots "
          "are the first seed's test codes.",
    tables=(("Table 1: unsupervised (ELBO per pixel, MMD, latent NLL)", "ddvi/table1.csv", "ddvi_tables.csv", 1),
            ("Table 8: latent NLL without the sleep term", "ddvi/table8.csv", "ddvi_tables.csv", 8),
            ("Table 2: semi-supervised (ELBO, KNN-20 accuracy, latent NLL)", "ddvi/table2.csv",
             "ddvi_tables.csv", 2),
            ("Table 3: genotype clustering (purity, completeness, NMI)", "ddvi/table3.csv",
             "ddvi_table3_genotype_clustering.csv", None),
            ("Table 5: clustering NMI against training wall time (the paper: at 10-60 minutes)",
             "ddvi/table5.csv", "ddvi_table5_nmi_time.csv", None)),
    figures=(("Latent codes: unsupervised", "ddvi/latents_unsup.png"),
             ("Latent codes: semi-supervised", "ddvi/latents_semi.png"),
             ("Latent codes: genotype clustering", "ddvi/latents_cluster.png"),
             ("Table 5 as curves: NMI against the training job's wall time", "ddvi/table5.png")),
    curves={"rule": "ddvi_train", "metric": ["loss/recon", "loss/recon_mse"], "split": _split,
            "keep": lambda name: name.endswith("/seed0")},
)

STUDY = Study(
    name="ddvi",
    claims=claims,
    claims_cfg=lambda config: {"dataset": config["dataset"], "genotypes": config["ddvi"]["genotypes"]["source"]},
    outputs=ddvi.ddvi_outputs,
    headlines={"table1": (("prior", "method"), ("elbo",)), "table2": (("prior", "method"), ("knn_acc",)),
               "table3": (("method",), ("nmi",))},
    scaled=(("ddvi", "train", "examples"),),
    section=SECTION,
    stage=Stage("ddvi", targets=ddvi.ddvi_outputs, jobs=_jobs,
                deps=lambda config: [paths.DATA.format(dataset=config["dataset"])],
                outs=lambda config, owned: ["resources/data/genotypes", "resources/ddvi", "results/ddvi"],
                code=("ddvi_study.py", "jobs/ddvi.py", "jobs/ddvi_budget.py", "claims/ddvi.py", "studies/ddvi.py",
                      "methods/ddvi_common.py", "methods/priors.py", "nets/mlp.py", "evaluate/ddvi.py",
                      "data/genotypes.py", "data/genotype_simulation.py", "data/thousand_genomes.py")),
    benchmarks=("ddvi/*",),
    rules=("ddvi.smk",),
)
