import http.server
import os
import shutil
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


@pytest.fixture()
def project(tmp_path):
    """A copy of the workflow (Snakefile, params, rules, envs, the smoke preset) to run Snakemake in."""
    for item in ("Snakefile", "params.yaml", "workflow", "envs", "tests/smoke.yaml"):
        src = ROOT / item
        dst = tmp_path / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    return tmp_path


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
