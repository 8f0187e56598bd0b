"""benchmarks/device_check.sh (issue 15): its CPU mode runs every step of the GPU check at tiny sizes, so the
script cannot rot between GPU slots; and a failing or overrunning step is recorded while the next one runs."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_check.sh"
sys.path.insert(0, str(ROOT / "benchmarks"))
from train_step import FAMILY_CASES


def run_check(tmp_path: Path, *args: str, timeout: float = 900) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out)}
    proc = subprocess.run(["bash", str(SCRIPT), "--cpu", "--work", str(tmp_path / "work"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    return proc, out


def load(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text())


def positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def test_a_failed_step_is_recorded_and_the_next_runs_and_a_step_over_its_cap_is_stopped(tmp_path):
    # install fails (injected); preset_timing runs next, but at a tenth of its time cap it is stopped
    proc, out = run_check(tmp_path, "--steps", "install,preset_timing", "--inject-failure", "install",
                          "--time-scale", "0.1", timeout=120)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = load(out, "device_check")
    assert summary["ok"] is False and list(summary["steps"]) == ["install", "preset_timing"]
    install = load(out, "install")
    assert install["status"] == "failed" and "injected failure" in install["traceback"]
    timing = load(out, "preset_timing")
    assert timing["status"] == "failed" and "timed out" in timing["error"], timing
    assert timing["seconds"] < 30
    # the table comes last and names the failures
    tail = proc.stdout.rstrip().splitlines()
    assert "FAIL" in proc.stdout and tail[-2].startswith("install") and tail[-1].startswith("preset_timing")


@pytest.mark.slow
def test_cpu_mode_runs_every_step(tmp_path):
    # --time-scale: the caps sum to 90 s for an idle 2-core machine; a loaded test machine gets more
    proc, out = run_check(tmp_path, "--time-scale", "4")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    summary = load(out, "device_check")
    assert summary["ok"] and summary["mode"] == "cpu"
    assert list(summary["steps"]) == ["install", "smoke_dag", "train_families", "preset_timing", "ddp"]
    assert all(s["status"] == "ok" for s in summary["steps"].values())

    dag = load(out, "smoke_dag")
    assert dag["jobs"]["total"] == 6 and dag["snakemake_rc"] == 0
    assert len(dag["table4"]) == 1 and all(math.isfinite(r["psnr"]) for r in dag["table4"])
    assert {r["rule"] for r in dag["mlflow_runs"]} >= {"train", "workflow"}
    for run in dag["mlflow_runs"]:
        assert run["status"] == "FINISHED", run
        if run["rule"] != "workflow":  # the invocation's parent run is bookkeeping, the jobs carry the metrics
            assert not run["missing"] and "system/cpu_utilization_percentage" in run["system_metrics"], run

    fam = load(out, "train_families")
    eager = {r["case"]: r for r in fam["results"] if not r["compile"]}
    assert set(eager) == {c[0] for c in FAMILY_CASES} | {"latent_prior", "ddvi"}
    for r in fam["results"]:
        assert r["status"] == "ok" and r["finite"] and r["cpu_loaded"] and r["cpu_finite"], r
    compiled = [r for r in fam["results"] if r["compile"]]
    assert compiled and all(r["effective"]["compile"] is False for r in compiled)  # compile is GPU-only

    timing = load(out, "preset_timing")
    rows = [r for r in timing["rows"] if "images_per_s" in r]
    assert {r["case"] for r in rows} == {"dae_phase2", "dbae"}
    for r in rows:
        assert positive(r["images_per_s"]) and positive(r["flops_per_s"]) and 0 < r["mfu"] < 2
    assert timing["mfu_reference"] == "fp32" and positive(timing["peak_flops_per_s"]["fp32"])
    assert {r["sampler"] for r in timing["sampling"]} == {"ddim", "bridge"}
    assert all(positive(r["images_per_s"]) for r in timing["sampling"])

    ddp = load(out, "ddp")
    assert ddp["worker"]["world_size"] == 1 and ddp["worker"]["backend"] == "gloo"
    assert ddp["worker"]["ddp"], "train_phase did not wrap the model in DistributedDataParallel"
