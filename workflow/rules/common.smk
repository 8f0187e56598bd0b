# Validation, the job environment, the path templates (P) and the job layer's slice builders bound to this
# config (J.<module>.<function>: src/daebench/jobs/<module>.py).
import json
import os
import shutil

from snakemake.exceptions import WorkflowError

from daebench import paths as P
from daebench.config import ConfigError, apply_overrides, modes, source_first_on_path, validate
from daebench.jobs import bind
from daebench.jobs.ddvi import SETTING_OF_TABLE
from daebench.studies import REGISTRY as STUDIES

# `--config train={lr: 1e-3}` arrives with every nested leaf a string (Snakemake reads it with YAML's BaseLoader)
apply_overrides(config, workflow.config_settings.overwrite_config or {})
try:
    validate(config, workflow.source_path("../schemas/params.schema.yaml"))
except ConfigError as err:
    raise WorkflowError(f"{err}\n(fix params.yaml or the --configfile you passed)") from None

# Where runs are logged travels in the environment (inherited by local and cluster jobs), not
# in params, so that changing it never reruns the work itself.
os.environ.setdefault("MLFLOW_TRACKING_URI", config["mlflow"]["tracking_uri"])
os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", config["mlflow"]["experiment"])
# So do the execution settings (compute.*: AMP, DDP processes, ...): how a job runs is not what it computes.
os.environ.update(DAEBENCH_COMPUTE=json.dumps(config["compute"], sort_keys=True))
# Jobs import daebench from this workflow's own src/, first on PYTHONPATH: under `--sdm conda` the environment
# holds only the dependencies (envs/daebench.yaml explains why), and either way a job runs the code of the
# Snakefile that scheduled it. Absent (a workflow copied without src/), jobs use the installed package.
os.environ.update(PYTHONPATH=source_first_on_path(os.path.join(workflow.basedir, "src"), os.environ))
# And what MLflow keeps beside the metrics (checkpoints as artifacts, registered models).
os.environ.update(DAEBENCH_MLFLOW=json.dumps({k: config["mlflow"][k] for k in ("log_checkpoints", "register_models")},
                                            sort_keys=True))


envvars:
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "DAEBENCH_COMPUTE",
    "DAEBENCH_MLFLOW",


onstart:
    # Create the experiment (and the SQLite schema) once, before jobs fan out and race on it, and open
    # this invocation's parent run: every job's run nests under it (DAEBENCH_MLFLOW_PARENT_RUN). Jobs write
    # their runs to a journal this process ships into the store (daebench.tracking.journal: a job does not
    # import MLflow, seconds of every small job).
    import sys

    from daebench.tracking import experiment_name, open_workflow_run, resolve_uri, setup_experiment, start_shipping, tracking_uri

    setup_experiment(tracking_uri(), experiment_name())
    open_workflow_run(["snakemake", *sys.argv[1:]], sorted(workflow.dag_settings.targets) or [workflow.default_target])
    start_shipping(resolve_uri(tracking_uri()))


onsuccess:
    from daebench.tracking import close_workflow_run, stop_shipping

    stop_shipping()
    close_workflow_run(success=True)


onerror:
    from daebench.tracking import close_workflow_run, stop_shipping

    stop_shipping()
    close_workflow_run(success=False)


# A GPU is a resource only where one exists, so CPU machines run training jobs in parallel.
GPU = 1 if shutil.which("nvidia-smi") else 0
# Torch jobs run one thread each on CPU: these small networks scale poorly across threads and
# parallel jobs sharing cores with multi-threaded torch slow down ~5x (OpenMP spinning).
# Override per rule with e.g. `--set-threads train_phase=4`.
TORCH_THREADS = 4 if GPU else 1


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    method=r"[A-Za-z0-9_]+",
    phase=r"[A-Za-z0-9_]+",
    mode="|".join(modes()),
    nfe=r"\d+",
    table=r"table[0-9]+",
    setting="|".join(dict.fromkeys(SETTING_OF_TABLE.values())),
    prior=r"[a-z_]+",
    seed=r"\d+",
    study="|".join(STUDIES),
    scale=r"[0-9]+(\.[0-9]+)?",
    source=r"prior|ae|simulated|1000_genomes",


# Every job's params carry the configuration of everything upstream of it, so a changed key reruns exactly
# the jobs downstream of it in any Snakemake invocation (another DVC stage, a later session), not only where
# the upstream job reruns alongside. File times still count, as usual. The slices, input functions and paths
# are tested Python in the job layer (src/daebench/jobs/); J holds them with this config bound, by module.
J = bind(config)

# A fresh clone whose artefacts came from `dvc pull` (no .snakemake/metadata yet): pulled files get modification
# times in DAG order. On a dry run too, since the plan depends on them; it says so when it does anything.
J.dvc.order_pulled_artefacts()
