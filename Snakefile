# daebench: the only entry point. Parameters come from params.yaml (override with --configfile),
# are validated once here, and each rule passes the slice it depends on to `python -m daebench`.
from snakemake.utils import min_version

min_version("8.0")


configfile: "params.yaml"


# What the studies share, then each study's own rules (daebench.studies: its declaration names them), then
# what reads every study (claims, summaries, the report, the emergence ladders).
include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"


for _study in STUDIES.values():
    for _rules in _study.rules:
        include: f"workflow/rules/{_rules}"


include: "workflow/rules/studies.smk"
include: "workflow/rules/emergence.smk"
include: "workflow/rules/report.smk"


# What every job that runs a command shares, set here once rather than on each rule:
# - one environment (envs/daebench.yaml explains its pins), used under `--sdm conda`; a rule's path is
#   relative to its own file;
# - its timing (`benchmark:`) beside its log, logs/benchmarks/<the log's path>.tsv, so a job's time is
#   found from its log and a rule cannot forget one.
for _rule in workflow.rules:
    if _rule.shellcmd and _rule.conda_env is None:
        _rule.conda_env = os.path.relpath(os.path.join(workflow.basedir, "envs", "daebench.yaml"), _rule.basedir)
    _logs = [_log for _log in _rule.log if _log.endswith(".log")]
    if _logs:
        _rule.benchmark_modifier = workflow.modifier.path_modifier  # what `benchmark:` would have set
        _rule.benchmark = f"logs/benchmarks/{_logs[0].removeprefix('logs/').removesuffix('.log')}.tsv"


rule main:
    # `snakemake --cores 8` with no target: the main job (Table 4 and its summary), minutes on a laptop.
    default_target: True
    input:
        "results/table4.csv",


rule all:
    # Every study's tables and the report (hours on 2 cores at the default scale).
    input:
        "results/table4.csv",
        "results/report.html",
