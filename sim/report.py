"""Plots of run curves (headless: the Agg backend, no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

#: the metric shown first for each trainer family: lower is better
PRIMARY_METRICS = ("perplexity", "loss")


def primary_metric(metrics: pd.DataFrame) -> str:
    return next(m for m in PRIMARY_METRICS if m in metrics.columns)


def plot_run_curves(metrics: pd.DataFrame, path: Path, title: str = "") -> None:
    """Eval metric against total local updates and against simulated wall-clock."""
    metric = primary_metric(metrics)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for ax, x, label in (
        (axes[0], "t_local", "total local updates"),
        (axes[1], "tau", "simulated wall-clock (s)"),
    ):
        for method, group in metrics.groupby("method", sort=True):
            ax.plot(group[x], group[metric], marker=".", label=str(method))
        ax.set_xlabel(label)
        ax.set_ylabel(f"eval {metric}")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
