"""The MLflow store: its URI, one cached client per store, the experiment, and the retries and the
inter-process lock that make concurrent jobs safe on one SQLite file.

Concurrency on SQLite (up to 8 jobs at once, one file): MLflow builds the schema of a new database
file (create_all + alembic migrations) on the first connection of each process, with no lock between
processes. Jobs racing on a new file fail with "table ... already exists", "duplicate column name",
"_alembic_tmp_* already exists" or alembic's "Online migration expected to match one row" and can
leave the file half-migrated for good. So the first connection and the experiment find-or-create
run under an inter-process file lock (keyed by the database's absolute path), and are retried on
those errors as a second line of defence; a lost experiment-creation race re-reads the experiment.
Later writes are retried on "database is locked"."""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger("daebench.tracking")  # one logger for MLflow tracking, whichever module logs
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
EXPERIMENT_KIND = "mlflow.experimentKind"  # read by the MLflow UI to pick its runs view over its GenAI one


def tracking_uri(cfg_uri: str | None = None) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or cfg_uri or "sqlite:///mlflow.db"


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


def log_batch(c, own_run: str, metrics: list, onto: str | None = None) -> bool:
    """Log ``metrics`` (mlflow Metric objects) onto ``own_run``, or onto ``onto`` where it names another run (an
    evaluation's numbers onto the training run they measure). The other run is best effort: it may be in
    another store (a model trained under another tracking URI, or pulled with `dvc pull` from a colleague's
    run), and then the numbers stay on the caller's own run only; one warning, no failed job, no journal
    retried forever. False when that run is not there."""
    from mlflow.exceptions import MlflowException

    if not onto or onto == own_run:
        retry(lambda: c.log_batch(own_run, metrics=metrics))
        return True
    try:
        retry(lambda: c.log_batch(onto, metrics=metrics))
        return True
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        log.warning("MLflow run %s is not in this store (%s): the evaluation's metrics stay on its own run only",
                    onto, str(exc).splitlines()[0][:120])
        return False


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
            # the tag the MLflow UI reads for an experiment's view (3.17 also has a global GenAI / Model training
            # switch, set by ?workflowType=machine_learning in the URL: docs/running.md)
            return c.create_experiment(name, tags={EXPERIMENT_KIND: "custom_model_development"})
        except MlflowException as exc:  # another process created it between our read and our write
            if getattr(exc, "error_code", None) == "RESOURCE_ALREADY_EXISTS" or is_transient(exc, SCHEMA_RACE_ERRORS):
                exp_id = find()
                if exp_id is not None:
                    return exp_id
            raise

    with _store_lock(uri):
        exp_id = retry(get_or_create, transient=INIT_ERRORS)
    _warn_if_artifacts_elsewhere(c, exp_id, uri)
    return exp_id


def foreign_artifact_root(location: str, uri: str) -> Path | None:
    """The folder outside this SQLite store's project where an experiment keeps its artifacts, or None. MLflow
    stores an experiment's artifact location as an absolute path (resolve_uri_if_local), so a project copied or
    moved with its mlflow.db keeps writing run artifacts into the original's folder."""
    db = sqlite_path(uri)
    if db is None or not location or "://" in location.replace("file://", "", 1):
        return None
    where = Path(location.removeprefix("file://"))
    return None if where.is_relative_to(db.parent) else where


def _warn_if_artifacts_elsewhere(c, exp_id: str, uri: str) -> None:
    try:
        where = foreign_artifact_root(c.get_experiment(exp_id).artifact_location, uri)
    except Exception:  # noqa: BLE001 - a warning's check must not fail the workflow
        return
    if where is not None:
        log.warning("MLflow experiment %r keeps its artifacts in %s, outside this project (%s was copied or moved "
                    "with it); new runs' artifacts would go there. For a fresh experiment here: set mlflow.experiment "
                    "(or MLFLOW_EXPERIMENT_NAME) to a new name", experiment_name(), where, sqlite_path(uri).parent)
