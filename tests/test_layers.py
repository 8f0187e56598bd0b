"""The library's layers (docs/architecture.md): data → nets → diffusion → methods → train / evaluate → study
level (tables, claims, ddvi_study) → jobs, with the studies' declarations, the report and the emergence ladders
that read them, and config (validation reads the registries, studies included) → cli. Every import, function-level ones included,
goes from a layer to itself or one to its left; the support modules (compute, tracking, checkpoint) may
be used by any layer and themselves use only data and each other."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src/daebench"
RANK = {"data": 0, "nets": 1, "diffusion": 2, "methods": 3, "train": 4, "evaluate": 4,
        "tables": 5, "claims": 5, "ddvi_study": 5, "jobs": 6, "studies": 6, "config": 6, "report": 6, "emergence": 6, "cli": 7,
        "__main__": 7}
SUPPORT = {"compute", "tracking", "reference", "checkpoint", "paths", "progress"}


def unit(module: str) -> str:
    """The top-level unit of a module path inside the package: 'data', 'train', 'cli', ..."""
    return module.split(".")[0]


def imports(path: Path, root: Path = PKG) -> set[str]:
    """Units of daebench that ``path`` (a file under ``root``) imports, relative or absolute, at any depth."""
    here = path.relative_to(root).with_suffix("").parts
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[:-node.level]) if node.level <= len(here) else []
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [f"{target}.{a.name}".lstrip(".") for a in node.names]
            elif node.module and node.module.startswith("daebench"):
                names = [node.module[len("daebench."):] or ""]
                if node.module == "daebench":
                    names = [a.name for a in node.names]
            else:
                continue
            out.update(unit(n) for n in names if n)
        elif isinstance(node, ast.Import):
            out.update(unit(a.name[len("daebench."):]) for a in node.names if a.name.startswith("daebench."))
    return out


FILES = sorted(p for p in PKG.rglob("*.py"))


def test_every_module_has_a_layer():
    units = {unit(".".join(p.relative_to(PKG).with_suffix("").parts)) for p in FILES} - {"__init__"}
    assert units <= set(RANK) | SUPPORT, units - set(RANK) - SUPPORT


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_run_one_way(path):
    me = unit(".".join(path.relative_to(PKG).with_suffix("").parts))
    if me == "__init__":
        return
    for other in imports(path) - {me}:
        if other in SUPPORT:
            continue
        assert other in RANK, f"{path.name} imports unknown unit {other}"
        if me in SUPPORT:
            assert other == "data", f"support module {me} imports {other}"
        else:
            assert RANK[other] <= RANK[me], f"{me} (layer {RANK[me]}) imports {other} (layer {RANK[other]})"


def test_the_check_catches_an_upward_import(tmp_path):
    """The parser sees a function-level relative import of a higher layer."""
    f = tmp_path / "nets" / "probe.py"
    f.parent.mkdir()
    f.write_text("import daebench.tracking\n\n\ndef g():\n    from ..methods import dae\n    from .. import data\n")
    assert imports(f, tmp_path) == {"methods", "data", "tracking"}


def test_lint_imports_keeps_the_layer_contracts():
    """import-linter's contracts in pyproject.toml (layers, and support modules below the rest) hold."""
    import shutil
    import subprocess

    exe = shutil.which("lint-imports")
    assert exe, "lint-imports not found: pip install -e '.[dev]' (import-linter)"
    proc = subprocess.run([exe, "--no-cache"], cwd=PKG.parents[1], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout
