"""DVC around Snakemake: `dvc repro` after one parameter edit reruns exactly the affected jobs;
artefacts pushed to the default remote and pulled into a second clone leave nothing to do."""
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ITEMS = ("Snakefile", "params.yaml", "dvc.yaml", ".dvc/config", ".dvcignore", ".gitignore", "workflow", "envs",
         "src/daebench", "notebooks")


def sh(args, cwd, timeout=900):
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{(proc.stdout + proc.stderr)[-5000:]}"
    return proc.stdout + proc.stderr


def dvc(*args, cwd, timeout=900):
    return sh([sys.executable, "-m", "dvc", *args], cwd, timeout)


def executed_jobs(output: str) -> Counter:
    """Jobs Snakemake ran, summed over every invocation in ``output`` (its 'Job stats' tables)."""
    counts = Counter()
    for table in output.split("Job stats:")[1:]:
        for m in re.finditer(r"^(\w+)\s+(\d+)$", table.split("\n\n")[0], re.MULTILINE):
            if m.group(1) != "total":
                counts[m.group(1)] += int(m.group(2))
    return counts


def deep_update(base, extra):
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_update(base[k], v)
        else:
            base[k] = v
    return base


@pytest.mark.slow
def test_repro_after_param_change_then_push_pull(tmp_path):
    a = tmp_path / "a"
    for item in ITEMS:
        src, dst = ROOT / item, a / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(src, dst)
    # The smoke preset, written into params.yaml itself (DVC reads params from there).
    params = deep_update(yaml.safe_load((a / "params.yaml").read_text()),
                         yaml.safe_load((ROOT / "tests/smoke.yaml").read_text()))
    params["report"] = {"studies": ["two_phase"]}  # the DVC stages cover Table 4 (see dvc.yaml)
    (a / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    sh(["git", "init", "-q"], a)
    sh([*git, "add", "-A"], a)
    sh([*git, "commit", "-qm", "init"], a)

    first = dvc("repro", cwd=a)
    assert executed_jobs(first)["train_phase"] == 4
    assert "Data and pipelines are up to date" in dvc("status", cwd=a)

    params["methods"]["dae_2phase_sc4"]["phases"][1]["schedule"]["scale"] = 2
    (a / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    second = dvc("repro", cwd=a)
    jobs = executed_jobs(second)
    assert jobs == Counter({"train_phase": 1, "reconstruct": 2, "metrics": 2, "table4": 1, "study_claims": 1,
                            "claims": 1, "report": 1}), second[-3000:]
    assert "output: resources/models/digits/dae_2phase_sc4/phase2.pt" in second  # phase 1 is kept
    third = dvc("repro", cwd=a)
    assert executed_jobs(third) == Counter(), third[-2000:]
    assert "Data and pipelines are up to date" in dvc("status", cwd=a)

    dvc("push", cwd=a)
    assert (tmp_path / "daebench-dvc-storage").is_dir()  # the default remote, beside the repo
    sh([*git, "add", "-A"], a)
    sh([*git, "commit", "-qm", "scale 2"], a)
    b = tmp_path / "b"
    sh(["git", "clone", "-q", str(a), str(b)], tmp_path)
    dvc("pull", cwd=b)
    assert (b / "results/table4.csv").read_text() == (a / "results/table4.csv").read_text()
    dry = sh([sys.executable, "-m", "snakemake", "-n", "results/table4.csv"], b)
    assert "Nothing to be done" in dry, dry[-3000:]
