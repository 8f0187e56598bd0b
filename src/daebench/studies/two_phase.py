"""The two-phase DAE study's main table: Table 4 (reconstruction of DAE variants in two decoding modes), the
main job. Its report section is the report's own (Table 4 first, always shown), so it declares none."""
from __future__ import annotations

from types import SimpleNamespace as W

from .. import paths
from ..claims import two_phase as claims
from ..jobs import two_phase
from ..jobs.dvc import models, scoring, trainings
from .base import Stage, Study


def _jobs(config):
    t4, ds = config["table4"], config["dataset"]
    return ([two_phase.table4_provenance(config, W()), *trainings(config, t4["methods"]), *scoring(config)]
            + [two_phase.reconstruct_cfg(config, W(dataset=ds, method=m)) for m in t4["methods"]])


STUDY = Study(
    name="two_phase",
    claims=claims,
    outputs=lambda config: list(claims.TABLES.values()),
    samples=lambda config, table: two_phase.table4_inputs(config, W()),
    headlines={"table4": (("method", "mode"), ("ssim", "fd_domain"))},
    scaled=(("train", "examples"),),
    stage=Stage("table4", targets=lambda config: ["results/table4.csv"], jobs=_jobs,
                code=("jobs/two_phase.py", "claims/two_phase.py", "studies/two_phase.py"),
                deps=lambda config: [paths.DATA.format(dataset=config["dataset"])],
                outs=lambda config, owned: [*models(config, config["table4"]["methods"], owned),
                                            paths.CLASSIFIER.format(dataset=config["dataset"]),
                                            "results/recon", "results/metrics", "results/table4.csv"]),
    methods=lambda config: config["table4"]["methods"],
    benchmarks=("tables/table4.tsv",),
    rules=("tables.smk",),
)
