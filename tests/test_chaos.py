"""Chaos: every study's smoke DAG under repeated SIGKILLs of randomly chosen running jobs at random moments
(seeded), the workflow rerun after each kill. After every interrupted run no output on disk may be partial,
and the final tables must equal those of the undisturbed run (`smoke_run`) bit for bit.

The DAG struck is a few tables per study (`CHAOS_TABLES`) that together run every command of the full
smoke DAG (a fast test checks that), so its cost does not grow with each table a study adds.
What is killed is always a job of this test's own Snakemake (its process tree), never a process found
machine-wide. One kill in four waits for a training job's first checkpoint, so resumption is exercised
and not only restarts.
"""
import json
import os
import random
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


def job_processes(root: int) -> list[tuple[int, list[str]]]:
    """The running jobs below Snakemake ``root``: `python -m daebench <command> ...` processes."""
    return sorted((pid, argv) for pid, argv in descendants(root) if argv[1:3] == ["-m", "daebench"])


def checkpointed_trainer(jobs, project: Path):
    """A running training job whose resume checkpoint is on disk, if any (a kill now forces a resume)."""
    for pid, argv in jobs:
        if "--checkpoint-dir" in argv:
            ck = project / argv[argv.index("--checkpoint-dir") + 1]
            if any(ck.glob("*.resume.pt")):
                return pid, argv
    return None


def strike(proc: subprocess.Popen, project: Path, rng: random.Random, after_checkpoint: bool):
    """Kill one running job of ``proc`` with SIGKILL; returns what was killed, or None if the run ended.
    A resume-forcing strike (``after_checkpoint``) late in the DAG, when no trainer is left to checkpoint,
    falls back to an ordinary one after CHECKPOINT_WAIT_S rather than letting the run finish unstruck."""
    while proc.poll() is None and not job_processes(proc.pid):
        time.sleep(0.05)
    start = time.monotonic()
    deadline = start + rng.uniform(0.0, MAX_DELAY_S)
    while proc.poll() is None:
        jobs = job_processes(proc.pid)
        if after_checkpoint and time.monotonic() > start + CHECKPOINT_WAIT_S:
            after_checkpoint = False
        if after_checkpoint:
            victim = checkpointed_trainer(jobs, project)
            if victim is None:
                time.sleep(0.05)
                continue
        elif time.monotonic() < deadline or not jobs:
            time.sleep(0.05)
            continue
        else:
            victim = rng.choice(jobs)
        pid, argv = victim
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # finished meanwhile: pick again
            continue
        return {"command": argv[3], "job": argv[argv.index("--out") + 1] if "--out" in argv else argv[3],
                "after_checkpoint": after_checkpoint}
    return None


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
    """The victim finder: a grandchild is found, a process outside the tree is not."""
    outside = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "tree-outside"])
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)', 'tree-grandchild']); "
            "print(p.pid, flush=True); time.sleep(30)")
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
    project = copy_workflow(tmp_path)
    tables = [t for ts in CHAOS_TABLES.values() for t in ts]
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *tables, "--configfile", "tests/smoke.yaml"]
    env = workflow_env()
    rng = random.Random(SEED)
    kills, runs, t0, last_kill = [], 0, time.monotonic(), 0.0
    while True:
        runs += 1
        assert runs <= KILLS + 20, f"the workflow did not finish after {runs - 1} runs"
        log = project / f"snakemake.run{runs}.out"  # a file, not a pipe: a full pipe would stall Snakemake
        with open(log, "w") as sink:
            proc = subprocess.Popen(cmd, cwd=project, stdout=sink, stderr=subprocess.STDOUT, env=env)
            killed = strike(proc, project, rng, after_checkpoint=len(kills) % 4 == 3) if len(kills) < KILLS else None
            proc.wait(timeout=1800)
        out = log.read_text()
        if killed:
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
    checked = assert_nothing_partial(project)

    # a killed training job that had checkpointed was resumed, not restarted
    resumed = [p for p in (project / "logs").rglob("*.log") if "resumed from " in p.read_text()]
    assert resumed, "no killed training job resumed from its checkpoint"

    for table in tables:
        ref = pd.read_csv(smoke_run / table, dtype=str, keep_default_na=False)
        got = pd.read_csv(project / table, dtype=str, keep_default_na=False)
        keep = [c for c in ref.columns if c not in VOLATILE]
        assert list(got.columns) == list(ref.columns), table
        pd.testing.assert_frame_equal(got[keep], ref[keep], obj=table)
    commands = sorted({k["command"] for k in kills})
    print(f"chaos: seed {SEED}, {len(kills)} kills over {runs} runs ({commands}), {len(resumed)} jobs resumed, "
          f"{checked} files checked whole, last kill at {last_kill:.0f} s of {elapsed:.0f} s")
