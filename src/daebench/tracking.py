"""MLflow logging. The tracking URI is explicit (params `mlflow.tracking_uri`, overridden by
MLFLOW_TRACKING_URI); the experiment is created once by the `mlflow_setup` rule before jobs fan
out, and jobs log into it by id. SQLite writes from concurrent jobs are retried on lock errors."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def tracking_uri(cfg_uri: str | None = None) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or cfg_uri or "sqlite:///mlflow.db"


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def retry(fn: Callable[[], T], attempts: int = 8) -> T:
    """Retry on SQLite 'database is locked' and transient connection errors, with jittered backoff."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as exc:  # mlflow wraps sqlalchemy errors in MlflowException
            text = str(exc).lower()
            transient = any(s in text for s in ("database is locked", "busy", "connection", "timed out", "unique constraint"))
            if not transient or i == attempts - 1:
                raise
            time.sleep(min(8.0, 0.25 * 2**i) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def setup_experiment(uri: str, name: str, out: Path) -> str:
    """Create (or find) the experiment once and record its id in ``out`` for the jobs."""
    import mlflow

    mlflow.set_tracking_uri(uri)

    def get_or_create() -> str:
        exp = mlflow.get_experiment_by_name(name)
        return exp.experiment_id if exp else mlflow.create_experiment(name)

    exp_id = retry(get_or_create)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"tracking_uri": uri, "experiment": name, "experiment_id": exp_id}) + "\n")
    return exp_id


class Run:
    """Thin handle over an active MLflow run; every call retried (SQLite under concurrency)."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        batch = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items()]
        retry(lambda: self.client.log_batch(self.run_id, metrics=batch))

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
def start_run(experiment_file: Path, *, name: str, rule: str, dataset: str, params: dict, run_id: str | None = None
              ) -> Iterator[Run]:
    """Start (or resume, given ``run_id``) a run tagged with git sha, params hash, rule and dataset.
    The run is marked FAILED if the body raises and KILLED is left for runs that never return."""
    from mlflow.tracking import MlflowClient

    from .config import params_hash

    info = json.loads(Path(experiment_file).read_text())
    client = MlflowClient(tracking_uri(info["tracking_uri"]))
    if run_id is None:
        tags = {"git_sha": git_sha(), "params_hash": params_hash(params), "rule": rule, "dataset": dataset,
                "mlflow.runName": name}
        run_id = retry(lambda: client.create_run(info["experiment_id"], tags=tags, run_name=name)).info.run_id
        handle = Run(client, run_id)
        handle.log_params(params)
    else:
        retry(lambda: client.update_run(run_id, status="RUNNING"))
        handle = Run(client, run_id)
    try:
        yield handle
    except BaseException:
        retry(lambda: client.set_terminated(run_id, "FAILED"))
        raise
    retry(lambda: client.set_terminated(run_id, "FINISHED"))
