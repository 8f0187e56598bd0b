"""MLflow logging. The tracking URI is explicit (params `mlflow.tracking_uri`, overridden by
MLFLOW_TRACKING_URI) and the experiment is named by MLFLOW_EXPERIMENT_NAME; the workflow creates
the experiment once (Snakemake `onstart`) before jobs fan out, but every job also finds or creates
it, so a job started without `onstart` works too.

One Snakemake invocation is one parent run (`open_workflow_run` in `onstart`, closed in `onsuccess` /
`onerror`); its id travels to the jobs in DAEBENCH_MLFLOW_PARENT_RUN and every job's run nests under it.
Training jobs log their final checkpoint as an artifact (`checkpoint/`), and optionally register it as a
model version (`mlflow.log_checkpoints` / `mlflow.register_models`, carried in DAEBENCH_MLFLOW).

Jobs of a workflow log through a journal the workflow's process ships into the store (journal.py), so they
never import MLflow; outside a workflow a job logs directly.

Modules: journal.py (the jobs' journal and its shipper), store.py (the store, its client and experiment, safe under concurrent jobs on one SQLite file:
retries and an inter-process lock), runs.py (a job's run and the workflow's parent run), system_metrics.py
(the "system/*" metrics every run logs from a daemon thread)."""
from .journal import JOURNAL_ENV, start_shipping, stop_shipping
from .runs import (
    OPTION_DEFAULTS,
    OPTIONS_ENV,
    PARENT_ENV,
    NullRun,
    Run,
    close_workflow_run,
    git_sha,
    open_workflow_run,
    options,
    params_hash,
    start_run,
    workflow_run_name,
)
from .store import (
    INIT_ERRORS,
    SCHEMA_RACE_ERRORS,
    TRANSIENT_ERRORS,
    client,
    experiment_name,
    is_transient,
    resolve_uri,
    retry,
    setup_experiment,
    sqlite_path,
    tracking_uri,
)
from .system_metrics import SYSTEM_METRICS_INTERVAL, SYSTEM_METRICS_SAMPLES

__all__ = [
    "INIT_ERRORS",
    "JOURNAL_ENV",
    "OPTIONS_ENV",
    "OPTION_DEFAULTS",
    "PARENT_ENV",
    "SCHEMA_RACE_ERRORS",
    "SYSTEM_METRICS_INTERVAL",
    "SYSTEM_METRICS_SAMPLES",
    "TRANSIENT_ERRORS",
    "NullRun",
    "Run",
    "client",
    "close_workflow_run",
    "experiment_name",
    "git_sha",
    "is_transient",
    "open_workflow_run",
    "options",
    "params_hash",
    "resolve_uri",
    "retry",
    "setup_experiment",
    "sqlite_path",
    "start_run",
    "start_shipping",
    "stop_shipping",
    "tracking_uri",
    "workflow_run_name",
]
