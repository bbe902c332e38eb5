"""A live run's timeline over its simulation's: each worker's jobs, simulated above, real below."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from sim.records import worker_intervals


def plot_timelines(sim_events: pd.DataFrame, live_events: pd.DataFrame, path: Path, title: str = "",
                   horizon: float | None = None) -> None:
    """One row per worker, simulated jobs (top) over live ones (bottom) on one simulated-time axis.

    ``horizon``: the simulated seconds shown (default: the first 8 jobs of the
    fastest worker, so single jobs stay visible; the full runs are in the tables).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # each job from dispatch to arrival (or loss); jobs still out when the run ended are not drawn
    sim, live = (worker_intervals(e).dropna(subset=["end"]) for e in (sim_events, live_events))
    k = int(max(sim["worker"].max(), live["worker"].max())) + 1
    if horizon is None:
        counts = sim.groupby("worker")["end"].nth(7)
        horizon = float(counts.min()) if len(counts) else float(sim["end"].max())
    fig, ax = plt.subplots(figsize=(11, 1.0 + 0.7 * k), constrained_layout=True)
    for spans, offset, height, color, label in ((sim, -0.16, 0.28, "C0", "simulated"), (live, 0.16, 0.28, "C1", "live")):
        shown = spans[spans["start"] <= horizon]
        for r in shown.itertuples():
            ax.barh(r.worker + offset, r.end - r.start, left=r.start, height=height,
                    color="0.6" if r.lost else color, edgecolor="white", linewidth=0.6,
                    hatch="//" if r.lost else None, label=label)
            label = None
    ax.set_yticks(range(k), [f"w{w}" for w in range(k)])
    ax.set_ylim(k - 0.5, -0.5)
    ax.set_xlim(0, horizon)
    ax.set_xlabel("simulated seconds (live: real seconds / time scale)")
    ax.legend(loc="upper right", fontsize=8, frameon=False, ncol=2)
    ax.set_title(title or "jobs: simulated (top) and live (bottom)", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
