"""MLflow runs: a job's run (``start_run``: tagged, params logged, system metrics sampled, marked FINISHED or
FAILED), its handle (``Run``; ``NullRun`` for the ranks of a torchrun job other than 0), the parent run of one
Snakemake invocation (``open_workflow_run`` / ``close_workflow_run``) and the params hash runs are tagged with."""
from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import system_metrics as sysmetrics  # start_run's argument system_metrics is a flag
from .journal import live_journal, open_run
from .store import client, experiment_name, log_batch, resolve_uri, retry, setup_experiment, tracking_uri
from .system_metrics import SYSTEM_METRICS_INTERVAL, SYSTEM_METRICS_SAMPLES

log = logging.getLogger("daebench.tracking")  # one logger for MLflow tracking, whichever module logs


PARENT_ENV = "DAEBENCH_MLFLOW_PARENT_RUN"  # the run id of the Snakemake invocation the job belongs to
OPTIONS_ENV = "DAEBENCH_MLFLOW"  # JSON of params.yaml's mlflow.log_checkpoints / register_models
OPTION_DEFAULTS = {"log_checkpoints": False, "register_models": False}


def options() -> dict[str, Any]:
    return {**OPTION_DEFAULTS, **json.loads(os.environ.get(OPTIONS_ENV) or "{}")}


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Run:
    """Thin handle over an active MLflow run; every call retried (SQLite under concurrency)."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None, run_id: str | None = None) -> None:
        """``run_id``: onto another run (an evaluation's numbers onto the training run they measure)."""
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        batch = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items()]
        log_batch(self.client, self.run_id, batch, onto=run_id)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        batch = [Param(k, str(v)[:6000]) for k, v in _flatten(params).items()]
        for i in range(0, len(batch), 100):  # MLflow's per-request parameter limit
            chunk = batch[i:i + 100]
            retry(lambda chunk=chunk: self.client.log_batch(self.run_id, params=chunk))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        retry(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def log_dict(self, obj: dict, name: str) -> None:
        retry(lambda: self.client.log_dict(self.run_id, obj, name))

    def log_checkpoint(self, path: str | Path, model_name: str, opts: dict | None = None) -> None:
        """Point the run at its final checkpoint, stored once: the file the workflow keeps (and DVC tracks)
        is named in the tags ``checkpoint.path`` (relative to the project when inside it) and
        ``checkpoint.sha256``. With mlflow.log_checkpoints it is also copied into the artifact store
        (``checkpoint/<file>``: for a remote tracking server that cannot see the project), and with
        mlflow.register_models it becomes a new version of the registered model ``model_name``, whose
        source is that artifact (its tags: the run's params hash and dataset).
        ``opts``: those options as the job had them (the journal's shipper), else this process's."""
        opts = opts or options()
        path = Path(path)
        shown = os.path.relpath(path) if path.is_absolute() and path.resolve().is_relative_to(Path.cwd()) else str(path)
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        retry(lambda: self.client.set_tag(self.run_id, "checkpoint.path", shown))
        retry(lambda: self.client.set_tag(self.run_id, "checkpoint.sha256", digest.hexdigest()))
        if not (opts["log_checkpoints"] or opts["register_models"]):
            return
        self.log_artifact(path, "checkpoint")
        if not opts["register_models"]:
            return
        from mlflow.exceptions import MlflowException

        run = retry(lambda: self.client.get_run(self.run_id))
        try:
            retry(lambda: self.client.create_registered_model(model_name))
        except MlflowException as err:
            if "already exists" not in str(err).lower():
                raise
        tags = {k: run.data.tags[k] for k in ("params_hash", "dataset", "git_sha") if k in run.data.tags}
        source = f"{run.info.artifact_uri}/checkpoint/{path.name}"
        retry(lambda: self.client.create_model_version(model_name, source, run_id=self.run_id, tags=tags))


class NullRun:
    """A run handle that logs nothing: for the processes of a torchrun job other than rank 0."""

    run_id = None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None, run_id: str | None = None) -> None:
        pass

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_checkpoint(self, path: str | Path, model_name: str) -> None:
        pass


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _job_log() -> Path | None:
    """The log file this job's stderr goes to (a rule's ``> {log} 2>&1``), attached to its run as ``log/``."""
    try:
        path = Path(os.readlink("/proc/self/fd/2"))
    except OSError:  # not Linux, or stderr is not a file
        return None
    return path if path.suffix == ".log" and path.is_file() else None


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, tuple)) else v
    return out


@contextlib.contextmanager
def start_run(*, name: str, rule: str, dataset: str, params: dict, run_id: str | None = None,
              system_metrics: bool | None = None, system_metrics_interval: float = SYSTEM_METRICS_INTERVAL,
              system_metrics_samples: int = SYSTEM_METRICS_SAMPLES, tags: dict | None = None) -> Iterator[Run]:
    """Start (or resume, given ``run_id``) a run tagged with git sha, params hash, rule and dataset, and log
    system metrics while the body runs (``system_metrics=False`` or MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false
    turns that off; failures there only warn). The run is marked FAILED if the body raises and stays RUNNING
    for processes that are killed (KILLED once the workflow's shipper sees the process gone). Inside a
    workflow the run goes through its journal (journal.py: no MLflow import in the job); elsewhere directly.
    ``tags``: more tags of a new run (an evaluation's ``daebench.training_run_id``)."""
    uri = resolve_uri(tracking_uri())
    extra_tags, tags = tags or {}, None
    if run_id is None:
        sha = git_sha()  # also under MLflow's own key, which the UI shows as the run's source commit
        tags = {"git_sha": sha, "mlflow.source.git.commit": sha, "mlflow.source.type": "LOCAL",
                "mlflow.source.name": f"daebench {rule}", "mlflow.user": _user(), "params_hash": params_hash(params),
                "rule": rule, "dataset": dataset, "mlflow.runName": name, **{k: str(v) for k, v in extra_tags.items()}}
        if os.environ.get(PARENT_ENV):  # started by a workflow: nest under its run
            tags["mlflow.parentRunId"] = os.environ[PARENT_ENV]
    journal = live_journal(uri)
    if journal is not None:
        handle = open_run(journal, experiment=experiment_name(), tags=tags, run_id=run_id)
        if run_id is None:
            handle.log_params(params)
            handle.log_dict(params, "config.json")

        def close(status: str) -> None:
            handle.write({"end": status, "ts": int(time.time() * 1000)})
    else:
        import mlflow

        mlflow.set_tracking_uri(uri)  # anything logging through mlflow's globals goes to the same store
        c = client(uri)
        if run_id is None:
            exp_id = setup_experiment(uri, experiment_name())
            run_id = retry(lambda: c.create_run(exp_id, tags=tags, run_name=name)).info.run_id
            handle = Run(c, run_id)
            handle.log_params(params)
            handle.log_dict(params, "config.json")
        else:
            retry(lambda: c.update_run(run_id, status="RUNNING"))
            handle = Run(c, run_id)

        def close(status: str) -> None:
            retry(lambda: c.set_terminated(handle.run_id, status))
    monitor = None
    if sysmetrics.enabled(system_metrics):
        try:
            monitor = sysmetrics.Sampler(handle, system_metrics_interval, system_metrics_samples)
        except Exception as exc:  # noqa: BLE001 - system metrics / bookkeeping must not fail the job
            log.warning("system metrics disabled for run %s: %s", handle.run_id, exc)
    status = "FINISHED"
    try:
        yield handle
    except BaseException:
        status = "FAILED"
        raise
    finally:
        if monitor is not None:
            try:
                monitor.finish()
            except Exception as exc:  # noqa: BLE001 - system metrics / bookkeeping must not fail the job
                log.warning("stopping system metrics of run %s failed: %s", handle.run_id, exc)
        if (job_log := _job_log()) is not None:
            try:
                handle.log_artifact(job_log, "log")
            except Exception as exc:  # noqa: BLE001 - system metrics / bookkeeping must not fail the job
                log.warning("could not attach the job log %s to run %s: %s", job_log, handle.run_id, exc)
        if status == "FINISHED":
            close(status)
        else:  # do not mask the body's exception
            try:
                close(status)
            except Exception as exc:  # noqa: BLE001 - system metrics / bookkeeping must not fail the job
                log.warning("could not mark run %s FAILED: %s", handle.run_id, exc)


_workflow_runs: list[tuple[str, str | None]] = []  # (run id, the parent id it replaced in the environment)


def workflow_run_name(targets: Sequence[str], limit: int = 80) -> str:
    """The parent run's name: the invocation's targets (``snakemake results/table4.csv``), so the runs
    list tells invocations apart; long lists end in "+N more"."""
    name, shown = "snakemake", 0
    for target in targets:
        if len(name) + 1 + len(target) > limit:
            break
        name, shown = f"{name} {target}", shown + 1
    rest = len(targets) - shown
    return name + (f" +{rest} more" if rest else "")


def open_workflow_run(command: Sequence[str], targets: Sequence[str] = ()) -> str:
    """Open the parent run of one Snakemake invocation, named by its ``targets``, and export its id
    (PARENT_ENV), which local and cluster jobs inherit, so their runs nest under it. A workflow started
    from inside another (the emergence ladder's nested runs) nests under that one's run."""
    uri = resolve_uri(tracking_uri())
    c = client(uri)
    exp_id = setup_experiment(uri, experiment_name())
    name = workflow_run_name(list(targets) or ["(default target)"])
    sha = git_sha()
    tags = {"rule": "workflow", "git_sha": sha, "mlflow.source.git.commit": sha, "mlflow.runName": name,
            "command": " ".join(command)[:5000], "cwd": os.getcwd()}
    outer = os.environ.get(PARENT_ENV)
    if outer:
        tags["mlflow.parentRunId"] = outer
    run_id = retry(lambda: c.create_run(exp_id, tags=tags, run_name=name)).info.run_id
    _workflow_runs.append((run_id, outer))
    os.environ[PARENT_ENV] = run_id
    return run_id


def close_workflow_run(success: bool) -> None:
    """Mark the invocation's parent run FINISHED or FAILED and restore the environment. Bookkeeping only:
    a failure here is a warning, never the workflow's exit status."""
    if not _workflow_runs:
        return
    run_id, outer = _workflow_runs.pop()
    if outer is None:
        os.environ.pop(PARENT_ENV, None)
    else:
        os.environ[PARENT_ENV] = outer
    try:
        c = client()
        run = retry(lambda: c.get_run(run_id))
        children = retry(lambda: c.search_runs([run.info.experiment_id], max_results=1,
                                               filter_string=f"tags.mlflow.parentRunId = '{run_id}'"))
        if not children:  # an invocation whose jobs log no run (claims, the report): no empty parent in the list
            retry(lambda: c.delete_run(run_id))
            return
        retry(lambda: c.set_terminated(run_id, "FINISHED" if success else "FAILED"))
    except Exception as exc:  # noqa: BLE001 - system metrics / bookkeeping must not fail the job
        log.warning("could not close the workflow's MLflow run %s: %s", run_id, exc)


def params_hash(obj) -> str:
    """A short fingerprint of a JSON-able config (runs are tagged with it; slices of job provenance)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
