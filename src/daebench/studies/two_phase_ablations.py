"""The two-phase DAE study's ablations (results/two_phase/): the prediction type, the schedule against it,
1-phase against 2-phase (Tables 1-3: stochastic reconstructions scored as Table 4's), the perceptual path
length of slerp interpolations (Table 5) and linear-probe AUROC (Tables 10 / 11)."""
from __future__ import annotations

from types import SimpleNamespace as W

from ..claims import two_phase_ablations as claims
from ..jobs import dbae, two_phase
from ..jobs.dvc import models, scored_data, scoring, trainings
from .base import Section, Stage, Study


def _recon_methods(config):
    tp = config["two_phase"]
    return list(dict.fromkeys(tp["table1"] + tp["table2"] + tp["table3"]))


def _jobs(config):
    ds, tp = config["dataset"], config["two_phase"]
    recon = _recon_methods(config)
    out = [*trainings(config, list(dict.fromkeys(recon + tp["ppl"]["methods"] + tp["probe"]["methods"]))),
           *scoring(config)]
    for table in two_phase.ABLATIONS:
        out += [two_phase.ablation_cfg(config, W(table=table)), two_phase.ablation_upstream(config, W(table=table))]
    out += [two_phase.reconstruct_cfg(config, W(dataset=ds, method=m)) for m in recon]
    out += [two_phase.ppl_cfg(config, W(dataset=ds, method=m)) for m in tp["ppl"]["methods"]]
    return out + [dbae.probe_cfg(config, W(dataset=ds, method=m)) for m in tp["probe"]["methods"]]


def _methods(config):
    tp = config["two_phase"]
    return [*tp["table1"], *tp["table2"], *tp["table3"]]


SECTION = Section(
    title="Two-phase DAE training: the ablations",
    intro="Why two phases work (§4.2-4.4, §5.2, supp. §11): the prediction type on SC-4 (Table 1), the "
          "schedule against the prediction type (Table 2), 1-phase against phase 1 at t = 1 followed by "
          "phase 2 on SC-2 to SC-16 (Table 3; one phase-1 run shared by the four), the perceptual path "
          "length of slerp interpolations (Table 5) and linear-probe AUROC per class and attribute with "
          "ranks (Tables 10 / 11). Tables 1-3 are stochastic reconstructions scored as Table 4's.",
    tables=(("Table 1: prediction type on SC-4", "two_phase/table1.csv", "dae_two_phase_tables_1_2_3.csv", 1),
            ("Table 2: schedule x prediction", "two_phase/table2.csv", "dae_two_phase_tables_1_2_3.csv", 2),
            ("Table 3: 1-phase against 2-phase", "two_phase/table3.csv", "dae_two_phase_tables_1_2_3.csv", 3),
            ("Table 5: perceptual path length (the paper: LPIPS VGG; here its column says which distance)",
             "two_phase/table5.csv", "dae_two_phase_table5_ppl.csv", None),
            ("Tables 10 / 11: linear-probe AUROC (rank 1 = best)", "two_phase/table10.csv",
             "dae_two_phase_tables_10_11_auroc.csv", None)),
    figures=(("Slerp interpolations of (z, x_T) between test-image pairs (Table 5; one row per pair)",
              "two_phase/ppl/*/*.png"),),
    curves={"rule": "train", "metric": ["loss/mse"],
            "methods": ("dae_eps_sc4", "dae_x_sc4", "dae_x_linear", "dae_x_sc1", "dae_x_sc2", "dae_x_sc8",
                        "dae_v_linear", "dae_v_sc1", "dae_v_sc2", "dae_v_sc8", "dae_2phase_sc2",
                        "dae_2phase_sc8", "dae_2phase_sc16")},
    target="two_phase_all",
)

STUDY = Study(
    name="two_phase_ablations",
    claims=claims,
    claims_cfg=lambda config: {"labels": {m: config["methods"][m]["label"]
                                          for m in config["two_phase"]["probe"]["methods"]}},
    outputs=two_phase.two_phase_outputs,
    samples=lambda config, table: two_phase.ablation_inputs(config, W(table=table)),
    headlines={"table1": (("method",), ("psnr", "ssim")), "table2": (("method",), ("psnr", "fd_domain")),
               "table3": (("method",), ("psnr", "ssim", "fd_domain"))},
    scaled=(("train", "examples"),),
    section=SECTION,
    # Its reconstructions, scores and probes land beside Table 4's and DBAE's (results/recon, results/metrics,
    # results/dbae/probe: the same jobs where a row is shared), so those stages' outputs hold them.
    stage=Stage("two_phase_ablations", targets=two_phase.two_phase_outputs, jobs=_jobs,
                deps=scored_data,
                outs=lambda config, owned: [*models(config, _recon_methods(config), owned), "results/two_phase"],
                # Table 10's linear probes run DBAE's probe rule
                code=("jobs/two_phase.py", "claims/two_phase_ablations.py", "studies/two_phase_ablations.py",
                      "evaluate/interpolation.py", "jobs/dbae.py", "evaluate/representation.py", "data/attributes.py",
                      "dbae.smk")),
    methods=_methods,
    benchmarks=("two_phase/*", "tables/two_phase_*"),
    rules=("two_phase.smk",),
)
