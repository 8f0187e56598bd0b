"""Chaos: every study's smoke DAG under repeated SIGKILLs at random moments (seeded), the workflow rerun after
each. After every interrupted run no output on disk may be partial; the finished run must leave no temporary
file (dotfiles included) and no unshipped MLflow journal, and its tables, metric JSONs and model checkpoints
(sha256 of every tensor) must equal those of the undisturbed run (`smoke_run`) bit for bit.

Strikes cycle through five kinds (`STRIKES`): a random running job (twice); a job inside `atomic_path`,
between its temporary file's write and its rename (tests/chaos_site holds the hook that makes that moment
last long enough to hit); a training job once its resume checkpoint is on disk, which must then resume, not
restart (every such kill is checked against the job's next attempt, whose log must say "resumed from": each
run's job logs are kept, as a job's log file is rewritten by every attempt); and Snakemake itself with every
job it runs, like a crashed node, after which the rerun needs `--unlock` and `--rerun-incomplete`.

The DAG struck is a few tables per study (`CHAOS_TABLES`) that together run every command of the full
smoke DAG (a fast test checks that), so its cost does not grow with each table a study adds.
What is killed is always this test's own Snakemake or its process tree, never a process found machine-wide.
"""
import contextlib
import glob
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import SMOKE_TABLES, copy_workflow, snakemake, workflow_env
from procs import descendants

SEED = 20261130
KILLS = 20  # issue 19: at least 20 seeded SIGKILLs
STRIKES = ("job", "in_write", "job", "checkpoint", "snakemake")  # the kind of the i-th strike: STRIKES[i % 5]
MAX_DELAY_S = 15.0  # a kill lands uniformly within this long after a job is seen running, so kills spread
CHECKPOINT_WAIT_S = 60.0  # a resume-forcing strike that finds no checkpointed trainer this long kills any job
# Per study, tables whose jobs together run every command of the full smoke DAG (about 90 of its 230 jobs).
CHAOS_TABLES = {
    "two_phase": ["results/table4.csv", "results/two_phase/table5.csv"],
    "dbae": [f"results/dbae/{t}.csv" for t in ("table1", "table3", "table5")],
    "scorevae": ["results/scorevae/table1.csv"],
    "ddvi": ["results/ddvi/table3.csv"],
}
# Columns that differ between any two runs, disturbed or not: MLflow run ids, and wall-clock costs.
VOLATILE = {"mlflow_run_id", "mlflow_run_ids", "ms_encoder", "ms_endpoint", "ms_total"}
# Keys of metric JSONs that differ between any two runs: run ids and wall-clock measurements.
VOLATILE_KEYS = re.compile(r"run_id|seconds|^ms_|_per_s$|^time_|_time$|^wall")
CHAOS_SITE = Path(__file__).parent / "chaos_site"
TEMP_NAME = re.compile(r"\.tmp|\.partial$|^\.nfs")  # atomic_path's temporaries, and what other writers leave


def job_processes(root: int) -> list[tuple[int, list[str]]]:
    """The running jobs below Snakemake ``root``: `python -m daebench <command> ...` processes."""
    return sorted((pid, argv) for pid, argv in descendants(root) if argv[1:3] == ["-m", "daebench"])


def checkpointed_trainer(jobs, project: Path):
    """A running training job whose resume checkpoint is on disk, if any (a kill now forces a resume)."""
    for pid, argv in jobs:
        if "--checkpoint-dir" in argv and "--out" in argv:
            # its own resume file, <out stem>.resume.pt (.prior.resume.pt for DBAE's prior): the directory is
            # shared by the seeds of a DDVI method
            ck = project / argv[argv.index("--checkpoint-dir") + 1]
            if any(ck.glob(f"{glob.escape(Path(argv[argv.index('--out') + 1]).stem)}.*resume.pt")):
                return pid, argv
    return None


def wait_dead(pid: int, timeout: float = 10.0) -> None:
    """Until ``pid`` (not our child: a job below Snakemake) has exited, i.e. is gone or a zombie."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} still alive {timeout} s after SIGKILL")


def strike(proc: subprocess.Popen, project: Path, rng: random.Random, kind: str, ctl: Path):
    """One strike of ``kind`` (STRIKES) on ``proc``'s run; returns what was killed, or None if the run ended
    first. A "checkpoint" or "in_write" strike that finds no such moment within CHECKPOINT_WAIT_S (late in
    the DAG no trainer is left) becomes an ordinary one rather than letting the run finish unstruck."""
    while proc.poll() is None and not job_processes(proc.pid):
        time.sleep(0.05)
    start = time.monotonic()
    deadline = start + rng.uniform(0.0, MAX_DELAY_S)
    if kind == "in_write":
        (ctl / "armed").touch()
    try:
        while proc.poll() is None:
            jobs = job_processes(proc.pid)
            if kind in ("checkpoint", "in_write") and time.monotonic() > start + CHECKPOINT_WAIT_S:
                kind = "job"
            if kind == "checkpoint":
                victim = checkpointed_trainer(jobs, project)
            elif kind == "in_write":
                victim = next(((pid, argv) for pid, argv in jobs if (ctl / f"writing.{pid}").exists()), None)
            elif time.monotonic() < deadline or not jobs:
                victim = None
            elif kind == "snakemake":  # a crashed node: Snakemake and every job at once
                for pid, _ in descendants(proc.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                proc.kill()
                return {"kind": kind, "command": "snakemake", "job": [argv[3] for _, argv in jobs], "ckpt": None}
            else:
                victim = rng.choice(jobs)
            if victim is None:
                time.sleep(0.02)
                continue
            pid, argv = victim
            out = argv[argv.index("--out") + 1] if "--out" in argv else argv[3]
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # finished meanwhile: pick again
                continue
            wait_dead(pid)
            # a resume is owed when the resume file is still there once the job is dead (looked at before the
            # kill, a job finishing in between would be owed one it had no file for)
            ckpt = checkpointed_trainer([victim], project) is not None
            hit = {"kind": kind, "command": argv[3], "job": out, "ckpt": out if ckpt else None}
            if kind == "in_write":
                hit["writing"] = (ctl / f"writing.{pid}").read_text()
            return hit
        return None
    finally:
        for f in ctl.iterdir():
            f.unlink()


JOB_BLOCK = re.compile(r"^\s+output: (.+)\n\s+log: (.+)$", re.MULTILINE)
# An attempt that got past its start: it resumed, logged training progress, or finished (DDVI's smoke trainers
# log no progress lines).
BEGAN = re.compile(r"resumed from |\btrain \S+: \d+/\d+ |\btrained ")


def job_logs(snakemake_out: str) -> dict[str, str]:
    """Each output of the jobs a Snakemake run printed, to its job's log file."""
    return {out: log.split(", ")[0] for outs, log in JOB_BLOCK.findall(snakemake_out) for out in outs.split(", ")}


def changed_logs(project: Path, since: float) -> dict[str, str]:
    """The job logs written since ``since`` (time.time()), by path relative to the project."""
    return {str(p.relative_to(project)): p.read_text(errors="replace") for p in (project / "logs").rglob("*.log")
            if p.stat().st_mtime >= since}


def next_attempt(attempts: dict[str, list[tuple[int, str]]], log: str, after_run: int) -> str | None:
    """The log of the first attempt of a job in a run after ``after_run`` that began training (an attempt
    killed while it was still starting up has not yet had the chance to resume)."""
    return next((text for run, text in attempts.get(log, []) if run > after_run and BEGAN.search(text)), None)


def tensor_digest(path: Path) -> dict[str, str]:
    """sha256 of every tensor in a checkpoint, by its key path (non-tensor entries, e.g. run ids, left out)."""
    out: dict[str, str] = {}

    def walk(obj, key):
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            out[key] = f"{t.dtype}{tuple(t.shape)}:" + hashlib.sha256(t.reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{key}/{k}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{key}/{i}")

    walk(torch.load(path, map_location="cpu", weights_only=True), "")
    return out


def stable(obj):
    """A metric JSON without its volatile keys (VOLATILE_KEYS), for comparison across runs."""
    if isinstance(obj, dict):
        return {k: stable(v) for k, v in obj.items() if not VOLATILE_KEYS.search(str(k))}
    if isinstance(obj, list):
        return [stable(v) for v in obj]
    return obj


def leftovers(project: Path) -> list[str]:
    """Temporary files anywhere in the project but Snakemake's own metadata, and unshipped MLflow journals."""
    bad = [str(p.relative_to(project)) for p in project.rglob("*")
           if p.is_file() and ".snakemake" not in p.relative_to(project).parts and TEMP_NAME.search(p.name)]
    journal = project / ".daebench" / "mlflow-journal"
    bad += [f"{p.relative_to(project)} (unshipped)" for p in journal.glob("*") if p.name != ".lock"]
    return bad


def assert_nothing_partial(project: Path) -> int:
    """Every file a step may read (outputs, checkpoints, data) is whole: it parses. Returns how many."""
    n = 0
    for root in ("resources", "results"):
        for path in (project / root).rglob("*"):
            if not path.is_file() or path.name.startswith(".") or path.is_symlink():
                continue
            try:
                if path.suffix == ".pt":
                    torch.load(path, map_location="cpu", weights_only=True)
                elif path.suffix == ".npz":
                    with np.load(path) as f:
                        for key in f.files:
                            f[key]
                elif path.suffix == ".csv":
                    pd.read_csv(path)
                elif path.suffix == ".json":
                    json.loads(path.read_text())
                elif path.suffix == ".png":
                    with Image.open(path) as im:
                        im.load()
                else:
                    continue
            except Exception as err:  # any failure to parse is the finding
                raise AssertionError(f"partial output left on disk after a kill: {path}: {err}") from err
            n += 1
    return n


def test_descendants_are_the_process_tree_below_a_pid():
    """The victim finder: a grandchild is found, a process outside the tree is not.

    Each process prints its own pid once its Python runs: a pid taken from Popen can be read while its exec is
    still filling in argv (empty /proc/PID/cmdline), which failed CI once under load."""
    announce = "import os, time; print(os.getpid(), flush=True); time.sleep(30)"
    outside = subprocess.Popen([sys.executable, "-c", announce, "tree-outside"], stdout=subprocess.PIPE, text=True)
    assert int(outside.stdout.readline()) == outside.pid
    code = ("import subprocess, sys, time; "
            f"subprocess.Popen([sys.executable, '-c', {announce!r}, 'tree-grandchild']); time.sleep(30)")
    parent = subprocess.Popen([sys.executable, "-c", code, "tree-parent"], stdout=subprocess.PIPE, text=True)
    grandchild = int(parent.stdout.readline())
    try:
        found = dict(descendants(parent.pid))
        assert set(found) == {grandchild} and found[grandchild][-1] == "tree-grandchild"
        mine = dict(descendants(os.getpid()))  # two levels down from this process, the outsider included
        assert {outside.pid, parent.pid, grandchild} <= set(mine) and mine[outside.pid][-1] == "tree-outside"
    finally:
        os.kill(grandchild, signal.SIGKILL)
        for p in (outside, parent):
            p.kill()
            p.wait()


def test_a_kill_is_checked_on_the_next_attempt_that_began():
    """The resume accounting: outputs map to their log from Snakemake's job blocks, and the attempt checked after
    a kill in run 4 is the first later one past its start (not the killed one, not one killed while starting)."""
    block = ("localrule train_phase:\n    input: resources/data/digits/manifest.json\n"
             "    output: resources/models/digits/vae/main.pt, resources/models/digits/vae/extra.pt\n"
             "    log: logs/train/digits/vae/main.log\n    jobid: 3\n")
    logs = job_logs(block)
    assert logs == {f"resources/models/digits/vae/{n}.pt": "logs/train/digits/vae/main.log" for n in ("main", "extra")}
    attempts = {"logs/train/digits/vae/main.log": [
        (4, "train vae/main: 10/40 ( 25%)"), (5, ""), (6, "resumed from x at step 10/40\ntrain vae/main: 10/40 "),
        (7, "train vae/main: 0/40 ( 0%)")]}
    assert "resumed from" in next_attempt(attempts, "logs/train/digits/vae/main.log", 4)
    assert next_attempt(attempts, "logs/train/digits/vae/main.log", 6).startswith("train vae/main: 0/40")
    assert next_attempt(attempts, "logs/train/digits/vae/main.log", 7) is None


def planned_commands(targets: list[str], project: Path) -> set[str]:
    """The daebench commands a dry run of ``targets`` on the smoke preset plans."""
    proc = snakemake(["-n", "-p", "--forceall", *targets, "--configfile", "tests/smoke.yaml"], project, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line.split("-m daebench ", 1)[1] for line in proc.stdout.splitlines() if "-m daebench " in line]
    return {line.split()[0] for line in lines}


def test_chaos_tables_run_every_command_of_the_smoke_dag(project):
    for study, tables in CHAOS_TABLES.items():
        assert set(tables) <= set(SMOKE_TABLES[study]), study
    every = planned_commands([t for ts in SMOKE_TABLES.values() for t in ts], project)
    assert planned_commands([t for ts in CHAOS_TABLES.values() for t in ts], project) == every


@pytest.mark.slow
def test_chaos_kills_lose_nothing_and_change_no_table(smoke_run, tmp_path):
    project = copy_workflow(tmp_path / "project")
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    tables = [t for ts in CHAOS_TABLES.values() for t in ts]
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *tables, "--configfile", "tests/smoke.yaml"]
    env = workflow_env()
    env.update(DAEBENCH_CHAOS_CTL=str(ctl), PYTHONPATH=os.pathsep.join(filter(None, [str(CHAOS_SITE),
                                                                                      env.get("PYTHONPATH")])))
    rng = random.Random(SEED)
    kills, runs, t0, last_kill, crashed, rerun_incomplete = [], 0, time.monotonic(), 0.0, False, False
    attempts: dict[str, list[tuple[int, str]]] = {}  # job log -> (run, text) of each attempt, in order
    out_logs: dict[str, str] = {}  # job output -> its log file
    while True:
        runs += 1
        assert runs <= KILLS + 20, f"the workflow did not finish after {runs - 1} runs"
        if crashed:  # after a crash the user unlocks the directory and reruns what was incomplete
            unlock = subprocess.run([*cmd, "--unlock"], cwd=project, env=env, capture_output=True, text=True,
                                    check=False, timeout=300)
            assert unlock.returncode == 0, unlock.stderr[-2000:]
        log = project / f"snakemake.run{runs}.out"  # a file, not a pipe: a full pipe would stall Snakemake
        started = time.time() - 1.0  # mtime granularity: a log written at the start still counts as this run's
        with open(log, "w") as sink:
            # once Snakemake has crashed, its incomplete markers stay until their jobs are redone, which a
            # struck run may not reach: as a user would, every later run passes --rerun-incomplete
            rerun_incomplete = rerun_incomplete or crashed
            proc = subprocess.Popen(cmd + ["--rerun-incomplete"] * rerun_incomplete, cwd=project, stdout=sink,
                                    stderr=subprocess.STDOUT, env=env)
            killed = strike(proc, project, rng, STRIKES[len(kills) % len(STRIKES)], ctl) \
                if len(kills) < KILLS else None
            proc.wait(timeout=1800)
        out = log.read_text()
        out_logs.update(job_logs(out))
        for rel, text in changed_logs(project, started).items():
            seen = attempts.setdefault(rel, [])
            if not seen or seen[-1][1] != text:  # the same text is the last run's attempt read again, not a new one
                seen.append((runs, text))
        crashed = bool(killed) and killed["kind"] == "snakemake"
        if killed:
            killed["run"] = runs
            kills.append(killed)
            last_kill = time.monotonic() - t0
            assert proc.returncode != 0, f"run {runs}: {killed} was killed yet Snakemake reported success"
            assert_nothing_partial(project)
        elif proc.returncode == 0:
            break
        else:  # the run failed with no kill of ours: that is a bug, not chaos
            raise AssertionError(f"run {runs} failed without a kill:\n{out[-4000:]}")
    elapsed = time.monotonic() - t0
    assert len(kills) >= KILLS, f"the workflow finished after {len(kills)} kills: {kills}"
    kinds = {k["kind"] for k in kills}
    assert kinds == set(STRIKES), f"strike kinds that never landed: {set(STRIKES) - kinds} ({kills})"
    checked = assert_nothing_partial(project)
    assert not leftovers(project), f"left behind by a finished run: {leftovers(project)}"

    # every kill of a training job whose resume checkpoint was on disk was followed by a resume, not a restart:
    # checked on the job's next attempt (a later one may rightly start afresh: Snakemake deletes the output of
    # a job it saw start but not finish, and a crash after the job's last act leaves no resume file behind)
    owed = [k for k in kills if k["ckpt"]]
    assert owed, f"no kill hit a checkpointed trainer: {kills}"
    for k in owed:
        text = next_attempt(attempts, out_logs[k["ckpt"]], k["run"])
        assert text is not None, f"{k['ckpt']} was killed after checkpointing in run {k['run']} and never trained again"
        assert "resumed from " in text, (f"{k['ckpt']} was killed after checkpointing in run {k['run']} but its next "
                                         f"attempt did not resume:\n{text[-2000:]}")

    for table in tables:
        ref = pd.read_csv(smoke_run / table, dtype=str, keep_default_na=False)
        got = pd.read_csv(project / table, dtype=str, keep_default_na=False)
        keep = [c for c in ref.columns if c not in VOLATILE]
        assert list(got.columns) == list(ref.columns), table
        pd.testing.assert_frame_equal(got[keep], ref[keep], obj=table)
    metric_files = sorted((project / "results").rglob("*.json"))
    for path in metric_files:
        rel = path.relative_to(project)
        # messages name the project's own directory (where to copy missing weights): the same text elsewhere
        ours, ref = (json.loads((root / rel).read_text().replace(str(root.resolve()), "<project>"))
                     for root in (project, smoke_run))
        assert stable(ours) == stable(ref), rel
    models = sorted(p for p in (project / "resources").rglob("*.pt") if ".resume" not in p.name)
    for path in models:
        rel = path.relative_to(project)
        assert tensor_digest(path) == tensor_digest(smoke_run / rel), f"{rel}: tensors differ from the undisturbed run"
    assert len(metric_files) >= 20 and len(models) >= 20, (len(metric_files), len(models))
    summary = {kind: sum(k["kind"] == kind for k in kills) for kind in STRIKES}
    print(f"chaos: seed {SEED}, {len(kills)} kills over {runs} runs ({summary}; commands "
          f"{sorted({k['command'] for k in kills})}), {len(owed)} checkpointed trainers killed and resumed, "
          f"{checked} files checked whole, {len(metric_files)} metric JSONs and {len(models)} checkpoints equal to "
          f"the undisturbed run, last kill at {last_kill:.0f} s of {elapsed:.0f} s")
