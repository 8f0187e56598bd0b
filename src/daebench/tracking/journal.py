"""MLflow through a journal: the jobs of a workflow never import MLflow.

Importing MLflow and opening its store costs a job 2-5 s of CPU (``mlflow/__init__`` pulls in pandas,
pydantic, fastapi and its GenAI modules; a SQLite store runs its alembic checks), most of the time of a
small job (a metrics or table job) and, summed over the smoke run's 231 jobs, minutes of a 2-core machine.
So a job started by the workflow writes its run as JSON lines to ``<journal>/<key>.jsonl`` (start, params,
metrics, artifacts, end), and the workflow's own process, which has MLflow loaded anyway for its parent run,
ships those lines into the store from a thread (`Shipper`, a pass every 0.2 s) and once more when the
workflow ends. The store sees one writer instead of up to 8 racing on one SQLite file.

- Run ids are MLflow's: the shipper creates the run as soon as it reads the start line and writes its id to
  ``<key>.id``, which the job waits for (a pass, typically < 0.3 s), so results record the real id.
- A job uses the journal only while a shipper for the same store is alive (``.shipper`` touched every pass
  names its store); otherwise, and outside a workflow, it logs to MLflow directly as before.
- Shipping is resumable: ``<key>.state`` records how far a file was shipped, so a shipper killed with
  Snakemake continues with the next invocation without logging a line twice. A run whose job died on this
  host without an end line is marked KILLED; a finished journal is removed.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

log = logging.getLogger("daebench.tracking")  # one logger for MLflow tracking, whichever module logs

JOURNAL_ENV = "DAEBENCH_MLFLOW_JOURNAL"  # the journal directory of the workflow the job belongs to
HEARTBEAT = ".shipper"  # JSON {"uri": store}; its mtime is the shipper's last pass
STALE_S = 15.0  # a heartbeat older than this: no shipper, log directly
INTERVAL_S = 0.2  # between shipping passes
ID_WAIT_S = 120.0  # how long a job waits for the shipper to create its run before going on without the id
METRIC_BATCH = 1000  # MLflow's per-request metric limit
PARAM_BATCH = 100  # and parameter limit


def _now_ms() -> int:
    return int(time.time() * 1000)


def live_journal(uri: str) -> Path | None:
    """The journal directory to log into, if this process was started by a workflow whose shipper is alive
    and ships to ``uri`` (the store this job would log to); else None."""
    d = os.environ.get(JOURNAL_ENV)
    if not d:
        return None
    beat = Path(d) / HEARTBEAT
    try:
        if time.time() - beat.stat().st_mtime > STALE_S:
            return None
        return Path(d) if json.loads(beat.read_text()).get("uri") == uri else None
    except (OSError, ValueError):
        return None


class JournalRun:
    """The handle of a run logged through the journal: the same methods as `runs.Run`, each one line."""

    def __init__(self, path: Path, run_id: str):
        self.path, self.run_id = path, run_id
        self._lock = threading.Lock()  # the system-metrics thread writes too

    def write(self, record: dict) -> None:
        line = json.dumps(record, default=str) + "\n"
        with self._lock, open(self.path, "a") as fh:  # one write per line: the shipper reads whole lines
            fh.write(line)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None, run_id: str | None = None) -> None:
        rec = {"metrics": {k: float(v) for k, v in metrics.items()}, "step": step or 0, "ts": _now_ms()}
        self.write({**rec, "run_id": run_id} if run_id else rec)

    def log_params(self, params: dict[str, Any]) -> None:
        from .runs import _flatten

        self.write({"params": {k: str(v)[:6000] for k, v in _flatten(params).items()}})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.write({"artifact": os.path.abspath(path), "artifact_path": artifact_path})

    def log_dict(self, obj: dict, name: str) -> None:
        self.write({"dict": obj, "name": name})

    def log_checkpoint(self, path: str | Path, model_name: str) -> None:
        from .runs import options

        self.write({"checkpoint": os.path.abspath(path), "model": model_name, "options": options()})


def open_run(journal: Path, *, experiment: str, tags: dict, run_id: str | None) -> JournalRun:
    """Start (or, given ``run_id``, resume) a run through ``journal`` and wait for its MLflow id."""
    key = uuid.uuid4().hex
    path = journal / f"{key}.jsonl"
    start = {"experiment": experiment, "tags": tags, "time": _now_ms(), "resume": run_id,
             "host": socket.gethostname(), "pid": os.getpid()}
    run = JournalRun(path, run_id or key)
    run.write({"start": start})
    if run_id is None:
        id_file, deadline = journal / f"{key}.id", time.monotonic() + ID_WAIT_S
        while not id_file.exists():
            if time.monotonic() > deadline:
                log.warning("the workflow's MLflow shipper did not create run %s within %.0f s; its results "
                            "name the journal key (tag daebench.journal_key) instead of the run id", key, ID_WAIT_S)
                return run
            time.sleep(0.02)
        run.run_id = id_file.read_text().strip()
    return run


# --- the shipper (the workflow's process) -----------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _File:
    """One journal file being shipped: its run id and how many bytes of it are in the store."""

    def __init__(self, path: Path):
        self.path, self.state_path = path, path.with_suffix(".state")
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self.offset, self.run_id, self.start = state.get("offset", 0), state.get("run_id"), state.get("start")

    def save(self) -> None:
        tmp = self.state_path.with_suffix(".state.tmp")
        tmp.write_text(json.dumps({"offset": self.offset, "run_id": self.run_id, "start": self.start}))
        os.replace(tmp, self.state_path)

    def remove(self) -> None:
        for p in (self.path, self.state_path, self.path.with_suffix(".id")):
            p.unlink(missing_ok=True)


def ship(journal: Path, uri: str, *, final: bool = False) -> int:
    """Ship every complete new line of ``journal``'s files into the store at ``uri``; returns the number of
    lines shipped. ``final``: also close the runs whose job died on this host without an end line."""
    shipped = 0
    for path in sorted(journal.glob("*.jsonl")):
        try:
            shipped += _ship_file(_File(path), uri, final)
        except Exception as exc:  # noqa: BLE001 - a bad journal must not stop the others (or the workflow)
            log.warning("MLflow journal %s not shipped: %s", path, exc)
    return shipped


def _ship_file(f: _File, uri: str, final: bool) -> int:
    from mlflow.entities import Metric, Param

    from .runs import Run
    from .store import client, log_batch, retry, setup_experiment

    with open(f.path, "rb") as fh:
        fh.seek(f.offset)
        data = fh.read()
    end = data.rfind(b"\n") + 1  # whole lines only: the job may be writing the next one
    lines = data[:end].splitlines()
    c = client(uri)
    metrics: dict[str, list] = {}  # by the run they go to: this file's, or another named by the line

    def flush_metrics():
        for run_id, batch in metrics.items():
            for i in range(0, len(batch), METRIC_BATCH):
                if not log_batch(c, f.run_id, batch[i:i + METRIC_BATCH], onto=run_id):
                    break  # that other run is not in this store: one warning, the rest of its lines dropped
        metrics.clear()

    ended = False
    for line in lines:
        rec = json.loads(line)
        if "start" in rec:
            s = f.start = rec["start"]
            if s["resume"]:
                f.run_id = s["resume"]
                retry(partial(c.update_run, f.run_id, status="RUNNING"))
            else:
                exp_id = setup_experiment(uri, s["experiment"])
                tags = {**s["tags"], "daebench.journal_key": f.path.stem}
                f.run_id = retry(partial(c.create_run, exp_id, start_time=s["time"], tags=tags,
                                         run_name=tags.get("mlflow.runName"))).info.run_id
                id_tmp = f.path.with_suffix(".id.tmp")
                id_tmp.write_text(f.run_id)
                os.replace(id_tmp, f.path.with_suffix(".id"))  # the job is waiting for this
        elif "metrics" in rec:
            metrics.setdefault(rec.get("run_id"), []).extend(Metric(k, v, rec["ts"], rec["step"])
                                                             for k, v in rec["metrics"].items())
            continue  # consecutive metric lines go in one request
        else:
            flush_metrics()
            run = Run(c, f.run_id)
            if "params" in rec:
                batch = [Param(k, v) for k, v in rec["params"].items()]
                for i in range(0, len(batch), PARAM_BATCH):
                    retry(lambda chunk=batch[i:i + PARAM_BATCH]: c.log_batch(f.run_id, params=chunk))
            elif "artifact" in rec:
                if os.path.exists(rec["artifact"]):
                    run.log_artifact(rec["artifact"], rec["artifact_path"])
                else:
                    log.warning("artifact %s of run %s is gone; not logged", rec["artifact"], f.run_id)
            elif "dict" in rec:
                run.log_dict(rec["dict"], rec["name"])
            elif "checkpoint" in rec:
                run.log_checkpoint(rec["checkpoint"], rec["model"], opts=rec["options"])
            elif "end" in rec:
                retry(partial(c.set_terminated, f.run_id, rec["end"], end_time=rec["ts"]))
                ended = True
    flush_metrics()
    if lines:
        f.offset += end
        f.save()
    if ended:
        f.remove()
    elif final and f.start and f.start["host"] == socket.gethostname() and not _pid_alive(f.start["pid"]):
        retry(lambda: c.set_terminated(f.run_id, "KILLED"))  # its job died without an end line
        log.warning("MLflow run %s: its job (pid %s) died without finishing; marked KILLED", f.run_id,
                    f.start["pid"])
        f.remove()
    return len(lines)


class Shipper:
    """Ships ``journal`` into the store at ``uri`` from a daemon thread while the workflow runs."""

    def __init__(self, journal: Path, uri: str, interval: float = INTERVAL_S):
        self.journal, self.uri, self.interval = Path(journal), uri, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Start shipping; False (and nothing started) when another process already ships this journal."""
        import fcntl

        self.journal.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.journal / ".lock", "a")  # noqa: SIM115 - held until stop(); the kernel frees it
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            return False
        ship(self.journal, self.uri, final=True)  # what a killed invocation left
        (self.journal / HEARTBEAT).write_text(json.dumps({"uri": self.uri, "pid": os.getpid()}))
        self._thread = threading.Thread(target=self._loop, daemon=True, name="daebench-mlflow-shipper")
        self._thread.start()
        return True

    def _loop(self) -> None:
        beat = self.journal / HEARTBEAT
        while not self._stop.is_set():
            try:
                os.utime(beat)
            except OSError:
                pass
            ship(self.journal, self.uri)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        """Stop the thread, ship what is left and close runs of dead jobs; jobs started later log directly."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
        (self.journal / HEARTBEAT).unlink(missing_ok=True)
        ship(self.journal, self.uri, final=True)
        self._lock.close()


_shippers: list[tuple[Shipper | None, str | None]] = []  # (shipper, the journal it replaced in the environment)


def start_shipping(uri: str, journal: Path = Path(".daebench/mlflow-journal")) -> None:
    """Called when a workflow starts (after its parent run is open): ship the journal in the working
    directory and point the workflow's jobs at it. Nests like the parent runs (an inner workflow in another
    directory has its own journal)."""
    shipper = Shipper(Path(journal).resolve(), uri)
    started = shipper.start()
    _shippers.append((shipper if started else None, os.environ.get(JOURNAL_ENV)))
    os.environ[JOURNAL_ENV] = str(shipper.journal)
    if not started:
        log.warning("another process ships the MLflow journal %s; this workflow's jobs use it", shipper.journal)


def stop_shipping() -> None:
    """Called when the workflow ends: ship the rest, mark runs of dead jobs KILLED, restore the environment."""
    if not _shippers:
        return
    shipper, outer = _shippers.pop()
    if shipper is not None:
        try:
            shipper.stop()
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not change the workflow's exit status
            log.warning("shipping the MLflow journal %s failed: %s", shipper.journal, exc)
    if outer is None:
        os.environ.pop(JOURNAL_ENV, None)
    else:
        os.environ[JOURNAL_ENV] = outer
