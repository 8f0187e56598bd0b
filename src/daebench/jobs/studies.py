"""Study-level jobs: the papers' claims tested on each study's tables, emergence ladders (claims at a
ladder of training budgets) and the HTML report; and what the workflow derives for them."""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from types import SimpleNamespace

from ..config import ConfigError
from .base import as_json
from .dbae import dbae_outputs, dbae_table_inputs
from .ddvi import ddvi_outputs
from .scorevae import scorevae_outputs, scorevae_table_inputs
from .two_phase import ablation_inputs, table4_inputs, table4_provenance, two_phase_outputs

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

    paths = {name: Path(p) for name, p in _pairs(tables, "--tables", "name=path (table4=results/table4.csv)")}
    df = write_study_claims(study, paths, cfg, Path(out), [Path(p) for p in samples])
    log.info("wrote %s: %s", out, summary(df))


def claims_all(inputs: list, out: Path, progress: bool = True) -> None:
    from ..claims import combine, summary

    df = combine([Path(p) for p in inputs], Path(out))
    log.info("wrote %s (%s): %s", out, ", ".join(df["study"].unique()), summary(df))


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
           progress: bool = True) -> None:
    from papermill.exceptions import PapermillExecutionError

    from ..report import render_report
    from ..tracking import experiment_name, tracking_uri

    params = json.loads(params_json)
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


def claims_study(config: dict, study: str):
    from ..claims import STUDIES as CLAIMS

    if study not in CLAIMS:
        raise ConfigError(f"no claims for study {study!r}; known: {', '.join(CLAIMS)}")
    return CLAIMS[study]


def study_claims_inputs(config: dict, wildcards) -> dict:
    # The study's tables that exist (all of them when none does yet, so asking for the claims builds them);
    # the two-phase study's one table always. Beside them, the scoring JSONs of those tables' reconstruction
    # rows, whose per-image values give the claims their paired intervals.
    tables = claims_study(config, wildcards.study).TABLES
    have = {k: v for k, v in tables.items() if os.path.exists(v)}
    chosen = have if have and wildcards.study != "two_phase" else tables
    return {**chosen, "samples": claims_samples(config, wildcards.study, list(chosen))}


# The scoring jobs of reconstructions (results/metrics/, results/dbae/metrics/, results/scorevae/metrics/)
_SCORES = re.compile(r"^results/(dbae/|scorevae/)?metrics/.+\.json$")


def claims_samples(config: dict, study: str, tables: list[str]) -> list[str]:
    """The reconstruction scoring JSONs behind ``tables`` of ``study`` (none for a study without any)."""
    inputs = {"two_phase": lambda t: table4_inputs(config, SimpleNamespace()),
              "two_phase_ablations": lambda t: ablation_inputs(config, SimpleNamespace(table=t)),
              "dbae": lambda t: dbae_table_inputs(config, SimpleNamespace(table=t)),
              "scorevae": lambda t: scorevae_table_inputs(config, SimpleNamespace())}.get(study)
    if inputs is None:
        return []
    return list(dict.fromkeys(p for t in tables for p in inputs(t) if _SCORES.match(p)))


def study_claims_cfg(config: dict, wildcards) -> str:
    from ..claims import study_cfg

    return as_json(study_cfg(wildcards.study, config))


def study_claims_provenance(config: dict, wildcards) -> str:
    return table4_provenance(config, wildcards) if wildcards.study == "two_phase" else ""


def claims_tables_arg(config: dict, wildcards, input) -> str:
    return " ".join(f"{k}={v}" for k, v in input.items() if k != "samples")


def claims_files(config: dict, wildcards) -> list[str]:
    from ..claims import STUDIES as CLAIMS

    ran = [s for s, mod in CLAIMS.items() if s == "two_phase" or any(os.path.exists(p) for p in mod.TABLES.values())]
    return [f"results/claims/{s}.csv" for s in ran]


def emergence_point_inputs(config: dict, wildcards) -> dict:
    """The prepared data (shared with the main run: no budget changes them); at scale 1, the main run's tables
    of the study, which are that point's."""
    from ..emergence import is_main_run, point_tables

    inputs = {"data": f"resources/data/{config['dataset']}/manifest.json"}
    if is_main_run(wildcards.scale):
        tables = claims_study(config, wildcards.study).TABLES
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
    """Everything a study produces besides Table 4: its `all` target, and what the report shows of it."""
    return {"two_phase_ablations": two_phase_outputs, "dbae": dbae_outputs, "scorevae": scorevae_outputs,
            "ddvi": ddvi_outputs}[study](config)


def report_claims(config: dict, wildcards) -> list[str]:
    return [f"results/claims/{s}.csv" for s in report_studies(config)]


def report_study_inputs(config: dict, wildcards) -> list[str]:
    return [p for s in report_studies(config)[1:] for p in study_outputs(config, s)]


def report_notebook_params(config: dict, wildcards, input) -> str:
    # Notebook parameters; the reconstructions are found under recon_dir/<dataset>/<method>/<mode>.npz.
    from ..report import method_studies

    return as_json({"table4_csv": input.table4, "claims_csvs": list(input.claims), "recon_dir": "results/recon",
                    "studies": report_studies(config), "method_studies": method_studies(config),
                    "bench_dir": "logs/benchmarks"})


# Each study's headline numbers for `dvc metrics show` (results/summary/<study>.json): per table, the
# columns that name a row and the metrics shown for it.
HEADLINES = {
    "two_phase": {"table4": (("method", "mode"), ("ssim", "fd_domain"))},
    "two_phase_ablations": {"table1": (("method",), ("psnr", "ssim")), "table2": (("method",), ("psnr", "fd_domain")),
                            "table3": (("method",), ("psnr", "ssim", "fd_domain"))},
    "dbae": {"table1": (("method",), ("ap",)), "table2": (("method", "x_T"), ("ssim",)),
             "table4": (("method", "source"), ("fd_domain",))},
    "scorevae": {"table1": (("method", "phase", "mode"), ("ssim",))},
    "ddvi": {"table1": (("prior", "method"), ("elbo",)), "table2": (("prior", "method"), ("knn_acc",)),
             "table3": (("method",), ("nmi",))},
}


def headline_numbers(study: str, tables: dict) -> dict:
    """{table: {row: {metric: value}}} from a study's tables (name -> CSV path); rows are named by the
    table's key columns joined with '/'."""
    import math

    import pandas as pd

    out = {}
    for name, (keys, metrics) in HEADLINES[study].items():
        df = pd.read_csv(tables[name])
        if missing := [c for c in (*keys, *metrics) if c not in df.columns]:
            raise SystemExit(f"{tables[name]}: no column(s) {', '.join(missing)} for the {study} summary "
                             f"(columns: {', '.join(map(str, df.columns))})")
        out[name] = {"/".join(str(r[k]) for k in keys): {m: (None if math.isnan(float(r[m])) else float(r[m]))
                                                         for m in metrics} for _, r in df.iterrows()}
    return out


def summary(study: str, tables: list[str], out: Path, progress: bool = True) -> None:
    from .base import write_json

    paths = dict(_pairs(tables, "--tables", "name=path (table4=results/table4.csv)"))
    write_json(out, {study: headline_numbers(study, paths)})
    log.info("wrote %s", out)


def summary_inputs(config: dict, wildcards) -> dict:
    """The study's tables its summary reads."""
    tables = claims_study(config, wildcards.study).TABLES
    return {name: tables[name] for name in HEADLINES[wildcards.study]}
