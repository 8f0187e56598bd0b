"""The DBAE study (Kim et al.): diffusion bridge autoencoders against the DiffAE-style DAE: reconstruction and
its NFE sweep (Tables 2, 9), generation through the latent prior and its NFE ladder (Tables 4, 11),
downstream probes (Table 1), disentanglement (Table 3) and inference cost (Table 5)."""
from __future__ import annotations

from types import SimpleNamespace as W

from .. import paths
from ..claims import dbae as claims
from ..jobs import dbae
from ..jobs.dvc import models, scored_data, scoring, trainings
from .base import Section, Stage, Study


def _jobs(config):
    ds, d = config["dataset"], config["dbae"]
    out = [*[dbae.dbae_table_upstream(config, W(table=t)) for t in dbae.TABLES], dbae.dbae_table_cfg(config, W()),
           *scoring(config),
           *trainings(config, dbae.dbae_study_methods(config))]
    for m in dbae.dbae_study_methods(config):
        out += [dbae.prior_slice(config, ds, m), dbae.cost_cfg(config, W(dataset=ds, method=m)),
                dbae.disentangle_cfg(config, W(dataset=ds, method=m))]
        out += [dbae.dbae_eval_slice(config, ds, m, n) for n in d["nfe"] + [d["table2_nfe"]]]
        out += [dbae.generation_slice(config, ds, m, s, n) for s in ("prior", "ae") for n in [None, *d["table11"]["nfe"]]]
    return out + [dbae.gen_metrics_cfg(config, W(dataset=ds))]


def _nfe_curves(table9):
    from ..evaluate.figures import nfe_curve_figure  # matplotlib: only when the report draws it

    return nfe_curve_figure(table9)


def _deps(config):
    ds = config["dataset"]
    return [*scored_data(config),
            paths.MODELS.format(dataset=ds) + f"/{config['dbae']['dae']}"]


def _outs(config, owned):
    return [*models(config, dbae.dbae_study_methods(config), owned), paths.PRIORS.format(dataset=config["dataset"]),
            "results/dbae"]


SECTION = Section(
    title="The DBAE study",
    intro="Diffusion bridge autoencoders against the DiffAE-style DAE (Preechakul et al.): reconstruction "
          "(Table 2) and its NFE sweep (Table 9), generation through the latent prior (Table 4) and its NFE "
          "ladder (Table 11), "
          "downstream probes (Table 1), disentanglement (Table 3) and inference cost (Table 5).",
    tables=(("Table 2: reconstruction", "dbae/table2.csv", "dbae_table2_reconstruction.csv", None),
            ("Table 9: reconstruction against NFE", "dbae/table9.csv", "dbae_tables_9_10_nfe.csv", None),
            ("Table 4: generation (prior samples and +AE)", "dbae/table4.csv",
             "dbae_table4_generation_ffhq.csv", None),
            ("Table 11: generation at a ladder of NFE (the paper: 1000 / 500 / 250)", "dbae/table11.csv",
             "dbae_table4_generation_ffhq.csv", None),
            ("Table 1: downstream attribute probes", "dbae/table1.csv", "dbae_table1_downstream.csv", None),
            ("Table 3: disentanglement", "dbae/table3.csv", "dbae_table3_disentanglement.csv", None),
            ("Table 5: inference cost", "dbae/table5.csv", None, None)),
    figures=(("Reconstructions at the largest NFE (top row: test images)", "dbae/recon/*/*/*_nfe{nfe}.png"),
             ("Generated samples (prior) and decoded test codes (+AE)", "dbae/gen/*/*/*.png")),
    curves={"rule": "train", "metric": ["loss/bridge", "loss/mse"],
            "methods": ("dae_baseline", "dbae", "dbae_d", "dbae_tc")},
    plots=(("Table 9 as curves: reconstruction against the number of function evaluations", "dbae/table9.csv",
            _nfe_curves),),
)

STUDY = Study(
    name="dbae",
    claims=claims,
    claims_cfg=lambda config: {"dae": config["dbae"]["dae"]},
    outputs=dbae.dbae_outputs,
    samples=lambda config, table: dbae.dbae_table_inputs(config, W(table=table)),
    headlines={"table1": (("method",), ("ap",)), "table2": (("method", "x_T"), ("ssim",)),
               "table4": (("method", "source"), ("fd_domain",))},
    scaled=(("train", "examples"), ("dbae", "prior", "examples")),
    section=SECTION,
    stage=Stage("dbae", targets=lambda config: dbae.dbae_outputs(config) + ["results/dbae/nfe_curve.csv"],
                jobs=_jobs, deps=_deps, outs=_outs,
                code=("jobs/dbae.py", "claims/dbae.py", "studies/dbae.py", "diffusion/bridge.py",
                      "evaluate/representation.py", "evaluate/latents.py", "data/attributes.py",
                      "methods/latent_prior.py", "nets/mlp.py")),
    methods=lambda config: [*config["dbae"]["methods"], *config["dbae"]["tc_methods"]],
    benchmarks=("dbae/*", "train_prior/*", "tables/dbae_*"),
    rules=("prior.smk", "dbae.smk"),
)
