"""The command line itself: every command's help renders (argparse %-formats help strings, so a stray
"%" breaks `--help` for the whole program)."""
import subprocess
import sys

import pytest

from daebench.cli import build_parser


def commands():
    sub = next(a for a in build_parser()._actions if isinstance(a.choices, dict))
    return sorted(sub.choices)


def test_top_level_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "daebench", "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert all(name in out.stdout for name in commands())


@pytest.mark.parametrize("name", commands())
def test_each_command_help_renders(name):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([name, "--help"])
    assert exit_.value.code == 0


@pytest.mark.parametrize("name", commands())
def test_each_command_calls_a_job_with_its_arguments(name):
    """cli.py is parse-and-call: each command's options are exactly the keyword arguments of its run
    function in the job layer (every required parameter has an option, no option is left over)."""
    import importlib
    import inspect

    sub = next(a for a in build_parser()._actions if isinstance(a.choices, dict)).choices[name]
    fn = sub.get_default("fn")
    module, target = fn.job
    params = inspect.signature(getattr(importlib.import_module(f"daebench.jobs.{module}"), target)).parameters
    dests = {a.dest for a in sub._actions} - {"help", "threads", "no_progress"}
    assert dests <= set(params), f"{name}: options without a parameter: {dests - set(params)}"
    required = {p for p, v in params.items() if v.default is inspect.Parameter.empty}
    assert required <= dests, f"{name}: parameters without an option: {required - dests}"


LIGHT = ("validate", "dvc-yaml")  # runnable here with no inputs beyond the repository's own files


@pytest.mark.parametrize("name", LIGHT)
def test_a_job_without_a_network_never_imports_torch_or_mlflow(name, tmp_path):
    """The fixed cost of a small job (a table, a claim): with Snakemake's --threads it still loads neither
    torch (2 s) nor MLflow (2-5 s), which -X importtime shows; the commands marked torch=False are exactly
    the ones whose jobs build no network."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    extra = ["--out", str(tmp_path / "dvc.yaml")] if name == "dvc-yaml" else []
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "daebench", name, "--threads", "1", *extra],
                         capture_output=True, text=True, timeout=120, check=False, cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = {line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "daebench.cli" in loaded and not {"torch", "mlflow", "scipy.stats"} & loaded, sorted(loaded)[:50]


def test_commands_that_skip_torch_build_no_network():
    sub = next(a for a in build_parser()._actions if isinstance(a.choices, dict)).choices
    light = {name for name, p in sub.items() if not p.get_default("fn").torch}
    assert set(LIGHT) <= light
    # metrics: light since issue 29 (numpy scoring; torch only if the ImageNet weights are present, imported
    # then by the scoring code itself: test_metrics.py::test_scoring_a_reconstruction_imports_no_torch)
    assert "metrics" in light
    heavy = {"train", "reconstruct", "train-classifier", "ppl", "train-prior", "generate", "gen-metrics",
             "probe", "disentangle", "inference-cost", "ddvi-train", "ddvi-evaluate", "prepare-data",
             "prepare-genotypes", "scorevae-grid", "scorevae-prior", "fetch-weights"}
    assert not light & heavy and light | heavy == set(sub), sorted(set(sub) - light - heavy)
