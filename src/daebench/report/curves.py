"""Training curves read from the MLflow store (SQLite read directly: no server needed), and their figure."""
from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import pandas as pd

from ..tracking import sqlite_path


def _missing_sqlite(uri: str) -> str | None:
    """The file of a sqlite:/// URI that does not exist (MLflow would create an empty store there)."""
    path = sqlite_path(uri)
    return str(path) if path is not None and not path.exists() else None


def _split_name(name: str) -> tuple[str, str]:
    method, _, phase = name.partition("/")
    return method, phase


def training_curves(uri: str, experiment: str, dataset: str | None = None, metric: str | Sequence[str] = "loss/mse",
                    rule: str = "train", methods: Collection[str] | None = None,
                    split: Callable[[str], tuple[str, str]] = _split_name,
                    keep: Callable[[str], bool] | None = None) -> pd.DataFrame:
    """Per step, the first of ``metric`` (one name or candidates in order) that each training run (tag
    ``rule``) logged: columns run_id, run_name, method, phase, metric, status, step, value. Run names are
    split into (method, phase) by ``split``; ``methods`` and ``keep`` (on the run name) select runs. Of runs
    with the same name (reruns) the latest is kept. Empty, with the reason in ``df.attrs['note']``, when the
    store or experiment does not exist."""
    cols = ["run_id", "run_name", "method", "phase", "metric", "status", "step", "value"]
    candidates = [metric] if isinstance(metric, str) else list(metric)
    empty = pd.DataFrame(columns=cols)
    if (path := _missing_sqlite(uri)) is not None:
        empty.attrs["note"] = f"no MLflow store at {path} (tracking URI {uri})"
        return empty
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        empty.attrs["note"] = f"no experiment {experiment!r} in {uri}"
        return empty
    query = f"tags.rule = '{rule}'" + (f" and tags.dataset = '{dataset}'" if dataset else "")
    runs = client.search_runs([exp.experiment_id], query, max_results=5000, order_by=["attributes.start_time DESC"])
    frames, seen = [], set()
    for run in runs:
        name = run.info.run_name or run.info.run_id
        method, phase = split(name)
        if name in seen or (methods is not None and method not in methods) or (keep is not None and not keep(name)):
            continue
        seen.add(name)
        key = next((m for m in candidates if m in run.data.metrics), None)
        hist = client.get_metric_history(run.info.run_id, key) if key else []
        if not hist:
            continue
        frames.append(pd.DataFrame({"run_id": run.info.run_id, "run_name": name, "method": method, "phase": phase,
                                    "metric": key, "status": run.info.status, "step": [m.step for m in hist],
                                    "value": [m.value for m in hist]}))
    if not frames:
        empty.attrs["note"] = f"no {rule} runs with {' or '.join(map(repr, candidates))} in experiment " \
                              f"{experiment!r} of {uri}"
        return empty
    return pd.concat(frames, ignore_index=True).sort_values(["run_name", "step"]).reset_index(drop=True)


def curves_figure(curves: pd.DataFrame, labels: dict[str, str] | None = None, metric: str = "loss/mse"):
    """One line per training run (method/phase), log-y; phases of one method share a colour."""
    import matplotlib.pyplot as plt

    labels = labels or {}
    fig, ax = plt.subplots(figsize=(9, 4.5))
    methods = list(dict.fromkeys(curves["method"]))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    for (method, phase), g in curves.groupby(["method", "phase"], sort=True):
        phases = sorted(curves.loc[curves["method"] == method, "phase"].unique())
        ax.plot(g["step"], g["value"], styles[phases.index(phase) % len(styles)],
                color=colours[methods.index(method) % len(colours)], lw=1.4,
                marker="o" if len(g) <= 30 else None, ms=3,  # short runs (a single point) stay visible
                label=f"{labels.get(method, method)} · {phase}"
                + (f" · {g['metric'].iloc[0]}" if g["metric"].iloc[0] != metric else "")
                + ("" if g["status"].iloc[0] == "FINISHED" else f" ({g['status'].iloc[0]})"))
    ax.set_yscale("symlog" if (curves["value"] <= 0).any() else "log")
    ax.set_xlabel("training step (phase 2 continues phase 1's count)")
    ax.set_ylabel(metric)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig
