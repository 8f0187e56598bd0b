"""The ScoreVAE study (Batzolis et al.): a frozen unconditional score model plus a time-dependent encoder
(ScoreVAE; ScoreVAE+ adds a corrector) against a β-VAE and diffusion decoders trained from scratch
(DiffDecoder), reconstructing with the conditional reverse SDE and the probability-flow ODE (Tables 1-2)."""
from __future__ import annotations

from types import SimpleNamespace as W

from ..claims import scorevae as claims
from ..jobs import scorevae
from ..jobs.dvc import models, scored_data, scoring, trainings
from .base import Section, Stage, Study


def _rows(config):
    return list(dict.fromkeys(r["method"] for r in config["scorevae"]["rows"]))


def _methods(config):
    """Its rows' methods and the priors they build on."""
    out = []
    for m in _rows(config):
        out.append(m)
        if prior := config["methods"][m].get("prior"):
            out.append(prior)
    return out


def _jobs(config):
    methods = _rows(config)
    return [scorevae.scorevae_table_upstream(config, W()), scorevae.scorevae_table_cfg(config, W()),
            scorevae.scorevae_grid_labels(config, W()), *scoring(config),
            *trainings(config, methods + [config["methods"][m]["prior"] for m in methods
                                          if "prior" in config["methods"][m]])]


SECTION = Section(
    title="The ScoreVAE study",
    intro="A frozen unconditional score model plus a time-dependent encoder (ScoreVAE; ScoreVAE+ adds a "
          "corrector) against a β-VAE and diffusion decoders trained from scratch (DiffDecoder), "
          "reconstructing with the conditional reverse SDE and the probability-flow ODE (Tables 1-2).",
    tables=(("Tables 1-2: reconstruction", "scorevae/table1.csv", "scorevae_tables_1_2.csv", None),),
    figures=(("Reconstructions (top row: test images)", "scorevae/recon_grid.png"),),
    curves={"rule": "train", "metric": ["loss/dsm", "loss/recon"],
            "methods": ("score_prior", "scorevae", "vae", "diffdec", "diffdec_b0")},
)

STUDY = Study(
    name="scorevae",
    claims=claims,
    outputs=scorevae.scorevae_outputs,
    samples=lambda config, table: scorevae.scorevae_row_metrics(config),
    headlines={"table1": (("method", "phase", "mode"), ("ssim",))},
    scaled=(("train", "examples"), ("methods", "scorevae", "examples")),
    section=SECTION,
    stage=Stage("scorevae", targets=scorevae.scorevae_outputs, jobs=_jobs,
                deps=scored_data,
                outs=lambda config, owned: [*models(config, _rows(config), owned), "results/scorevae"],
                code=("jobs/scorevae.py", "claims/scorevae.py", "studies/scorevae.py", "methods/vpvae.py")),
    methods=_methods,
    benchmarks=("scorevae/*",),
    rules=("scorevae.smk",),
)
