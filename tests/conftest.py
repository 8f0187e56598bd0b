import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_mlflow_env():
    """mlflow.set_tracking_uri() also exports MLFLOW_TRACKING_URI; without this, a store used by one
    in-process test would leak into the subprocesses (snakemake, dvc) of the next."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    for k in saved:
        del os.environ[k]
    yield
    for k in [k for k in os.environ if k.startswith("MLFLOW_")]:
        del os.environ[k]
    os.environ.update(saved)


def copy_workflow(dest: Path) -> Path:
    """A copy of the workflow (Snakefile, params, rules, envs, the smoke preset) to run Snakemake in."""
    for item in ("Snakefile", "params.yaml", "workflow", "envs", "notebooks", "tests/smoke.yaml"):
        src = ROOT / item
        dst = dest / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    return dest


@pytest.fixture()
def project(tmp_path):
    return copy_workflow(tmp_path)


# Every study's tables on the smoke preset: the end-to-end tests read one undisturbed run of them
# (`smoke_run`), and the chaos test must reproduce them bit for bit under kills.
SMOKE_TABLES = {
    "two_phase": ["results/table4.csv"] + [f"results/two_phase/{t}.csv" for t in ("table1", "table2", "table3",
                                                                                  "table5", "table10")],
    "dbae": [f"results/dbae/{t}.csv" for t in ("table1", "table2", "table3", "table4", "table5", "table9")],
    "scorevae": ["results/scorevae/table1.csv"],
    "ddvi": [f"results/ddvi/{t}.csv" for t in ("table1", "table3", "table8")],
}
SMOKE_FIGURES = ["results/scorevae/recon_grid.png", "results/ddvi/latents_cluster.png"]
SMOKE_REPORT = "results/report.html"  # every study's section, so also DDVI's Table 2 and latent plots


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the marker into the worker assignment
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`-n 2 --dist loadgroup`, as .ci/run): every test that reads the shared smoke run goes to
    one worker, so the run is built once per session; the other tests are spread over the workers."""
    for item in items:
        if "smoke_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("smoke_run"))


def require(available: bool, what: str) -> None:
    """A test that needs a tool (Chromium, SLURM, munge): skipped with the reason where it is missing, but a
    failure under CI=true, where .ci/run installs every tool, so CI cannot pass by skipping."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {what}: .ci/run installs it; a CI run must not skip this test")
    pytest.skip(what)


SMOKE_STAMP = ".daebench_code"  # in a smoke project: the code_hash() of the checkout that built it


def code_hash() -> str:
    """sha256 over what decides a smoke run's results: src/, workflow/, the Snakefile, params.yaml and the
    smoke preset (paths and contents; caches skipped)."""
    import hashlib

    h = hashlib.sha256()
    files = [p for d in ("src", "workflow") for p in (ROOT / d).rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")]
    for p in sorted(files + [ROOT / "Snakefile", ROOT / "params.yaml", ROOT / "tests/smoke.yaml"]):
        h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def reused_smoke_project(proj: Path) -> Path:
    """A finished smoke project, if the code that built it is this checkout's; else the test fails."""
    stamp = proj / SMOKE_STAMP
    built_by = stamp.read_text().strip() if stamp.exists() else "unknown code (no stamp)"
    if built_by != code_hash():
        pytest.fail(f"DAEBENCH_SMOKE_RUN={proj} was built by other code ({built_by}; this checkout: "
                    f"{code_hash()}): its tables say nothing about this code. Unset it to build a fresh one.")
    return proj


def workflow_env() -> dict[str, str]:
    """The environment of a Snakemake subprocess: this one without MLFLOW_* (the workflow sets its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}


def snakemake(args, cwd, timeout=600, **kw):
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=workflow_env(), check=False, **kw)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One undisturbed smoke run of every study's tables, figures and the report (about 160 jobs), shared by
    the slow end-to-end tests: each reads its study's outputs and adds its own targets beside them."""
    if os.environ.get("DAEBENCH_SMOKE_RUN"):  # debugging the slow tests: a finished smoke project, reused as is
        return reused_smoke_project(Path(os.environ["DAEBENCH_SMOKE_RUN"]))
    proj = copy_workflow(tmp_path_factory.mktemp("smoke_run"))
    (proj / SMOKE_STAMP).write_text(code_hash() + "\n")
    targets = [t for ts in SMOKE_TABLES.values() for t in ts] + SMOKE_FIGURES + [SMOKE_REPORT]
    proc = snakemake(["--cores", "2", *targets, "--configfile", "tests/smoke.yaml"], proj, timeout=2400)
    (proj / "snakemake.out").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proj


class FileServer:
    """A local HTTP server on 127.0.0.1 for download tests: serves ``files`` (URL path -> bytes) and records
    every request path."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.lying_length: set[str] = set()  # paths whose body is cut off after the headers
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path in server.lying_length else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def file_server():
    srv = FileServer()
    yield srv
    srv.close()
