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
