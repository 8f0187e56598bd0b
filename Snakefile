# daebench: the only entry point. Parameters come from params.yaml (override with --configfile),
# are validated once here, and each rule passes the slice it depends on to `python -m daebench`.
from snakemake.utils import min_version

min_version("8.0")


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/prior.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/two_phase.smk"
include: "workflow/rules/dbae.smk"
include: "workflow/rules/scorevae.smk"
include: "workflow/rules/ddvi.smk"
include: "workflow/rules/emergence.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        "results/table4.csv",
        "results/report.html",
