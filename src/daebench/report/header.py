"""The report's run header (what was run, where, on which machine) and links from run ids to the MLflow UI."""
from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable

import pandas as pd

from .curves import _missing_sqlite

REFERENCE_GFLOPS = 260.0  # the machine the issues' wall-time budgets are stated for


def matmul_rate(threads: int = 2, n: int = 2048, reps: int = 10) -> float:
    """GFLOP/s of an fp32 n x n matmul in torch on ``threads`` threads, best of three (the rate wall times are
    quoted beside; ../shared/tools/matmul_rate.py measures the same way). Measured while the report job
    runs, so it reads low when other jobs share the machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        for _ in range(3):
            a @ b
        best = 0.0
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = max(best, 2 * n**3 * reps / (time.perf_counter() - t) / 1e9)
        return best
    finally:
        torch.set_num_threads(before)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> str:
    if not shutil.which("nvidia-smi"):
        return "none"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown (nvidia-smi failed)"
    names = [n.strip() for n in out if n.strip()]
    return ", ".join(f"{names.count(n)} x {n}" for n in dict.fromkeys(names)) or "none"


def git_state(cwd: str = ".") -> str:
    """The commit the run's code came from, ``+ uncommitted changes`` when the work tree differs."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True,
                               text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return sha + (" + uncommitted changes" if dirty else "")


def run_header(config_hash: str, measure: Callable[[], float] = matmul_rate) -> pd.DataFrame:
    """One row per fact: the code (git), the configuration's hash (the one each job's MLflow run is tagged
    with is per job; this one covers the whole resolved config), when, and the machine with its matmul rate."""
    rate = measure()
    rows = [
        ("code", git_state()),
        ("configuration", f"{config_hash} (hash of the resolved params, execution settings excluded)"),
        ("report built", datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")),
        ("machine", f"{platform.node()}: {_cpu_model()}, {os.cpu_count()} CPU threads, GPU: {_gpus()}"),
        ("matmul rate", (f"{rate:.0f} GFLOP/s (fp32 2048², 2 threads, measured by the report job; wall times "
                        f"scale by {REFERENCE_GFLOPS / rate:.2f} to the {REFERENCE_GFLOPS:.0f} GFLOP/s reference)")),
    ]
    return pd.DataFrame(rows, columns=["", "value"])


def mlflow_run_link(ui: str, uri: str, experiment: str) -> Callable[[str], str] | None:
    """run id -> an HTML link to the run's page in the MLflow UI at ``ui`` (what `mlflow ui` serves), or None
    when the store or the experiment is missing (the ids are then shown as text)."""
    if not ui or _missing_sqlite(uri) is not None:
        return None
    from mlflow.tracking import MlflowClient

    try:
        exp = MlflowClient(uri).get_experiment_by_name(experiment)
    except Exception:  # noqa: BLE001 - a report without links rather than no report
        return None
    if exp is None:
        return None
    base = ui.rstrip("/")
    # workflowType: MLflow 3's UI opens its GenAI view unless told (a global switch, not the experiment's tag)
    return lambda run_id: (f'<a href="{base}/#/experiments/{exp.experiment_id}/runs/{run_id}'
                           f'?workflowType=machine_learning" title="{run_id}">{run_id[:8]}</a>')
