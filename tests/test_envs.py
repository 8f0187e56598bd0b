"""The rules' conda environment (envs/daebench.yaml, `snakemake --sdm conda`). Snakemake builds it from a copy
of the file under .snakemake/conda/<hash>.yaml (snakemake/deployment/conda.py: `create_env` copies the file to
`env_path + ".yaml"` and runs `conda env create --file` on the copy), keyed by the file's content. So the file
must not name anything by a path relative to itself, and it must change whenever the dependencies do."""
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def env_pip() -> list[str]:
    env = yaml.safe_load((ROOT / "envs/daebench.yaml").read_text())
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    return pip


def test_env_installs_exactly_the_projects_dependencies():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert env_pip() == deps  # regenerate the pip list of envs/daebench.yaml from pyproject.toml


def test_env_names_no_path_relative_to_itself():
    for entry in env_pip():
        assert not entry.startswith(("-e", ".", "/", "file:")) and "://" not in entry, entry


def test_env_python_satisfies_requires_python():
    env = yaml.safe_load((ROOT / "envs/daebench.yaml").read_text())
    (python,) = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python=")]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11" and tuple(map(int, python.split("=")[1].split("."))) >= (3, 11)


def test_jobs_import_the_workflows_own_source(tmp_path):
    """common.smk puts the workflow's src/ first on PYTHONPATH, which jobs inherit: a job of a workflow with
    its own src/ imports that code, not the installed package (so a conda env without the project works)."""
    for item in ("Snakefile", "params.yaml", "workflow", "envs", "notebooks"):
        src, dst = ROOT / item, tmp_path / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    marker = tmp_path / "src/daebench_marker.py"
    marker.parent.mkdir()
    marker.write_text("WHERE = 'the workflow'\n")
    (tmp_path / "probe.smk").write_text(
        'include: "Snakefile"\n\n\nrule import_probe:\n    output: "probe.txt"\n'
        '    shell: "python -c \\"import daebench_marker; print(daebench_marker.WHERE)\\" > {output}"\n')
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", "probe.smk", "--cores", "1", "probe.txt"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert (tmp_path / "probe.txt").read_text().strip() == "the workflow"


def test_source_first_on_path_puts_the_workflows_src_first_once(tmp_path):
    from daebench.config import source_first_on_path

    src = tmp_path / "src"
    src.mkdir()
    sep = os.pathsep
    assert source_first_on_path(str(src), {}) == str(src)
    assert source_first_on_path(str(src), {"PYTHONPATH": f"/a{sep}{src}{sep}/b"}) == f"{src}{sep}/a{sep}/b"
    assert source_first_on_path(str(tmp_path / "absent"), {"PYTHONPATH": "/a"}) == "/a"  # copied without src/
    assert source_first_on_path(str(tmp_path / "absent"), {}) == ""
