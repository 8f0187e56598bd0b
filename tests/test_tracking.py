"""MLflow tracking: retry() matching, 8 jobs racing on one new SQLite store (schema + experiment
creation, no prior setup) with system metrics, and a real training job logging to a real `mlflow server`."""
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from daebench import tracking

ROOT = Path(__file__).resolve().parents[1]
N_JOBS, N_STEPS = 8, 20


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


# --------------------------------------------------------------------------------------------------- retry()

class _Fails:
    def __init__(self, exc, times):
        self.exc, self.times, self.calls = exc, times, 0

    def __call__(self):
        self.calls += 1
        if self.calls <= self.times:
            raise self.exc
        return "ok"


@pytest.fixture
def no_sleep(monkeypatch):
    monkeypatch.setattr(tracking.store.time, "sleep", lambda s: None)


def test_retry_transient_then_success(no_sleep):
    fn = _Fails(RuntimeError("(sqlite3.OperationalError) database is locked"), 3)
    assert tracking.retry(fn) == "ok" and fn.calls == 4


def test_retry_matches_wrapped_cause(no_sleep):
    from mlflow.exceptions import MlflowException

    try:
        try:
            raise RuntimeError("sqlite3.OperationalError: database is locked")
        except RuntimeError as inner:
            raise MlflowException("SQLAlchemy database error") from inner
    except MlflowException as exc:
        wrapped = exc
    fn = _Fails(wrapped, 1)
    assert tracking.retry(fn) == "ok" and fn.calls == 2


def test_retry_raises_other_errors_at_once(no_sleep):
    fn = _Fails(ValueError("Changing param values is not allowed"), 5)
    with pytest.raises(ValueError):
        tracking.retry(fn)
    assert fn.calls == 1
    # schema-race errors are only transient where asked for (first connection, experiment creation)
    race = _Fails(RuntimeError("(sqlite3.OperationalError) table _alembic_tmp_experiments already exists"), 2)
    with pytest.raises(RuntimeError):
        tracking.retry(race)
    assert race.calls == 1
    race.calls = 0
    assert tracking.retry(race, transient=tracking.INIT_ERRORS) == "ok" and race.calls == 3


def test_retry_gives_up_after_attempts(no_sleep):
    fn = _Fails(RuntimeError("database is locked"), 100)
    with pytest.raises(RuntimeError, match="locked"):
        tracking.retry(fn, attempts=3)
    assert fn.calls == 3


def test_retry_does_not_swallow_keyboard_interrupt(no_sleep):
    fn = _Fails(KeyboardInterrupt(), 1)
    with pytest.raises(KeyboardInterrupt):
        tracking.retry(fn)
    assert fn.calls == 1


# ------------------------------------------------------------------------------------- in-process start_run

@pytest.fixture
def default_store(tmp_path, monkeypatch):
    """No MLFLOW_TRACKING_URI: the default sqlite:///mlflow.db, relative to the working directory."""
    from mlflow.tracking._tracking_service import utils

    for k in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(k)
    monkeypatch.setattr(utils, "_tracking_uri", utils._tracking_uri)  # restored after start_run sets it
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_failed_body_default_uri_system_metrics(default_store):
    from mlflow.tracking import MlflowClient

    with pytest.raises(ZeroDivisionError), tracking.start_run(
            name="boom", rule="unit", dataset="d", params={"a": 1}, system_metrics_interval=0.1,
            system_metrics_samples=1) as run:
        run.log_metrics({"x": 1.0}, step=1)
        time.sleep(0.5)
        raise ZeroDivisionError
    assert not any(t.name == "SystemMetricsMonitor" and t.is_alive() for t in threading.enumerate())
    r = MlflowClient(default_store).get_run(run.run_id)  # the default store got the run and its system metrics
    assert r.info.status == "FAILED"
    assert len(MlflowClient(default_store).get_metric_history(run.run_id, "system/cpu_utilization_percentage")) >= 3


def test_jobs_nest_under_the_workflow_run_with_their_checkpoints(default_store, monkeypatch, tmp_path):
    """What the workflow's onstart/onsuccess hooks do around two jobs: both runs nest under the invocation's
    parent run, each holds its checkpoint artifact and a registered model version; a nested workflow (the
    emergence ladder's) nests under the outer one, and closing restores the environment."""
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    monkeypatch.setenv(tracking.OPTIONS_ENV, json.dumps({"log_checkpoints": True, "register_models": True}))
    parent = tracking.open_workflow_run(["snakemake", "--cores", "8", "results/table4.csv"], ["results/table4.csv"])
    assert os.environ[tracking.PARENT_ENV] == parent
    inner = tracking.open_workflow_run(["snakemake", "inner"], ["inner"])
    with tracking.start_run(name="i", rule="train", dataset="d", params={}, system_metrics=False) as run:
        pass
    assert MlflowClient(default_store).get_run(run.run_id).data.tags["mlflow.parentRunId"] == inner
    tracking.close_workflow_run(success=False)
    assert os.environ[tracking.PARENT_ENV] == parent
    empty = tracking.open_workflow_run(["snakemake", "results/claims.csv"], ["results/claims.csv"])
    tracking.close_workflow_run(success=True)  # its jobs logged no run: no parent left in the runs list
    assert MlflowClient(default_store).get_run(empty).info.lifecycle_stage == "deleted"
    runs = []
    for name in ("a", "b"):
        ckpt = tmp_path / f"{name}.pt"
        ckpt.write_bytes(name.encode() * 100)
        with tracking.start_run(name=name, rule="train", dataset="d", params={"n": name}, system_metrics=False) as run:
            run.log_checkpoint(ckpt, f"d-{name}-main")
        runs.append(run.run_id)
    tracking.close_workflow_run(success=True)
    assert tracking.PARENT_ENV not in os.environ
    c = MlflowClient(default_store)
    assert c.get_run(parent).info.status == "FINISHED" and c.get_run(parent).data.tags["rule"] == "workflow"
    assert c.get_run(parent).info.run_name == "snakemake results/table4.csv"
    assert c.get_run(parent).info.lifecycle_stage == "active"
    assert c.get_run(inner).info.status == "FAILED" and c.get_run(inner).data.tags["mlflow.parentRunId"] == parent
    for run_id, name in zip(runs, ("a", "b")):
        assert c.get_run(run_id).data.tags["mlflow.parentRunId"] == parent
        assert [f.path for f in c.list_artifacts(run_id, "checkpoint")] == [f"checkpoint/{name}.pt"]  # copied: opted in
        (version,) = c.search_model_versions(f"name='d-{name}-main'")
        assert version.run_id == run_id and version.source.endswith(f"checkpoint/{name}.pt")
        assert version.tags["params_hash"] == c.get_run(run_id).data.tags["params_hash"]
    # by default the checkpoint is stored once: the run names the file and its hash, nothing is copied
    monkeypatch.delenv(tracking.OPTIONS_ENV)
    monkeypatch.chdir(tmp_path)
    with tracking.start_run(name="c", rule="train", dataset="d", params={}, system_metrics=False) as run:
        run.log_checkpoint(tmp_path / "a.pt", "d-c-main")
    tags = c.get_run(run.run_id).data.tags
    assert [a.path for a in c.list_artifacts(run.run_id)] == ["config.json"] and "mlflow.parentRunId" not in tags
    assert tags["checkpoint.path"] == "a.pt"
    assert tags["checkpoint.sha256"] == hashlib.sha256(b"a" * 100).hexdigest()
    assert c.search_model_versions("name='d-c-main'") == []


def test_workflow_run_names_list_the_targets():
    assert tracking.workflow_run_name(["results/table4.csv"]) == "snakemake results/table4.csv"
    name = tracking.workflow_run_name([f"results/dbae/table{i}.csv" for i in range(1, 10)])
    assert name.startswith("snakemake results/dbae/table1.csv results/dbae/table2.csv") and name.endswith(" more")
    assert len(name) <= 90 and name.split()[-2] == f"+{9 - (len(name.split()) - 3)}"


def test_system_metrics_failure_only_warns(default_store, monkeypatch, caplog):
    from mlflow.tracking import MlflowClient

    def broken(*a, **k):
        raise RuntimeError("no psutil here")

    monkeypatch.setattr(tracking.system_metrics, "Sampler", broken)
    with caplog.at_level("WARNING", logger="daebench.tracking"), \
            tracking.start_run(name="ok", rule="unit", dataset="d", params={}) as run:
        run.log_metrics({"x": 1.0})
    r = MlflowClient(default_store).get_run(run.run_id)
    assert r.info.status == "FINISHED" and not any(k.startswith("system/") for k in r.data.metrics)
    assert "system metrics disabled" in caplog.text


def test_system_metrics_publish_failure_only_warns(default_store, caplog):
    """A store that rejects the system metrics (here: a closed run) stops the sampler with a warning."""
    from mlflow.tracking import MlflowClient

    with caplog.at_level("WARNING", logger="daebench.tracking"):
        with tracking.start_run(name="ok", rule="unit", dataset="d", params={}, system_metrics=False) as run:
            pass
        mon = tracking.system_metrics.Sampler(tracking.Run(tracking.client(default_store), "no-such-run"), 0.05, 1)
        time.sleep(0.3)
        mon.finish()
    assert "system metrics" in caplog.text
    assert MlflowClient(default_store).get_run(run.run_id).info.status == "FINISHED"


# ------------------------------------------------------------------------------------ 8 jobs, one new sqlite

WORKER = r'''
import json, sys, time
from pathlib import Path
i, tmp = int(sys.argv[1]), Path(sys.argv[2])
from daebench import tracking          # imports done before the barrier: all jobs hit the store together
import mlflow.tracking, mlflow.entities  # noqa: F401
(tmp / f"ready.{i}").touch()
while not (tmp / "go").exists():
    time.sleep(0.01)
# odd jobs sample system metrics every 0.3 s; even ones keep the default (5 s): only the final sample
kw = {"system_metrics_interval": 0.3, "system_metrics_samples": 1} if i % 2 else {}
with tracking.start_run(name=f"job{i}", rule="unit", dataset="digits",
                        params={"i": i, "train": {"lr": 1e-3, "sizes": [1, 2]}}, **kw) as run:
    for s in range(20):
        run.log_metrics({"loss": 1.0 / (s + 1), "acc": s / 20}, step=s)
        time.sleep(0.05)
    art = tmp / f"artifact{i}.txt"
    art.write_text(f"job {i}\n")
    run.log_artifact(art)
    if i % 2:
        time.sleep(1.0)
print(json.dumps({"run_id": run.run_id}))
'''


def test_concurrent_jobs_on_fresh_sqlite(tmp_path):
    from mlflow.tracking import MlflowClient

    from daebench.tracking import params_hash

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    env = _env(MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME="concurrent")
    procs = [subprocess.Popen([sys.executable, str(script), str(i), str(tmp_path)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(N_JOBS)]
    try:
        deadline = time.time() + 120
        while len(list(tmp_path.glob("ready.*"))) < N_JOBS:
            assert time.time() < deadline, "workers did not start"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs if p.poll() is not None]
            time.sleep(0.05)
        assert not db.exists()  # nobody has touched the store yet: every job races on the first connection
        (tmp_path / "go").touch()
        outs = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-4000:]
    run_ids = [json.loads(out.strip().splitlines()[-1])["run_id"] for out, _ in outs]
    assert len(set(run_ids)) == N_JOBS

    client = MlflowClient(uri)
    exps = [e for e in client.search_experiments() if e.name == "concurrent"]
    assert len(exps) == 1  # the creation race ended in one experiment
    runs = client.search_runs([exps[0].experiment_id], max_results=100)
    assert sorted(r.info.run_id for r in runs) == sorted(run_ids)
    for r in runs:
        i = int(r.data.params["i"])
        params = {"i": i, "train": {"lr": 1e-3, "sizes": [1, 2]}}
        assert r.info.status == "FINISHED"
        assert r.info.run_name == f"job{i}"
        assert r.data.params["train.lr"] == "0.001" and r.data.params["train.sizes"] == "[1, 2]"
        tags = r.data.tags
        assert tags["rule"] == "unit" and tags["dataset"] == "digits"
        assert tags["params_hash"] == params_hash(params) and tags["git_sha"]
        loss = client.get_metric_history(r.info.run_id, "loss")
        assert sorted(m.step for m in loss) == list(range(N_STEPS))  # no point lost to "database is locked"
        assert len(client.get_metric_history(r.info.run_id, "acc")) == N_STEPS
        assert [a.path for a in client.list_artifacts(r.info.run_id)] == [f"artifact{i}.txt", "config.json"]
        system = {k for k in r.data.metrics if k.startswith("system/")}
        assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
                "system/process_memory_rss_megabytes"} <= system, system
        cpu = client.get_metric_history(r.info.run_id, "system/cpu_utilization_percentage")
        assert len(cpu) >= (3 if i % 2 else 1), (i, len(cpu))  # sampled while running / final sample
        assert len({m.step for m in cpu}) == len(cpu)


# -------------------------------------------------------------------------------------- real mlflow server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    logf = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "mlartifacts")],
        cwd=tmp_path, env=_env(), stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited ({proc.returncode}):\n{(tmp_path / 'server.log').read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"mlflow server not healthy in 60 s:\n{(tmp_path / 'server.log').read_text()[-4000:]}")
            time.sleep(0.5)
        yield url
    finally:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        logf.close()


TRAIN_CFG = {"dataset": "digits",
             "method": {"family": "dae", "prediction": "v", "phases": [{"name": "p1", "t": "one", "fraction": 1.0}]},
             "nets": {"z_dim": 8,
                      "decoder": {"model_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
                                  "attention_resolutions": [], "dropout": 0.0},
                      "encoder": {"model_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
                                  "attention_resolutions": []}},
             "train": {"examples": 640, "batch_size": 32, "lr": 0.0005, "warmup_examples": 64, "ema_decay": 0.99,
                       "checkpoint_every": 10, "log_every": 5, "seed": 0, "device": "cpu"}}


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_train_logs_to_mlflow_server(tmp_path, mlflow_server):
    from mlflow.tracking import MlflowClient

    env = _env(MLFLOW_TRACKING_URI=mlflow_server, MLFLOW_EXPERIMENT_NAME="servertest")
    data_cfg = {"dataset": "digits", "data": {"seed": 0, "test_fraction": 0.2, "max_train": 64, "max_test": 16,
                                              "download_dir": str(tmp_path / "dl"), "base_url": None}}

    def cli(*args):
        p = subprocess.run([sys.executable, "-m", "daebench", *args], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=150, check=False)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
        return p

    cli("prepare-data", "--cfg", json.dumps(data_cfg), "--out", str(tmp_path / "data"))
    cli("train", "--cfg", json.dumps(TRAIN_CFG), "--method", "m", "--phase-index", "0", "--data",
        str(tmp_path / "data"), "--checkpoint-dir", str(tmp_path / "ck"), "--out", str(tmp_path / "m.pt"),
        "--threads", "1", "--no-progress")
    assert (tmp_path / "m.pt").exists()

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("servertest")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["rule"] == "train" and run.data.tags["dataset"] == "digits"
    assert run.info.run_name == "m/p1"
    assert len(client.get_metric_history(run.info.run_id, "loss/mse")) >= 4
    assert any(k.startswith("system/") for k in run.data.metrics), sorted(run.data.metrics)
    assert not (tmp_path / "mlflow.db").exists()  # nothing fell back to the default local store


# ------------------------------------------------------------------ the journal: jobs of a workflow, no MLflow

JOURNAL_JOB = r'''
import os, sys, time
from daebench.tracking import start_run
mode = sys.argv[1]
with start_run(name="job", rule="metrics", dataset="d", params={"a": 1, "b": {"c": [1, 2]}},
               system_metrics_interval=0.05, system_metrics_samples=1) as run:
    print(run.run_id, flush=True)
    print("training step 3/3", file=sys.stderr, flush=True)
    for step in range(3):
        run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    open("grid.png", "w").write("png")
    run.log_artifact("grid.png")
    time.sleep(0.2)
    if mode == "fail":
        raise SystemExit(3)
    if mode == "die":
        os._exit(9)
assert "mlflow" not in sys.modules, "a journal job imported MLflow"
'''


@pytest.fixture
def shipping(default_store, tmp_path, monkeypatch):
    """The workflow's side (onstart / onsuccess) around jobs run as subprocesses in ``tmp_path``."""
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    monkeypatch.delenv(tracking.JOURNAL_ENV, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", default_store)
    (tmp_path / "job.py").write_text(JOURNAL_JOB)
    tracking.setup_experiment(default_store, tracking.experiment_name())
    parent = tracking.open_workflow_run(["snakemake"])
    tracking.start_shipping(default_store)

    def job(mode="ok", check=True):
        # stderr into a log file, as a rule's `> {log} 2>&1` does: the run attaches it
        with open(tmp_path / f"{mode}.log", "w") as err:
            out = subprocess.run([sys.executable, "job.py", mode], check=False, cwd=tmp_path, stdout=subprocess.PIPE,
                                 stderr=err, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=120)
        assert out.returncode == 0 or not check, (tmp_path / f"{mode}.log").read_text()
        return out.stdout.split()[0]

    yield job, parent
    tracking.stop_shipping()
    tracking.close_workflow_run(success=True)


def test_journal_job_reaches_the_store_with_its_real_run_id(shipping, default_store, tmp_path):
    from mlflow.tracking import MlflowClient

    job, parent = shipping
    ok, failed, died = job(), job("fail", check=False), job("die", check=False)
    tracking.stop_shipping()  # the workflow ends: the rest is shipped, the dead job's run closed
    c = MlflowClient(default_store)
    r = c.get_run(ok)  # the id the job printed (and writes into its results) is MLflow's own
    assert r.info.status == "FINISHED" and r.data.tags["mlflow.parentRunId"] == parent
    assert r.data.tags["mlflow.source.git.commit"] == r.data.tags["git_sha"] == tracking.git_sha()
    exp = c.get_experiment(r.info.experiment_id)  # the UI opens it on its runs, not its GenAI view
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert r.data.params == {"a": "1", "b.c": "[1, 2]"} and r.data.tags["rule"] == "metrics"
    assert [(m.step, m.value) for m in c.get_metric_history(ok, "loss")] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert len(c.get_metric_history(ok, "system/cpu_utilization_percentage")) >= 2
    assert {"system/system_memory_usage_megabytes", "system/process_memory_rss_megabytes"} <= set(r.data.metrics)
    assert [a.path for a in c.list_artifacts(ok)] == ["config.json", "grid.png", "log"]  # and the resolved config
    assert json.loads(Path(c.download_artifacts(ok, "config.json", str(tmp_path))).read_text()) == {"a": 1, "b": {"c": [1, 2]}}
    assert "training step 3/3" in Path(c.download_artifacts(ok, "log/ok.log", str(tmp_path / "dl"))).read_text()
    assert r.data.tags["mlflow.source.type"] == "LOCAL" and r.data.tags["mlflow.source.name"] == "daebench metrics"
    assert c.get_run(failed).info.status == "FAILED"
    assert c.get_run(died).info.status == "KILLED"  # no end line, its process gone
    assert sorted(p.name for p in (tmp_path / ".daebench/mlflow-journal").iterdir()) == [".lock"]  # all shipped
    tracking.start_shipping(default_store)  # for the fixture's teardown


def test_journal_shipping_resumes_without_duplicates(default_store, tmp_path, monkeypatch):
    """A shipper killed mid-journal (Snakemake killed) leaves a state file; the next one ships only the rest,
    and never a half-written last line."""
    from mlflow.tracking import MlflowClient

    from daebench.tracking import journal as jr

    tracking.setup_experiment(default_store, tracking.experiment_name())
    d = tmp_path / "j"
    d.mkdir()
    (d / jr.HEARTBEAT).write_text(json.dumps({"uri": default_store}))
    monkeypatch.setenv(jr.JOURNAL_ENV, str(d))
    assert jr.live_journal(default_store) == d and jr.live_journal(default_store + "x") is None
    run = jr.JournalRun(d / "k.jsonl", "k")
    run.write({"start": {"experiment": tracking.experiment_name(), "tags": {"mlflow.runName": "r"}, "time": 1,
                         "resume": None, "host": "elsewhere", "pid": 1}})
    run.log_metrics({"x": 1.0}, step=0)
    with open(d / "k.jsonl", "a") as fh:
        fh.write('{"metrics": {"x": 2.0}, "st')  # the job is in the middle of a line
    assert jr.ship(d, default_store) == 2
    run_id = (d / "k.id").read_text()
    with open(d / "k.jsonl", "a") as fh:
        fh.write('ep": 1, "ts": 5}\n')
    run.write({"end": "FINISHED", "ts": 9})
    assert jr.ship(d, default_store) == 2 and jr.ship(d, default_store) == 0  # a fresh pass reads state
    c = MlflowClient(default_store)
    assert sorted((m.step, m.value) for m in c.get_metric_history(run_id, "x")) == [(0, 1.0), (1, 2.0)]
    assert c.get_run(run_id).info.status == "FINISHED" and not (d / "k.jsonl").exists()
    # a stale heartbeat (no shipper): jobs log directly
    os.utime(d / jr.HEARTBEAT, (time.time() - 60, time.time() - 60))
    assert jr.live_journal(default_store) is None


def test_metrics_for_a_run_missing_from_the_store_never_block_the_job_or_its_journal(default_store, tmp_path,
                                                                                     monkeypatch, caplog):
    """An evaluation logs its numbers onto the training run too; that run may not be in this store (a model
    trained under another tracking URI, or pulled with `dvc pull`). Through the journal the line is dropped
    with one warning and the rest ships (the evaluation's own run finishes, its metrics there, the journal
    file done); outside a workflow the job does not fail."""
    from mlflow.tracking import MlflowClient

    from daebench.tracking import journal as jr

    tracking.setup_experiment(default_store, tracking.experiment_name())
    missing = "0123456789abcdef0123456789abcdef"
    d = tmp_path / "j"
    d.mkdir()
    run = jr.JournalRun(d / "k.jsonl", "k")
    run.write({"start": {"experiment": tracking.experiment_name(), "tags": {"mlflow.runName": "eval"}, "time": 1,
                         "resume": None, "host": "elsewhere", "pid": 1}})
    run.log_metrics({"psnr": 20.0})
    run.log_metrics({"eval/psnr": 20.0}, run_id=missing)
    run.log_metrics({"ssim": 0.9})
    run.write({"end": "FINISHED", "ts": 9})
    with caplog.at_level("WARNING", logger="daebench.tracking"):
        assert jr.ship(d, default_store) == 5
    c = MlflowClient(default_store)
    (r,) = c.search_runs([c.get_experiment_by_name(tracking.experiment_name()).experiment_id],
                         "tags.`mlflow.runName` = 'eval'")
    assert r.info.status == "FINISHED" and r.data.metrics == {"psnr": 20.0, "ssim": 0.9}
    assert not (d / "k.jsonl").exists() and jr.ship(d, default_store) == 0  # shipped once, not retried
    assert sum(missing in rec.getMessage() for rec in caplog.records) == 1
    # outside a workflow: the direct client, same outcome
    monkeypatch.delenv(tracking.JOURNAL_ENV, raising=False)
    with tracking.start_run(name="direct", rule="metrics", dataset="digits", params={}, system_metrics=False) as h:
        h.log_metrics({"psnr": 21.0})
        h.log_metrics({"eval/psnr": 21.0}, run_id=missing)  # warns, does not raise
    assert MlflowClient(default_store).get_run(h.run_id).data.metrics == {"psnr": 21.0}


def test_a_copied_project_is_told_where_its_artifacts_go(tmp_path, caplog):
    """MLflow stores an experiment's artifact location as an absolute path: a project copied with its
    mlflow.db would write run artifacts into the original's folder. The workflow says so, naming both."""
    from daebench.tracking.store import foreign_artifact_root

    uri = f"sqlite:///{tmp_path}/copy/mlflow.db"
    assert foreign_artifact_root(f"{tmp_path}/copy/mlruns/1", uri) is None
    assert foreign_artifact_root(f"file://{tmp_path}/copy/mlruns/1", uri) is None
    assert foreign_artifact_root(f"{tmp_path}/orig/mlruns/1", uri) == tmp_path / "orig/mlruns/1"
    assert foreign_artifact_root("s3://bucket/mlruns/1", uri) is None  # a remote store: nothing to say
    orig, copy = tmp_path / "orig", tmp_path / "copy2"
    orig.mkdir()
    subprocess.run([sys.executable, "-c", ("from daebench.tracking import setup_experiment as s; "
                    f"s('sqlite:///{orig}/mlflow.db', 'daebench')")], cwd=orig, check=True, timeout=120)
    import shutil

    shutil.copytree(orig, copy)
    with caplog.at_level("WARNING", logger="daebench.tracking"):
        tracking.setup_experiment(f"sqlite:///{copy}/mlflow.db", "daebench")
    assert f"keeps its artifacts in {orig}/mlruns" in caplog.text and str(copy) in caplog.text
