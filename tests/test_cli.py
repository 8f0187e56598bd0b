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
