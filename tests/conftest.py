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
        return Path(os.environ["DAEBENCH_SMOKE_RUN"])
    proj = copy_workflow(tmp_path_factory.mktemp("smoke_run"))
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
