"""MLflow logging. The tracking URI is explicit (params `mlflow.tracking_uri`, overridden by
MLFLOW_TRACKING_URI) and the experiment is named by MLFLOW_EXPERIMENT_NAME; the workflow creates
the experiment once (Snakemake `onstart`) before jobs fan out, but every job also finds or creates
it, so a job started without `onstart` works too.

Concurrency on SQLite (up to 8 jobs at once, one file): MLflow builds the schema of a new database
file (create_all + alembic migrations) on the first connection of each process, with no lock between
processes. Jobs racing on a new file fail with "table ... already exists", "duplicate column name",
"_alembic_tmp_* already exists" or alembic's "Online migration expected to match one row" and can
leave the file half-migrated for good. So the first connection and the experiment find-or-create
run under an inter-process file lock (keyed by the database's absolute path), and are retried on
those errors as a second line of defence; a lost experiment-creation race re-reads the experiment.
Later writes are retried on "database is locked".

Each run also logs system metrics ("system/*": CPU %, memory, disk, network, process CPU/RSS, GPU
through pynvml when installed, torch CUDA memory when CUDA is in use) from a daemon thread, with a
final sample when the body ends, so a short job still gets a point.

One Snakemake invocation is one parent run (`open_workflow_run` in `onstart`, closed in `onsuccess` /
`onerror`); its id travels to the jobs in DAEBENCH_MLFLOW_PARENT_RUN and every job's run nests under it.
Training jobs log their final checkpoint as an artifact (`checkpoint/`), and optionally register it as a
model version (`mlflow.log_checkpoints` / `mlflow.register_models`, carried in DAEBENCH_MLFLOW)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

# Transient errors of any write (matched case-insensitively in the exception chain's messages).
# SQLite raises "database is locked" once its busy timeout (MLflow sets 20 s) runs out, or at once on a
# lock-upgrade deadlock. HTTP transport errors are not listed: MLflow's REST client already retries them
# (MLFLOW_HTTP_REQUEST_MAX_RETRIES), and retrying again would multiply minutes of backoff.
TRANSIENT_ERRORS: tuple[str, ...] = (
    "database is locked", "database table is locked", "database schema is locked", "database is busy",
    "sqlite_busy", "deadlock detected", "server closed the connection unexpectedly", "lost connection to",
)
# Errors of concurrent schema creation/migration and experiment creation; retried on first connect and in
# setup_experiment only (elsewhere they are real errors).
SCHEMA_RACE_ERRORS: tuple[str, ...] = (
    "unique constraint failed", "already exists", "duplicate column name", "no such table",
    "online migration expected", "_alembic_tmp_", "can't locate revision",
)
INIT_ERRORS = TRANSIENT_ERRORS + SCHEMA_RACE_ERRORS

SYSTEM_METRICS_INTERVAL = 5.0  # seconds between samples
SYSTEM_METRICS_SAMPLES = 2  # samples averaged per logged point (one point per ~10 s)


PARENT_ENV = "DAEBENCH_MLFLOW_PARENT_RUN"  # the run id of the Snakemake invocation the job belongs to
OPTIONS_ENV = "DAEBENCH_MLFLOW"  # JSON of params.yaml's mlflow.log_checkpoints / register_models
OPTION_DEFAULTS = {"log_checkpoints": True, "register_models": False}


def options() -> dict[str, Any]:
    return {**OPTION_DEFAULTS, **json.loads(os.environ.get(OPTIONS_ENV) or "{}")}


def tracking_uri(cfg_uri: str | None = None) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or cfg_uri or "sqlite:///mlflow.db"


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _error_text(exc: BaseException) -> str:
    """Messages of ``exc`` and its causes (MLflow wraps sqlalchemy/sqlite errors), lower-cased."""
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts).lower()


def is_transient(exc: BaseException, markers: Sequence[str] = TRANSIENT_ERRORS) -> bool:
    text = _error_text(exc)
    return any(m in text for m in markers)


def retry(fn: Callable[[], T], attempts: int = 8, *, transient: Sequence[str] = TRANSIENT_ERRORS,
          max_sleep: float = 8.0) -> T:
    """Call ``fn``; on an error whose message matches ``transient`` retry with jittered exponential
    backoff (0.25 s doubling, at most ``max_sleep``), up to ``attempts`` calls. Other errors (and
    KeyboardInterrupt etc.) propagate at once."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if i == attempts - 1 or not is_transient(exc, transient):
                raise
            delay = min(max_sleep, 0.25 * 2**i) * (0.5 + random.random())
            log.info("MLflow call failed (%s); retry %d/%d in %.1fs", str(exc).splitlines()[0][:200], i + 1,
                     attempts - 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def experiment_name() -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or "daebench"


def sqlite_path(uri: str) -> Path | None:
    """Absolute path of the database file of a ``sqlite:///`` URI, else None (in-memory, other stores)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(os.path.abspath(path))


@contextlib.contextmanager
def _store_lock(uri: str, timeout: float = 120.0) -> Iterator[None]:
    """Inter-process lock around schema creation / experiment creation on a SQLite file (a flock on a
    file in the temp dir, released by the kernel if the holder dies). No-op for other stores, where
    fcntl is missing, or if the lock file cannot be opened; after ``timeout`` s of waiting it goes on
    unlocked (the retries remain)."""
    path = sqlite_path(uri)
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if path is None or fcntl is None:
        yield
        return
    key = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    lock_file = Path(tempfile.gettempdir()) / f"daebench-mlflow-{key}.lock"
    try:
        fh = open(lock_file, "a")  # noqa: SIM115 - closed by the `with fh` below
    except OSError as exc:
        log.debug("no MLflow store lock (%s); relying on retries", exc)
        yield
        return
    with fh:
        deadline, locked = time.monotonic() + timeout, False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    log.warning("waited %.0fs for the MLflow store lock %s; going on without it", timeout, lock_file)
                    break
                time.sleep(0.05 + 0.05 * random.random())
            except OSError as exc:  # e.g. a filesystem without flock
                log.debug("no MLflow store lock (%s); relying on retries", exc)
                break
        try:
            yield
        finally:
            if locked:
                fcntl.flock(fh, fcntl.LOCK_UN)


def resolve_uri(uri: str) -> str:
    """``uri`` with a relative SQLite path made absolute (against the working directory now), so that
    stores cached by URI (here and in mlflow) do not follow a later chdir."""
    path = sqlite_path(uri)
    if path is None or uri.startswith("sqlite:////"):
        return uri
    query = uri.split("?", 1)[1] if "?" in uri else None
    return f"sqlite:///{path}" + (f"?{query}" if query else "")


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def client(uri: str | None = None):
    """An MlflowClient for ``uri`` (default: tracking_uri()). Its first creation in a process opens the
    store, which creates/migrates the schema of a new SQLite file: done under the store lock and
    retried on schema races."""
    from mlflow.tracking import MlflowClient

    uri = resolve_uri(uri or tracking_uri())
    with _clients_lock:
        if uri not in _clients:
            if sqlite_path(uri) is not None:  # import outside the lock (~1 s of CPU), so it is held only briefly
                import mlflow.store.db.utils
                import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
            with _store_lock(uri):
                try:
                    _clients[uri] = retry(lambda: MlflowClient(uri), transient=INIT_ERRORS)
                except Exception as exc:
                    if "_alembic_tmp_" in _error_text(exc):
                        log.error("the MLflow database %s was left half-migrated by concurrent first connections "
                                  "(leftover _alembic_tmp_* tables); if it is new, delete it and rerun", uri)
                    raise
        return _clients[uri]


def setup_experiment(uri: str, name: str) -> str:
    """Find or create the experiment; returns its id. Safe to call from many processes at once: a lost
    creation race re-reads the experiment by name; a deleted experiment of that name is restored."""
    from mlflow.exceptions import MlflowException

    uri = resolve_uri(uri)
    c = client(uri)

    def find() -> str | None:
        exp = c.get_experiment_by_name(name)
        if exp is None:
            return None
        if exp.lifecycle_stage == "deleted":
            log.warning("MLflow experiment %r (id %s) was deleted; restoring it", name, exp.experiment_id)
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id

    def get_or_create() -> str:
        exp_id = find()
        if exp_id is not None:
            return exp_id
        try:
            return c.create_experiment(name)
        except MlflowException as exc:  # another process created it between our read and our write
            if getattr(exc, "error_code", None) == "RESOURCE_ALREADY_EXISTS" or is_transient(exc, SCHEMA_RACE_ERRORS):
                exp_id = find()
                if exp_id is not None:
                    return exp_id
            raise

    with _store_lock(uri):
        return retry(get_or_create, transient=INIT_ERRORS)


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

    def log_checkpoint(self, path: str | Path, model_name: str) -> None:
        """The final checkpoint as the artifact ``checkpoint/<file>`` and, with mlflow.register_models, as a
        new version of the registered model ``model_name`` (its source: that artifact; its tags: the run's
        params hash and dataset). Off with mlflow.log_checkpoints: false (paper-scale models take room)."""
        opts = options()
        if not opts["log_checkpoints"]:
            return
        path = Path(path)
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

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_checkpoint(self, path: str | Path, model_name: str) -> None:
        pass


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, tuple)) else v
    return out


# ----------------------------------------------------------------------------------------------- system metrics

def _process_monitor_class():
    import psutil
    from mlflow.system_metrics.metrics.base_metrics_monitor import BaseMetricsMonitor

    class ProcessMonitor(BaseMetricsMonitor):
        """This process (all jobs share the machine-wide numbers): CPU % (100 = one core), RSS, and the
        torch CUDA allocator's memory once CUDA is in use (never initialises CUDA itself)."""

        def __init__(self):
            super().__init__()
            self._proc = psutil.Process()
            self._proc.cpu_percent()  # the first call only sets the reference point

        def collect_metrics(self):
            self._metrics["process_cpu_utilization_percentage"].append(self._proc.cpu_percent())
            self._metrics["process_memory_rss_megabytes"].append(self._proc.memory_info().rss / 1e6)
            torch = sys.modules.get("torch")
            if torch is not None and torch.cuda.is_initialized():
                for i in range(torch.cuda.device_count()):
                    self._metrics[f"process_gpu_{i}_allocated_megabytes"].append(torch.cuda.memory_allocated(i) / 1e6)
                    self._metrics[f"process_gpu_{i}_reserved_megabytes"].append(torch.cuda.memory_reserved(i) / 1e6)

        def aggregate_metrics(self):
            return {k: round(sum(v) / len(v), 1) for k, v in self._metrics.items() if v}

    return ProcessMonitor


def _system_metrics_monitor(run_id: str, client, uri: str, interval: float, samples: int, resume: bool):
    """A started mlflow SystemMetricsMonitor variant: samples every ``interval`` s in a daemon thread, logs
    the mean of ``samples`` samples per point through ``client`` with retries (mlflow's own gives up on the
    first "database is locked"), does not poll the run's status, and logs a final sample on finish().
    MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL / _SAMPLES_BEFORE_LOGGING / _NODE_ID override as in mlflow."""
    import psutil
    from mlflow.entities import Metric
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    class Monitor(SystemMetricsMonitor):
        def __init__(self):
            super().__init__(run_id, sampling_interval=interval, samples_before_logging=samples,
                             resume_logging=resume, tracking_uri=uri)
            self.sampling_interval = max(0.1, float(self.sampling_interval))
            self.samples_before_logging = max(1, int(self.samples_before_logging))
            self.monitors.append(_process_monitor_class()())
            self._collected = 0
            psutil.cpu_percent()  # reference point for the first sample's CPU %

        def start(self):
            self._process = threading.Thread(target=self.monitor, daemon=True, name="SystemMetricsMonitor")
            self._process.start()

        def monitor(self):
            try:
                while not self._shutdown_event.wait(self.sampling_interval):
                    self.collect_metrics()
                    self._collected += 1
                    if self._collected >= self.samples_before_logging:
                        self.publish_metrics(self.aggregate_metrics())
            except Exception as exc:  # noqa: BLE001 - system metrics / bookkeeping must not fail the job
                log.warning("system metrics logging stopped for run %s: %s", run_id, exc)

        def publish_metrics(self, metrics):
            prefix = self._metrics_prefix + (self.node_id + "/" if self.node_id else "")
            ts = int(time.time() * 1000)
            batch = [Metric(prefix + k, float(v), ts, self._logging_step) for k, v in metrics.items()]
            for m in self.monitors:
                m.clear_metrics()
            self._collected = 0
            if batch:
                retry(lambda: client.log_batch(run_id, metrics=batch), attempts=5)
            self._logging_step += 1

        def finish(self, timeout: float = 30.0):
            if self._process is None:
                return
            self._shutdown_event.set()
            self._process.join(timeout)
            alive, self._process = self._process.is_alive(), None
            if alive:  # stuck in a write; it is a daemon thread and will not keep the process alive
                log.warning("system metrics thread of run %s did not stop within %.0fs", run_id, timeout)
                return
            try:  # the tail of the run (the whole run if it was shorter than one interval)
                self.collect_metrics()
                self.publish_metrics(self.aggregate_metrics())
            except Exception as exc:  # noqa: BLE001 - system metrics / bookkeeping must not fail the job
                log.warning("final system metrics of run %s not logged: %s", run_id, exc)

    mon = Monitor()
    mon.start()
    return mon


def _system_metrics_enabled(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    # opt-out only: mlflow's own default for this variable (False) is about mlflow.start_run()
    return os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "").strip().lower() not in ("false", "0", "no")


@contextlib.contextmanager
def start_run(*, name: str, rule: str, dataset: str, params: dict, run_id: str | None = None,
              system_metrics: bool | None = None, system_metrics_interval: float = SYSTEM_METRICS_INTERVAL,
              system_metrics_samples: int = SYSTEM_METRICS_SAMPLES) -> Iterator[Run]:
    """Start (or resume, given ``run_id``) a run tagged with git sha, params hash, rule and dataset, and log
    system metrics while the body runs (``system_metrics=False`` or MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false
    turns that off; failures there only warn). The run is marked FAILED if the body raises and stays RUNNING
    for processes that are killed."""
    import mlflow

    uri = resolve_uri(tracking_uri())
    mlflow.set_tracking_uri(uri)  # anything logging through mlflow's globals goes to the same store
    c = client(uri)
    if run_id is None:
        exp_id = setup_experiment(uri, experiment_name())
        tags = {"git_sha": git_sha(), "params_hash": params_hash(params), "rule": rule, "dataset": dataset,
                "mlflow.runName": name}
        if os.environ.get(PARENT_ENV):  # started by a workflow: nest under its run
            tags["mlflow.parentRunId"] = os.environ[PARENT_ENV]
        run_id = retry(lambda: c.create_run(exp_id, tags=tags, run_name=name)).info.run_id
        handle = Run(c, run_id)
        handle.log_params(params)
        resume = False
    else:
        retry(lambda: c.update_run(run_id, status="RUNNING"))
        handle = Run(c, run_id)
        resume = True
    monitor = None
    if _system_metrics_enabled(system_metrics):
        try:
            monitor = _system_metrics_monitor(run_id, c, uri, system_metrics_interval, system_metrics_samples, resume)
        except Exception as exc:  # noqa: BLE001 - system metrics / bookkeeping must not fail the job
            log.warning("system metrics disabled for run %s: %s", run_id, exc)
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
                log.warning("stopping system metrics of run %s failed: %s", run_id, exc)
        if status == "FINISHED":
            retry(lambda: c.set_terminated(run_id, status))
        else:  # do not mask the body's exception
            try:
                retry(lambda: c.set_terminated(run_id, status))
            except Exception as exc:  # noqa: BLE001 - system metrics / bookkeeping must not fail the job
                log.warning("could not mark run %s FAILED: %s", run_id, exc)


_workflow_runs: list[tuple[str, str | None]] = []  # (run id, the parent id it replaced in the environment)


def open_workflow_run(command: Sequence[str]) -> str:
    """Open the parent run of one Snakemake invocation and export its id (PARENT_ENV), which local and
    cluster jobs inherit, so their runs nest under it. A workflow started from inside another (the
    emergence ladder's nested runs) nests under that one's run."""
    uri = resolve_uri(tracking_uri())
    c = client(uri)
    exp_id = setup_experiment(uri, experiment_name())
    name = "workflow " + time.strftime("%Y-%m-%d %H:%M:%S")
    tags = {"rule": "workflow", "git_sha": git_sha(), "mlflow.runName": name,
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
        retry(lambda: client().set_terminated(run_id, "FINISHED" if success else "FAILED"))
    except Exception as exc:  # noqa: BLE001 - system metrics / bookkeeping must not fail the job
        log.warning("could not close the workflow's MLflow run %s: %s", run_id, exc)


def params_hash(obj) -> str:
    """A short fingerprint of a JSON-able config (runs are tagged with it; slices of job provenance)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
