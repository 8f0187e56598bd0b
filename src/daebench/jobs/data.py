"""Data jobs: download a dataset's source files (the network step), prepare it (no network, possibly on a
compute node), simulate or fetch the genotypes; and the slices and paths the workflow derives for them."""
from __future__ import annotations

import logging
from pathlib import Path

from .. import paths
from ..config import ConfigError, dataset_path_problems
from ..data.registry import DATASETS, needs_download
from .base import write_json

log = logging.getLogger("daebench")


# --- run functions -----------------------------------------------------------------------------------------


def download_data(cfg: dict, out: Path, progress: bool = True) -> None:
    from ..data import download

    d = cfg["data"]
    records = download(cfg["dataset"], download_dir=d["download_dir"], base_url=d["base_url"], path=cfg.get("path"),
                       progress=progress)
    # The records (url, checksum of each file) are the job's output: the preprocessing job depends on it.
    write_json(out, {"dataset": cfg["dataset"], "files": records})
    log.info("downloaded %s: %s", cfg["dataset"], sorted(records))


def prepare_data(cfg: dict, out: Path, progress: bool = True) -> None:
    from ..data import prepare

    d = cfg["data"]
    # The dataset's own block (data.images: image_size, channels, fit), where it has one.
    own = d.get(cfg["dataset"]) or {}
    # No network here: the workflow may run this on a compute node; download-data ran first where needed.
    manifest = prepare(cfg["dataset"], out, download_dir=d["download_dir"], seed=d["seed"],
                       test_fraction=d["test_fraction"], base_url=d["base_url"], max_train=d["max_train"],
                       max_test=d["max_test"], path=cfg.get("path"), download=False, progress=progress,
                       image_size=own.get("image_size"), channels=own.get("channels"), fit=own.get("fit"))
    log.info("prepared %s: %s", cfg["dataset"], manifest["counts"])


def prepare_genotypes(cfg: dict, out: Path, progress: bool = True) -> None:
    from ..data.genotypes import prepare_genotypes as prepare

    manifest = prepare(cfg, Path(out), progress=progress)
    log.info("genotypes: %d individuals, %d sites, %d PCA components", manifest["n_individuals"],
             manifest["n_sites"], manifest["k"])


# --- slices and paths (what the workflow passes and where files live) --------------------------------------


def data_slice(config: dict, dataset: str) -> dict:
    # A dataset read from a local copy (dataset_paths.<name>) also depends on that path; the others' slices
    # stay exactly {"dataset", "data"}, so adding datasets reruns none of their work. A block of data named
    # after a dataset (data.images) holds that dataset's own options: it reaches that dataset's jobs only.
    data = {k: v for k, v in config["data"].items() if k == dataset or k not in DATASETS}
    out = {"dataset": dataset, "data": data}
    if dataset in config["dataset_paths"]:
        out["path"] = config["dataset_paths"][dataset]
    return out


def prepare_slice(config: dict, dataset: str) -> dict:
    # Validation checks the configured dataset's local copy; this covers a dataset named only by a target path.
    problems = dataset_path_problems(config, dataset)
    if problems:
        raise ConfigError("invalid parameters:\n  - " + "\n  - ".join(problems))
    return data_slice(config, dataset)


def download_slice(config: dict, dataset: str) -> dict:
    return {"dataset": dataset, "data": {k: config["data"][k] for k in ("download_dir", "base_url")}}


def download_record(config: dict, wildcards) -> list | str:
    # Only datasets with a download get the input: the others' prepare jobs keep exactly the inputs (none)
    # they were run with, so adding the download step reruns none of their work.
    if not needs_download(wildcards.dataset, config["dataset_paths"].get(wildcards.dataset)):
        return []
    return f"{config['data']['download_dir']}/{wildcards.dataset}/download.json"


def data_dir(config: dict, dataset: str) -> str:
    return paths.DATA.format(dataset=dataset)


def manifest(config: dict, wildcards) -> str:
    return paths.MANIFEST.format(dataset=wildcards.dataset)


def genotypes_slice(config: dict, source: str) -> dict:
    return {**config["ddvi"]["genotypes"], "source": source}
