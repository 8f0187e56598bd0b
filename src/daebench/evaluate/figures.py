"""Figures the jobs draw (and the report shows): reconstructions in labelled rows, latent codes coloured by
class, DBAE's reconstruction against NFE, DDVI's NMI against training time."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..data.store import atomic_path


def _show_rows(ax, rows: list[np.ndarray], labels: list[str]) -> None:
    """Rows of NHWC [0, 1] images as one montage, each row labelled on the y axis."""
    from .reconstruction import montage

    ax.imshow(montage(rows), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    h = rows[0].shape[1] + 1
    ax.set_yticks([1 + h * i + h / 2 for i in range(len(rows))], labels, fontsize=9)
    ax.set_xticks([])
    for side in ax.spines.values():
        side.set_visible(False)


def recon_rows_figure(original: np.ndarray, recons: list[np.ndarray], labels: list[str], n: int = 12):
    """Originals over one row per reconstruction (NCHW in [-1, 1], same test images), labelled."""
    import matplotlib.pyplot as plt

    from .reconstruction import to_hwc01

    rows = [to_hwc01(original[:n])] + [to_hwc01(r[:n]) for r in recons]
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.65 * len(rows) + 0.4))
    _show_rows(ax, rows, ["original", *labels])
    fig.tight_layout()
    return fig


def latent_scatter_figure(inputs: list[Path], labels: list[str], out: Path | None = None, title: str = "",
                          names: list[str] | None = None, cols: int = 5):
    """One panel per run: its test codes (``z_test`` in the run's npz) coloured by class / population."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(inputs) != len(labels):
        raise ValueError(f"{len(inputs)} latent files for {len(labels)} labels")
    cols = min(cols, len(inputs))
    rows = -(-len(inputs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols, 2.8 * rows), squeeze=False)
    for ax, path, label in zip(axes.flat, inputs, labels):
        with np.load(path) as f:
            z, y = f["z_test"], f["y_test"]
            names = names or (list(f["names"]) if "names" in f else None)
        cmap = plt.get_cmap("tab10" if max(len(names or []), int(y.max()) + 1) <= 10 else "tab20")
        for c in np.unique(y):
            ax.scatter(z[y == c, 0], z[y == c, 1], s=3, color=cmap(int(c) % cmap.N),
                       label=names[int(c)] if names else str(int(c)))
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.flat[len(inputs):]:
        ax.axis("off")
    handles, leg = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, leg, loc="center right", markerscale=4, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    if out is not None:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)
    return fig


def nfe_curve_figure(table9: pd.DataFrame):
    """DBAE Table 9 as curves: each metric against the NFE, one line per row (method and x_T)."""
    import matplotlib.pyplot as plt

    nfe_cols = sorted((c for c in table9.columns if c.startswith("nfe") and c[3:].isdigit()), key=lambda c: int(c[3:]))
    metrics = list(dict.fromkeys(table9["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.8 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for _, row in table9[table9["metric"] == metric].iterrows():
            ax.plot([int(c[3:]) for c in nfe_cols], [row[c] for c in nfe_cols], marker="o", ms=4, label=row["label"])
        ax.set_xscale("log")
        ax.set_xticks([int(c[3:]) for c in nfe_cols], [c[3:] for c in nfe_cols])
        ax.set_xlabel("NFE")
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def budget_figure(table5: pd.DataFrame, out: Path | None = None):
    """DDVI Table 5 as curves: clustering NMI against the training job's wall time, one line per row (method,
    and T for DDVI), a marker per budget."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for label, g in table5.groupby("label", sort=False):
        g = g.sort_values("train_minutes")
        ax.errorbar(g["train_minutes"], g["nmi"], yerr=g["nmi_ci95"].fillna(0), marker="o", ms=4, capsize=2,
                    label=label)
    ax.set_xlabel("training wall time (min)")
    ax.set_ylabel("NMI (genotype clustering)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    if out is not None:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)
    return fig
