"""Emergence curves: a study's claims at a ladder of training budgets (issue: is a failing finding a
matter of scale?).

Each point of the ladder is the whole study run again in its own working directory,
``results/emergence/<study>/x<scale>/``, by a nested Snakemake on the same Snakefile, with the study's
training lengths (``Study.scaled``) multiplied by the scale and everything else as configured. The point's
``params.yaml`` is the resolved configuration, so the nested run is an ordinary, resumable run of
the pipeline: its own .snakemake metadata means a rerun after a change redoes only what the change
affects, and it runs unchanged on a GPU box or through a cluster profile (``DAEBENCH_EMERGENCE_ARGS``
adds Snakemake options, e.g. ``--profile workflow/profiles/slurm``). The prepared data are shared
(symlinked), since no budget changes them. MLflow runs go to the same store under the experiment
``<experiment>/emergence``. Scale 1 is the configured run itself: that point links the main run's tables
(which its job depends on) instead of running the same jobs a second time.

``collect`` reads every point's tables back through the study's claims module and writes, per claim
and budget, the values of the rows the claim compares and its verdict."""
from __future__ import annotations

import copy
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd

from .claims import read_samples
from .claims.core import claim_values, contexts_of, evaluate_one
from .data.store import atomic_path
from .jobs.studies import claims_cfg
from .studies import REGISTRY

# What the nested run shares with the main one: nothing a budget changes.
SHARED = ("resources/data", "resources/downloads", "resources/weights")
COLUMNS = ["study", "table", "claim_id", "statement", "scale", "examples", "dataset", "metric", "row", "value", "ci95",
           "verdict"]


def _get(cfg: dict, path: tuple[str, ...]):
    for k in path:
        cfg = cfg[k]
    return cfg


def _set(cfg: dict, path: tuple[str, ...], value) -> None:
    for k in path[:-1]:
        cfg = cfg[k]
    cfg[path[-1]] = value


def base_examples(config: dict, study: str) -> int:
    """The study's first scaled length at scale 1 (the x axis of its curves is this times the scale)."""
    return int(_get(config, _study(study).scaled[0]))


def _study(study: str):
    if study not in REGISTRY:
        raise ValueError(f"no emergence ladder for study {study!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[study]


def point_config(config: dict, study: str, scale: float) -> dict:
    """The resolved configuration of one ladder point: the study's training lengths times ``scale``."""
    if not scale > 0:
        raise ValueError(f"emergence.scales must be positive; got {scale}")
    cfg = copy.deepcopy(config)
    for path in _study(study).scaled:
        _set(cfg, path, max(1, round(_get(config, path) * scale)))
    return cfg


def _tracking_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    uri = env.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str((root / uri[len("sqlite:///"):]).resolve())  # the main run's store
    env["MLFLOW_TRACKING_URI"] = uri
    env["MLFLOW_EXPERIMENT_NAME"] = env.get("MLFLOW_EXPERIMENT_NAME", "daebench") + "/emergence"
    return env


def run_point(config: dict, study: str, scale: float, workdir: Path, *, root: Path, cores: int,
              snakefile: Path) -> Path:
    """Run the study at one budget in ``workdir`` (its tables in ``emergence.tables``, all by default), then
    write the point's claims file from the tables; returns the claims file. Scale 1 is the main run in
    ``root``, whose tables are linked in."""
    import yaml

    mod = _study(study).claims
    names = point_tables(config, study)
    workdir.mkdir(parents=True, exist_ok=True)
    if is_main_run(scale):
        # The configured budget is the main run: its tables (this job's inputs, built by the main DAG) are the
        # point's, linked, not rebuilt by a second run of the same jobs.
        for rel in [mod.TABLES[n] for n in names] + [p.relative_to(root) for p in point_samples(root)]:
            dst = workdir / rel
            dst.unlink(missing_ok=True)  # a file an earlier version's nested run wrote here
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to((root / rel).resolve())
        print(f"emergence: x1 of {study} is the main run; its tables are linked into {workdir}", flush=True)
        return _write_point_claims(config, study, names, workdir)
    (workdir / "params.yaml").write_text("# written by `daebench emergence-point`: the resolved configuration of "
                                         f"{study} at x{scale:g} the configured training length\n"
                                         + yaml.safe_dump(point_config(config, study, scale), sort_keys=False))
    for rel in SHARED:
        src, dst = (root / rel).resolve(), workdir / rel
        if src.exists() and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src, target_is_directory=src.is_dir())
    targets = [mod.TABLES[n] for n in names]
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile.resolve()), "--directory", str(workdir),
           "--configfile", str((workdir / "params.yaml").resolve()), "--cores", str(cores), "--rerun-incomplete",
           *shlex.split(os.environ.get("DAEBENCH_EMERGENCE_ARGS", "")), *targets]
    print("emergence:", " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, env=_tracking_env(root))
    return _write_point_claims(config, study, names, workdir)


# Where the reconstructions' scoring JSONs of a run lie (their per-image values give the claims their intervals)
SAMPLE_GLOBS = ("results/metrics/*/*/*.json", "results/dbae/metrics/*/*/*.json", "results/scorevae/metrics/*/*/*.json")


def point_samples(base: Path) -> list[Path]:
    """The scoring JSONs of the run in ``base`` (a point's work folder, or the main run's root)."""
    return sorted(p for g in SAMPLE_GLOBS for p in Path(base).glob(g))


def is_main_run(scale: float) -> bool:
    """Scale 1 is the configured budget, i.e. the main run (point_config changes nothing)."""
    return float(scale) == 1.0


def point_tables(config: dict, study: str) -> list[str]:
    """The tables a ladder point builds: ``emergence.tables.<study>``, all the study's by default."""
    mod = _study(study).claims
    names = (config["emergence"].get("tables") or {}).get(study) or list(mod.TABLES)
    unknown = sorted(set(names) - set(mod.TABLES))
    if unknown:
        raise ValueError(f"emergence.tables.{study}: unknown table(s) {', '.join(unknown)}; "
                         f"known: {', '.join(mod.TABLES)}")
    return names


def _write_point_claims(config: dict, study: str, names: list[str], workdir: Path) -> Path:
    from .claims import write_study_claims

    mod = _study(study).claims
    out = workdir / "results" / "claims" / f"{study}.csv"
    write_study_claims(mod, {n: workdir / mod.TABLES[n] for n in names}, claims_cfg(config, study), out,
                       point_samples(workdir))
    return out


def collect(config: dict, study: str, points: list[tuple[float, Path]]) -> pd.DataFrame:
    """Per claim, budget and compared row: the value and the verdict, from each point's tables."""
    mod = _study(study).claims
    base = base_examples(config, study)
    out = []
    for scale, workdir in sorted(points, key=lambda p: p[0]):
        tables = {name: pd.read_csv(workdir / path) for name, path in mod.TABLES.items()
                  if (workdir / path).exists()}
        if not tables:
            raise FileNotFoundError(f"emergence point x{scale:g} of {study} has none of its tables under {workdir}")
        ms = mod.ours(tables, claims_cfg(config, study), read_samples(point_samples(workdir)))
        for claim in mod.CLAIMS:
            for context in contexts_of(claim, ms):
                verdict = evaluate_one(claim, ms, context, config.get("intervals")).verdict
                metric, values = claim_values(claim, ms, context)
                for v in values:
                    out.append({"study": study, "table": claim.table, "claim_id": claim.claim_id,
                                "statement": claim.statement.replace("{metric}", metric), "scale": scale,
                                "examples": round(base * scale), "dataset": context, "metric": metric,
                                "row": v["row"], "value": v["value"], "ci95": v["ci95"], "verdict": verdict})
    return pd.DataFrame(out, columns=COLUMNS)


def figure(df: pd.DataFrame, out: Path, title: str) -> None:
    """One panel per testable claim: the compared rows' metric against training examples (log x); a filled
    marker where the claim holds at that budget, hollow where it fails, grey where inconclusive."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    claims = [c for c, g in df.groupby("claim_id", sort=False) if (g["verdict"] != "untestable").any()]
    n = max(1, len(claims))
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.1 * rows), squeeze=False)
    for ax, claim_id in zip(axes.flat, claims):
        g = df[df["claim_id"] == claim_id]
        for row, gr in g.groupby("row", sort=False):
            gr = gr.sort_values("examples")
            line, = ax.plot(gr["examples"], gr["value"], "-", lw=1.2, label=row)
            if gr["ci95"].notna().any():
                ax.fill_between(gr["examples"], gr["value"] - gr["ci95"], gr["value"] + gr["ci95"],
                                color=line.get_color(), alpha=0.15)
            for _, x in gr.iterrows():
                face = {"holds": line.get_color(), "fails": "white"}.get(x["verdict"], "lightgrey")
                ax.plot(x["examples"], x["value"], "o", mfc=face, mec=line.get_color(), ms=6)
        ax.set_xscale("log")
        # One diverged seed (DDVI's ELBO at x8: -1160 against about -5) would flatten every other point:
        # past a factor of 20 the y axis turns symmetric-log, linear within the typical size.
        size = g["value"].abs()
        if size.max() > 20 * max(size.median(), 1e-12):
            ax.set_yscale("symlog", linthresh=max(float(size.median()), 1e-6))
        ticks = sorted(g["examples"].unique())
        ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
        ax.minorticks_off()
        ax.set_title(claim_id, fontsize=8)
        ax.set_xlabel("training examples per method", fontsize=7)
        ax.set_ylabel(g["metric"].iloc[0], fontsize=7)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(claims):]:
        ax.axis("off")
    fig.suptitle(f"{title}: claims against the training budget (filled: holds, hollow: fails, grey: "
                 "inconclusive)", fontsize=10)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def write(config: dict, study: str, points: list[tuple[float, Path]], out_csv: Path, out_png: Path) -> pd.DataFrame:
    df = collect(config, study, points)
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False)
    figure(df, out_png, _study(study).paper)
    return df
