import os

import pytest


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
