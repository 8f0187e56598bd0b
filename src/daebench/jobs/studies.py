"""Study-level jobs: the papers' claims tested on each study's tables, emergence ladders (claims at a
ladder of training budgets) and the HTML report; and what the workflow derives for them."""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from .. import paths
from ..config import ConfigError
from .base import as_json
from .two_phase import table4_provenance

log = logging.getLogger("daebench")

def _pairs(items: list[str], flag: str, example: str) -> list[tuple[str, str]]:
    """``key=value`` command-line items -> pairs; anything else is an error naming the flag."""
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"{flag} takes {example} pairs; got {item!r}")
        out.append((key, value))
    return out


def claims(study: str, tables: list[str], cfg: dict, out: Path, samples: list[str] = (), progress: bool = True
           ) -> None:
    from ..claims import summary, write_study_claims

    files = {name: Path(p) for name, p in _pairs(tables, "--tables", "name=path (table4=results/table4.csv)")}
    df = write_study_claims(_study(study).claims, files, cfg, Path(out), [Path(p) for p in samples])
    log.info("wrote %s: %s", out, summary(df))


def claims_all(inputs: list, out: Path, progress: bool = True) -> None:
    from ..claims import combine, summary

    df = combine([Path(p) for p in inputs], Path(out))
    log.info("wrote %s (%s): %s", out, ", ".join(df["study"].unique()), summary(df))


def study_table(study: str, table: str, cfg: dict, inputs: list[str], out: Path, progress: bool = True) -> None:
    """A table of a study without rules of its own: its declared writer on the table's inputs."""
    from ..data.store import atomic_path

    spec = _study(study).tables.get(table)
    if spec is None:
        raise SystemExit(f"study {study} declares no table {table!r}; its tables: {', '.join(_study(study).tables)}")
    df = spec.write(cfg, list(inputs))
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)
    log.info("wrote %s (%d rows)", out, len(df))


def emergence_point(study: str, scale: str, cfg: dict, workdir: str, root: str = ".", cores: int = 1,
                    snakefile: str = "Snakefile", progress: bool = True) -> None:
    from ..emergence import run_point

    run_point(cfg, study, float(scale), Path(workdir), root=Path(root), cores=cores, snakefile=Path(snakefile))


def emergence(study: str, cfg: dict, points: list[str], out: Path, figure: Path, progress: bool = True) -> None:
    from ..emergence import write

    pts = [(float(scale), Path(workdir)) for scale, workdir in _pairs(points, "--points", "scale=workdir")]
    df = write(cfg, study, pts, Path(out), Path(figure))
    held = df.drop_duplicates(["claim_id", "scale", "dataset"]).pivot_table(
        index="claim_id", columns="scale", values="verdict", aggfunc="first")
    log.info("wrote %s and %s; verdicts by budget:\n%s", out, figure, held.to_string())


def report(notebook: str, out_html: str, executed: str, params_json: str = "{}", cwd: str = ".",
           config_hash: str | None = None, progress: bool = True) -> None:
    from papermill.exceptions import PapermillExecutionError

    from ..report.render import render_report
    from ..tracking import experiment_name, tracking_uri

    params = json.loads(params_json)
    if config_hash:
        params["config_hash"] = config_hash
    # The MLflow store and experiment reach jobs through the environment (not Snakemake params).
    params.setdefault("mlflow_uri", tracking_uri())
    params.setdefault("experiment", experiment_name())
    try:
        render_report(notebook, executed, out_html, params, cwd=cwd)
    except PapermillExecutionError as err:
        raise SystemExit(f"report notebook {notebook} failed in cell {err.exec_count}: {err.ename}: "
                         f"{err.evalue}\nthe executed notebook with the traceback is at {executed}") from None
    log.info("wrote %s (executed notebook: %s)", out_html, executed)


# --- slices and inputs ---------------------------------------------------------------------------------


def _study(name: str):
    """The study's declaration (daebench/studies/<name>.py); imported here, not at the top, because the
    declarations import the job modules."""
    from ..studies import REGISTRY

    if name not in REGISTRY:
        raise ConfigError(f"unknown study {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def registry() -> dict:
    from ..studies import REGISTRY

    return REGISTRY


def claims_cfg(config: dict, study: str) -> dict:
    """What a study's claims read from the configuration: its own part, and how intervals are drawn."""
    return {**_study(study).claims_cfg(config), "intervals": dict(config.get("intervals") or {})}


def study_table_inputs(config: dict, wildcards) -> list[str]:
    return _study(wildcards.study).tables[wildcards.table].inputs(config)


def study_table_cfg(config: dict, wildcards) -> str:
    return as_json(_study(wildcards.study).tables[wildcards.table].cfg(config))


def study_claims_inputs(config: dict, wildcards) -> dict:
    # The study's tables that exist (all of them when none does yet, so asking for the claims builds them);
    # the two-phase study's one table always. Beside them, the scoring JSONs of those tables' reconstruction
    # rows, whose per-image values give the claims their paired intervals.
    tables = _study(wildcards.study).claims.TABLES
    have = {k: v for k, v in tables.items() if os.path.exists(v)}
    chosen = have if have and wildcards.study != "two_phase" else tables
    return {**chosen, "samples": claims_samples(config, wildcards.study, list(chosen))}


# The scoring jobs of reconstructions (results/metrics/, results/dbae/metrics/, results/scorevae/metrics/)
_SCORES = re.compile(r"^results/(dbae/|scorevae/)?metrics/.+\.json$")


def claims_samples(config: dict, study: str, tables: list[str]) -> list[str]:
    """The reconstruction scoring JSONs behind ``tables`` of ``study`` (none for a study without any)."""
    inputs = _study(study).samples
    if inputs is None:
        return []
    return list(dict.fromkeys(p for t in tables for p in inputs(config, t) if _SCORES.match(p)))


def study_claims_cfg(config: dict, wildcards) -> str:
    return as_json(claims_cfg(config, wildcards.study))


def study_claims_provenance(config: dict, wildcards) -> str:
    return table4_provenance(config, wildcards) if wildcards.study == "two_phase" else ""


def claims_tables_arg(config: dict, wildcards, input) -> str:
    return " ".join(f"{k}={v}" for k, v in input.items() if k != "samples")


def claims_files(config: dict, wildcards) -> list[str]:
    ran = [s for s, st in registry().items()
           if s == "two_phase" or any(os.path.exists(p) for p in st.claims.TABLES.values())]
    return [paths.CLAIMS.format(study=s) for s in ran]


def emergence_point_inputs(config: dict, wildcards) -> dict:
    """The prepared data (shared with the main run: no budget changes them); at scale 1, the main run's tables
    of the study, which are that point's."""
    from ..emergence import is_main_run, point_tables

    inputs = {"data": paths.MANIFEST.format(dataset=config["dataset"])}
    if is_main_run(wildcards.scale):
        tables = _study(wildcards.study).claims.TABLES
        inputs.update({f"table_{n}": tables[n] for n in point_tables(config, wildcards.study)})
    return inputs


def emergence_points(config: dict, wildcards) -> dict:
    return {f"x{s:g}": f"results/emergence/{wildcards.study}/x{s:g}/results/claims/{wildcards.study}.csv"
            for s in config["emergence"]["scales"]}


def emergence_points_arg(config: dict, wildcards, input) -> str:
    return " ".join(f"{k[1:]}=results/emergence/{wildcards.study}/{k}" for k in input.keys())  # noqa: SIM118 (Snakemake input: iterating gives files)


def config_json(config: dict, wildcards) -> str:
    return as_json(config)


# report.studies picks the report's sections after Table 4 (always shown), and so what it depends on.
def report_studies(config: dict) -> list[str]:
    return ["two_phase"] + [s for s in config["report"]["studies"] if s != "two_phase"]


def study_outputs(config: dict, study: str) -> list[str]:
    """Everything a study produces: its `all` target, and what the report shows of it."""
    return _study(study).outputs(config)


def method_studies(config: dict) -> dict[str, str]:
    """training method -> study, for the report's job-time summary (the first study that lists a method)."""
    out: dict[str, str] = {}
    for name, st in registry().items():
        for m in st.methods(config):
            out.setdefault(m, name)
    return out


def report_claims(config: dict, wildcards) -> list[str]:
    return [f"results/claims/{s}.csv" for s in report_studies(config)]


def report_study_inputs(config: dict, wildcards) -> list[str]:
    return [p for s in report_studies(config)[1:] for p in study_outputs(config, s)]


def report_notebook_params(config: dict, wildcards, input) -> str:
    # Notebook parameters; the reconstructions are found under recon_dir/<dataset>/<method>/<mode>.npz.
    return as_json({"table4_csv": input.table4, "claims_csvs": list(input.claims), "recon_dir": "results/recon",
                    "studies": report_studies(config), "method_studies": method_studies(config),
                    "bench_dir": "logs/benchmarks"})


def config_hash(config: dict, wildcards) -> str:
    """The report header's hash of the resolved params: what was computed, not how (``mlflow``, ``compute``
    excluded). A rule param of the report only, outside its DVC params (the report shows it, nothing reads it)."""
    from ..tracking import params_hash

    return params_hash({k: v for k, v in dict.items(config) if k not in ("mlflow", "compute")})


def headline_numbers(study: str, tables: dict) -> dict:
    """{table: {row: {metric: value}}} of the study's headline metrics (``Study.headlines``) from its tables
    (name -> CSV path); rows are named by the table's key columns joined with '/'."""
    import math

    import pandas as pd

    out = {}
    for name, (keys, metrics) in _study(study).headlines.items():
        df = pd.read_csv(tables[name])
        if missing := [c for c in (*keys, *metrics) if c not in df.columns]:
            raise SystemExit(f"{tables[name]}: no column(s) {', '.join(missing)} for the {study} summary "
                             f"(columns: {', '.join(map(str, df.columns))})")
        out[name] = {"/".join(str(r[k]) for k in keys): {m: (None if math.isnan(float(r[m])) else float(r[m]))
                                                         for m in metrics} for _, r in df.iterrows()}
    return out


def summary(study: str, tables: list[str], out: Path, progress: bool = True) -> None:
    from .base import write_json

    files = dict(_pairs(tables, "--tables", "name=path (table4=results/table4.csv)"))
    write_json(out, {study: headline_numbers(study, files)})
    log.info("wrote %s", out)


def summary_inputs(config: dict, wildcards) -> dict:
    """The study's tables its summary reads."""
    st = _study(wildcards.study)
    return {name: st.claims.TABLES[name] for name in st.headlines}
