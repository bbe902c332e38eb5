"""Plots of run curves (headless: the Agg backend, no display needed)."""
from __future__ import annotations

import math

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, ScalarFormatter  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sim.records import server_round_trips, worker_intervals  # noqa: E402

#: the metric shown first for each trainer family: lower is better
PRIMARY_METRICS = ("perplexity", "loss")


def primary_metric(metrics: pd.DataFrame) -> str:
    return next(m for m in PRIMARY_METRICS if m in metrics.columns)


def plot_run_curves(metrics: pd.DataFrame, path: Path, title: str = "") -> None:
    """Eval metric against total local updates and against simulated wall-clock.

    Every run folder gets one, so it is drawn on fixed margins: a constrained
    layout measured every tick label again and cost 40% of the drawing (a
    reproduce of 92 tiny runs spent half its time on these pictures).
    """
    metric = primary_metric(metrics)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.88, wspace=0.22)
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


# -- comparisons (asyncsim compare) ---------------------------------------------

X_LABELS = {"t_local": "total local updates", "tau": "simulated wall-clock (s)"}


def aggregate_curves(metrics: pd.DataFrame, x: str, metric: str, points: int = 200) -> pd.DataFrame:
    """Mean and min-max band over seeds, each seed interpolated onto one grid.

    Async runs evaluate at slightly different x per seed, so curves are put on
    a common grid (from the latest first point to the earliest last point)
    before averaging.
    """
    import numpy as np

    out = []
    for (scenario, sweep, method), group in metrics.groupby(["scenario", "sweep", "method"], sort=False):
        seeds = [g.sort_values(x) for _, g in group.groupby("seed")]
        lo = max(g[x].iloc[0] for g in seeds)
        hi = min(g[x].iloc[-1] for g in seeds)
        if hi <= lo:
            continue
        grid = np.linspace(lo, hi, points)
        ys = np.vstack([np.interp(grid, g[x].to_numpy(float), g[metric].to_numpy(float)) for g in seeds])
        out.append(
            pd.DataFrame(
                {
                    "scenario": scenario,
                    "sweep": sweep,
                    "method": method,
                    x: grid,
                    "mean": ys.mean(axis=0),
                    "low": ys.min(axis=0),
                    "high": ys.max(axis=0),
                    "seeds": len(seeds),
                }
            )
        )
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _panels(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return list(dict.fromkeys((str(a), str(b)) for a, b in zip(frame["scenario"], frame["sweep"])))


def _natural(key: Any) -> Any:
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", "/".join(map(str, key)))]


def plot_compare_curves(
    metrics: pd.DataFrame, x: str, path: Path, methods: list[str], log_y: bool = False, axis_label: str | None = None
) -> None:
    """One panel per (scenario, swept value), one line per method, band over seeds."""
    metric = primary_metric(metrics)
    agg = aggregate_curves(metrics, x, metric)
    panels = _panels(agg)
    cols = min(len(panels), 4)
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.6 * cols, 7.5), 3.8 * rows), squeeze=False, constrained_layout=True)
    colors = {m: f"C{i}" for i, m in enumerate(methods)}
    for ax, (scenario, sweep) in zip(axes.flat, panels):
        panel = agg[(agg["scenario"] == scenario) & (agg["sweep"] == sweep)]
        for method in methods:
            c = panel[panel["method"] == method]
            if c.empty:
                continue
            ax.plot(c[x], c["mean"], color=colors[method], label=method, lw=1.6)
            if c["seeds"].iloc[0] > 1:
                ax.fill_between(c[x], c["low"], c["high"], color=colors[method], alpha=0.18, lw=0)
        ax.set_title(f"{axis_label or 'sweep'} = {sweep}" if sweep else scenario, fontsize=10)
        ax.set_xlabel(X_LABELS.get(x, x))
        ax.set_ylabel(f"eval {metric}")
        if log_y:
            ax.set_yscale("log")
            plain_log_ticks(ax.yaxis)
        _clip_runaways(ax, panel, x, log_y)
        if x == "tau":
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), frameon=False)
    nseeds = int(agg["seeds"].max()) if not agg.empty else 0
    band = f"mean over {nseeds} seeds, band = min..max" if nseeds > 1 else "one seed"
    fig.suptitle(f"eval {metric} vs {X_LABELS.get(x, x)}\n({band})", fontsize=11)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def plain_log_ticks(axis: Any) -> None:
    """Log-axis ticks as plain numbers (18, 20, 23), not 2.3x10^1: perplexities span less than a decade."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 7.0)))
    axis.set_minor_locator(LogLocator(base=10, subs="auto"))
    formatter = ScalarFormatter()
    formatter.set_scientific(False)
    axis.set_major_formatter(formatter)
    axis.set_minor_formatter(NullFormatter())


def _clip_runaways(ax: Any, panel: pd.DataFrame, x: str, log_y: bool) -> None:
    """Keep the interesting range readable when a method blows up (async DiLoCo can reach 1e18 perplexity).

    The y-axis stops a little above where training started; methods whose
    curves leave the chart are named in the panel with their peak.
    """
    if panel.empty:
        return
    start = float(panel.sort_values(x).groupby("method")["mean"].first().max())
    low = float(panel["low"].min())
    if not (math.isfinite(start) and math.isfinite(low)) or start <= low:
        return
    log = log_y and low > 0
    top = start * (start / low) if log else start + (start - low)
    peaks = panel.groupby("method")["high"].max()
    gone = peaks[peaks > top]
    if gone.empty:
        return
    ax.set_ylim(low / (start / low) ** 0.05 if log else low - 0.05 * (start - low), top)
    note = "off the chart: " + ", ".join(f"{m} (peak {v:.3g})" for m, v in gone.items())
    ax.text(0.99, 0.97, note, transform=ax.transAxes, ha="right", va="top", fontsize=7.5, color="0.3")


def time_to_target(metrics: pd.DataFrame, table: pd.DataFrame, metric: str, target: float | None) -> pd.DataFrame:
    """Simulated seconds until each run's eval ``metric`` first reaches ``target`` (lower is better).

    Without a target, each column's (scenario, swept value) target is the
    worst method's mean final value: a level every method reaches on average,
    so the table compares how soon. A run that never reaches it has NaN.
    """
    targets = table.groupby(["scenario", "sweep"], sort=False)["mean"].max() if target is None else None
    rows = []
    for (scenario, sweep, method, seed), g in metrics.groupby(["scenario", "sweep", "method", "seed"], sort=False):
        goal = target if targets is None else float(targets[(scenario, sweep)])
        reached = g.loc[g[metric] <= goal, "tau"]
        rows.append({"scenario": scenario, "sweep": sweep, "method": method, "seed": seed, "target": goal,
                     "seconds": float(reached.min()) if len(reached) else float("nan")})
    return pd.DataFrame(rows)


def time_to_target_markdown(times: pd.DataFrame, methods: list[str]) -> str:
    """Methods (rows) x columns: mean +- std seconds over the seeds that reached the target, and how many did."""
    times = times.assign(column=column_labels(times))
    columns = list(dict.fromkeys(times["column"]))
    target = times.groupby("column")["target"].first()
    lines = ["| method | " + " | ".join(f"{c} (target {target[c]:.4g})" for c in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for method in [m for m in methods if m in set(times["method"])]:
        cells = []
        for column in columns:
            g = times[(times.column == column) & (times.method == method)]["seconds"]
            ok = g.dropna()
            if not len(ok):
                cells.append(f"not reached (0/{len(g)})")
                continue
            spread = f" ± {ok.std(ddof=1):.1f}" if len(ok) > 1 else ""
            cells.append(f"{ok.mean():.1f}{spread}" + ("" if len(ok) == len(g) else f" ({len(ok)}/{len(g)} reached)"))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def final_table(runs: pd.DataFrame, metric: str, methods: list[str]) -> pd.DataFrame:
    """Final metric per method (rows) and swept value (columns): mean, std, n; diverged runs flagged."""
    rows = []
    for (scenario, sweep, method), g in runs.groupby(["scenario", "sweep", "method"], sort=False):
        ok = g[g["status"] == "finished"]
        vals = ok[f"final_{metric}"].astype(float)
        rows.append(
            {
                "scenario": scenario,
                "sweep": sweep,
                "method": method,
                "mean": vals.mean() if len(vals) else float("nan"),
                "std": vals.std(ddof=1) if len(vals) > 1 else 0.0,
                "n": len(vals),
                "diverged": int((g["status"] == "diverged").sum()),
                "stalled": int((g["status"] == "stalled").sum()),  # device churn lost every job
                "simulated_seconds": g["simulated_seconds"].mean(),
            }
        )
    # keep the order the runs were planned in (e.g. heterogeneity no, slight, moderate, very)
    appearance = {key: i for i, key in enumerate(dict.fromkeys(zip(runs["scenario"], runs["sweep"])))}
    order = {m: i for i, m in enumerate(methods)}
    rows.sort(key=lambda r: (appearance[(r["scenario"], r["sweep"])], order.get(r["method"], len(order))))
    return pd.DataFrame(rows)


def column_labels(frame: pd.DataFrame, axis_label: str | None = None) -> pd.Series:
    """One report column per (scenario, swept value): the scenario's name, the swept value, or both when both vary."""
    swept = frame["sweep"].astype(str)
    if axis_label:
        swept = axis_label + "=" + swept
    if frame["scenario"].nunique() == 1 and (swept != "").any():
        return swept
    return (frame["scenario"] + " " + swept).str.rstrip()  # scenario names have no spaces


def table_markdown(table: pd.DataFrame, metric: str, axis_label: str | None) -> str:
    """Methods as rows, the swept axis (or scenarios, or both) as columns, 'mean ± std'."""
    table = table.copy()
    table["column"] = column_labels(table, axis_label)
    columns = list(dict.fromkeys(table["column"]))
    methods = list(dict.fromkeys(table["method"]))
    head = "| method | " + " | ".join(map(str, columns)) + " |"
    lines = [head, "|---|" + "---|" * len(columns)]
    for method in methods:
        cells = []
        for col in columns:
            r = table[(table["method"] == method) & (table["column"] == col)]
            if r.empty:
                cells.append("-")
                continue
            r = r.iloc[0]
            stopped = [f"{int(r[s])} {s}" for s in ("diverged", "stalled") if r[s]]
            if r["n"] == 0:
                cell = " / ".join(s.split()[1] for s in stopped)
            else:
                cell = f"{r['mean']:.4f} ± {r['std']:.4f}" if r["n"] > 1 else f"{r['mean']:.4f}"
                cell += f" ({', '.join(stopped)})" if stopped else ""
            cells.append(cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nFinal eval {metric}: mean ± std over seeds (lower is better)."


def worker_time_budget(events: pd.DataFrame, devices: list[str] | None = None) -> pd.DataFrame:
    """Where each worker's simulated time went in one run: training, communication, lost work, idle.

    Idle is the rest of the run: waiting for the server (sync barriers,
    grace windows) and, with churn, being down. A job still running when the
    budget is reached counts as ``unfinished``. Schedules that move their own
    transfers while workers train (Streaming DiLoCo, eager) have no
    communication inside their jobs: ``links_busy_s`` is the time some
    transfer of the worker was on the wire, much of it under training.
    """
    jobs = worker_intervals(events)
    end = float(events["tau"].max())
    overlapping = bool(events["event"].isin(["upload", "download"]).any())  # the schedule moved its own transfers
    done = jobs[jobs["end"].notna() & ~jobs["lost"]]
    lost = jobs[jobs["lost"]]
    open_ = jobs[jobs["end"].isna()]
    rows = []
    for w in sorted(jobs["worker"].unique()):
        d, lo, op = done[done["worker"] == w], lost[lost["worker"] == w], open_[open_["worker"] == w]
        training = float((d["upload_start"] - d["train_start"]).sum())
        comm = float(((d["train_start"] - d["start"]) + (d["end"] - d["upload_start"])).sum())
        lost_s = float((lo["end"] - lo["start"]).sum())
        unfinished = float((end - op["start"]).sum())
        idle = end - training - comm - lost_s - unfinished
        idle = 0.0 if abs(idle) <= 1e-9 * max(end, 1.0) else idle  # rounding of the sums, not time
        rows.append({
            "worker": int(w),
            "device": devices[int(w) % len(devices)] if devices else "",
            "jobs": len(d), "lost_jobs": len(lo),
            "training_s": training, "comm_s": comm, "lost_s": lost_s, "unfinished_s": unfinished,
            "idle_s": idle, "links_busy_s": _links_busy(events, int(w)) if overlapping else comm,
        })
    table = pd.DataFrame(rows)
    table["idle_pct"] = 100 * table["idle_s"] / end if end > 0 else 0.0
    return table


def _links_busy(events: pd.DataFrame, worker: int) -> float:
    """Seconds during which at least one of ``worker``'s recorded transfers was on the wire (their union)."""
    rows = events[events["event"].isin(["upload", "download"]) & (events["worker"] == worker)]
    busy, reach = 0.0, float("-inf")
    for start, end in sorted(zip(rows["sent"], rows["tau"])):
        if end > reach:
            busy += end - max(start, reach)
            reach = end
    return busy


def budget_markdown(table: pd.DataFrame) -> str:
    cols = ["training_s", "comm_s", "lost_s", "unfinished_s", "idle_s"]
    overlapped = bool((table["links_busy_s"] != table["comm_s"]).any()) if "links_busy_s" in table else False
    extra = " links busy s (under training and idle) |" if overlapped else ""
    lines = ["| worker | device | synced jobs | lost jobs | training s | communication s | lost work s | unfinished s | idle s | idle % |" + extra,
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if overlapped else "")]
    for r in table.itertuples():
        cells = " | ".join(f"{getattr(r, c):.1f}" for c in cols)
        tail = f" {r.links_busy_s:.1f} |" if overlapped else ""
        lines.append(f"| w{r.worker} | {r.device} | {r.jobs} | {r.lost_jobs} | {cells} | {r.idle_pct:.0f} |" + tail)
    return "\n".join(lines)


def plot_time_budget(budgets: dict[str, pd.DataFrame], path: Path) -> None:
    """Stacked bars per worker, one panel per method: where the simulated time went."""
    parts = [("training_s", "training", "C0"), ("comm_s", "communication", "C1"), ("lost_s", "lost work (device down)", "0.45"),
             ("unfinished_s", "unfinished at the end", "C4"), ("idle_s", "idle (waiting or down)", "C3")]
    fig, axes = plt.subplots(len(budgets), 1, figsize=(9, 1.0 + 0.35 * max(len(b) for b in budgets.values()) * len(budgets)),
                             squeeze=False, constrained_layout=True)
    for ax, (method, table) in zip(axes[:, 0], budgets.items()):
        left = np.zeros(len(table))
        for col, label, color in parts:
            ax.barh(table["worker"], table[col], left=left, color=color, alpha=0.35 if col == "idle_s" else 0.85,
                    label=label, height=0.7)
            left += table[col].to_numpy()
        ax.set_yticks(table["worker"])
        ax.set_yticklabels([f"w{w} {d}".strip() for w, d in zip(table["worker"], table["device"])], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(method, fontsize=10, loc="left")
        ax.set_xlabel("simulated seconds")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(parts), frameon=False, fontsize=8)
    fig.suptitle("where each worker's time went (first seed)")
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def plot_timeline(events: pd.DataFrame, path: Path, methods: list[str], grace: dict[str, float], horizon: int = 3) -> None:
    """Gantt chart of the first rounds: training, communication, waiting, lost jobs, syncs; grace windows shaded."""
    import matplotlib.patches as mpatches

    methods = [m for m in methods if m in set(events["method"])]
    servers = events[events["worker"] < 0]  # HALoS's region servers and global server: rows of their own
    rows = events.loc[events["worker"] >= 0, "worker"].nunique() + (servers["server"].nunique() + 1 if len(servers) else 0)
    fig, axes = plt.subplots(len(methods), 1, figsize=(11, 1.2 + 0.45 * rows * len(methods)),
                             squeeze=False, constrained_layout=True)
    any_comm = any_lost = any_overlap = False
    # one time axis for every method, so bars compare across panels: the longest of their first rounds
    panels = {m: (events[events["method"] == m], worker_intervals(events[events["method"] == m])) for m in methods}
    t_end = max(_first_rounds_end(ev, jobs, horizon) for ev, jobs in panels.values())
    for ax, method in zip(axes[:, 0], methods):
        ev, jobs = panels[method]
        k = int(jobs["worker"].max()) + 1
        labels = [f"w{w}" for w in range(k)]
        if (ev["worker"] < 0).any():
            labels += _plot_server_rows(ax, ev, k, t_end)
            any_comm = True
        for r in jobs.itertuples():
            if r.start > t_end or pd.isna(r.end):
                continue
            if r.lost:
                ax.barh(r.worker, r.end - r.start, left=r.start, height=0.6, color="0.6", hatch="//", alpha=0.8)
                ax.plot([r.end], [r.worker], marker="x", color="k", ms=7)
                any_lost = True
            else:
                for a, b, color in ((r.start, r.train_start, "C1"), (r.train_start, r.upload_start, "C0"), (r.upload_start, r.end, "C1")):
                    if b > a:
                        ax.barh(r.worker, b - a, left=a, height=0.6, color=color, alpha=0.85)
                any_comm = any_comm or r.train_start > r.start or r.end > r.upload_start
            if pd.notna(r.next_start) and r.next_start > r.end:
                ax.barh(r.worker, r.next_start - r.end, left=r.end, height=0.6, color="C3", alpha=0.35)
            if pd.notna(r.sync):
                ax.plot([r.sync], [r.worker], marker="|", color="k", ms=14, mew=2)
        if "sent" in ev.columns:  # Streaming DiLoCo / eager: transfers under each worker's training
            any_overlap = _plot_transfers(ax, ev, t_end) or any_overlap
        window = grace.get(method, 0.0)
        syncs = ev[(ev["event"] == "sync") & (ev["tau"] <= t_end)]["tau"].to_numpy()
        if window > 0 and len(syncs):
            start = None
            for t in syncs:
                if start is None or t - start > window:
                    start = t
                    ax.axvspan(start, min(start + window, t_end), color="C2", alpha=0.15, lw=0)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels)
        ax.set_xlim(0, t_end)
        ax.invert_yaxis()
        ax.set_title(method, fontsize=10, loc="left")
        ax.set_xlabel("simulated wall-clock (s)")
    handles = [mpatches.Patch(color="C0", alpha=0.85, label="training")]
    if any_comm:
        handles.append(mpatches.Patch(color="C1", alpha=0.85, label="communication (download / upload)"))
    if any_overlap:
        handles += [mpatches.Patch(color="C1", alpha=0.85, label="upload (thin: while training)"),
                    mpatches.Patch(color="C4", alpha=0.85, label="download")]
    handles.append(mpatches.Patch(color="C3", alpha=0.35, label="waiting (idle or down)"))
    if any_lost:
        handles.append(mpatches.Patch(facecolor="0.6", hatch="//", label="lost job (device down)"))
    handles.append(plt.Line2D([], [], color="k", marker="|", ls="", ms=12, mew=2, label="sync"))
    if any(grace.get(m, 0) > 0 for m in methods):
        handles.append(mpatches.Patch(color="C2", alpha=0.15, label="grace window"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), frameon=False)
    fig.suptitle("worker timeline of the first rounds (first seed)")
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _plot_transfers(ax: Any, ev: pd.DataFrame, t_end: float) -> bool:
    """Thin bars below each worker's row: its uploads and downloads, drawn where they overlap its training."""
    rows = ev[ev["event"].isin(["upload", "download"]) & (ev["sent"] <= t_end)]
    for r in rows.itertuples():
        color, offset = ("C1", 0.22) if r.event == "upload" else ("C4", 0.38)
        ax.barh(r.worker + offset, r.tau - r.sent, left=r.sent, height=0.14, color=color, alpha=0.85)
    return len(rows) > 0


def _first_rounds_end(ev: pd.DataFrame, jobs: pd.DataFrame, horizon: int) -> float:
    """When a method's first ``horizon`` rounds are over (every region server's first round trip, for HALoS).

    ``jobs``: its :func:`sim.records.worker_intervals`.
    """
    k = int(jobs["worker"].max()) + 1
    t_end = jobs.groupby("worker")["end"].nth(horizon).max() if len(jobs) > horizon * k else jobs["end"].max()
    t_end = float(t_end) if pd.notna(t_end) else float(jobs["end"].max())
    if "fragment" in ev.columns:  # jobs are pieces of rounds: the first rounds end at a fragment count of syncs
        parts = max(1, ev.loc[ev["event"] == "upload", "fragment"].nunique())
        syncs = ev[ev["event"] == "sync"].groupby("worker")["tau"].nth(horizon * parts - 1)
        t_end = float(syncs.max()) if len(syncs) else t_end
    if (ev["worker"] < 0).any():
        merges = ev[ev["event"] == "merge"].groupby("server")["tau"].min()
        t_end = max(t_end, float(merges.max()) * 1.05) if len(merges) else t_end
    return t_end


def _plot_server_rows(ax: Any, ev: pd.DataFrame, k: int, t_end: float) -> list[str]:
    """HALoS's rows below the workers: each LPS's syncs and round trips to the GPS, and the GPS's updates."""
    server_ids = sorted(int(r) for r in ev.loc[ev["server"] >= 0, "server"].unique())
    row_of = {r: k + i for i, r in enumerate(server_ids)}
    gps_row = k + len(server_ids)
    syncs = ev[(ev["event"] == "sync") & (ev["tau"] <= t_end)]
    ax.plot(syncs["tau"], syncs["server"].map(row_of), marker="|", color="k", ms=10, ls="")
    trips = server_round_trips(ev)
    trips = trips[trips["push"] <= t_end]
    for trip in trips.itertuples():
        for a, b in ((trip.push, trip.applied), (trip.applied, trip.merge)):
            if pd.notna(b):
                ax.barh(row_of[trip.server], b - a, left=a, height=0.6, color="C1", alpha=0.85)
    applied = trips.loc[trips["applied"] <= t_end, "applied"]
    ax.plot(applied, [gps_row] * len(applied), marker="|", color="k", ms=14, mew=2, ls="")
    return [f"LPS {r}" for r in server_ids] + ["GPS"]


def plot_staleness(events: pd.DataFrame, path: Path, methods: list[str]) -> None:
    """Histogram of staleness at sync, one panel per method."""
    methods = [m for m in methods if m in set(events["method"])]
    cols = min(len(methods), 3)
    rows = (len(methods) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3 * rows), squeeze=False, constrained_layout=True)
    synced = events[events["event"].isin(["sync", "drop"])]
    top = int(synced["staleness"].max()) if len(synced) else 0
    for ax, method in zip(axes.flat, methods):
        s = synced[synced["method"] == method]["staleness"]
        ax.hist(s, bins=range(0, top + 2), color="C1", align="left", rwidth=0.85)
        ax.set_title(f"{method} (mean {s.mean():.2f})", fontsize=10)
        ax.set_xlabel("staleness (server updates since dispatch)")
        ax.set_ylabel("syncs")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # counts of updates: no 2.5-step ticks
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def diagnostics_table(events: pd.DataFrame) -> pd.DataFrame:
    """Per method (and swept value) and round length: the mean per-update diagnostics of its syncs (eval.diagnostics).

    ``norm_per_step`` is ||g|| / steps, the pseudo-gradient's size per local
    step; ``cosine`` its cosine to the mean direction; ``update_norm`` the
    outer step's norm (sim/diagnostics.py). Empty when no run recorded them.
    """
    if "delta_norm" not in events.columns:
        return pd.DataFrame()
    syncs = events[(events["event"] == "sync") & events["delta_norm"].notna()]
    syncs = syncs.assign(norm_per_step=syncs["delta_norm"] / syncs["steps"])
    keys = [k for k in ("method", "sweep") if k in syncs.columns] + ["steps"]
    table = syncs.groupby(keys, sort=True).agg(syncs=("delta_norm", "size"), norm_per_step=("norm_per_step", "mean"),
                                                cosine=("cosine", "mean"), update_norm=("update_norm", "mean"))
    return table.reset_index()


def plot_diagnostics(events: pd.DataFrame, path: Path, methods: list[str]) -> None:
    """Pseudo-gradient norm per local step and cosine to the mean direction by round length; update norm over work."""
    table = diagnostics_table(events)
    syncs = events[(events["event"] == "sync") & events["delta_norm"].notna()]
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.6), constrained_layout=True)
    for i, method in enumerate(m for m in methods if m in set(table["method"])):
        rows = table[table["method"] == method]
        for sweep, part in rows.groupby("sweep", sort=False) if "sweep" in rows else [("", rows)]:
            label = method + (f" [{sweep}]" if sweep else "")
            axes[0].plot(part["steps"], part["norm_per_step"], marker="o", lw=1.2, label=label)
            axes[1].plot(part["steps"], part["cosine"], marker="o", lw=1.2, label=label)
            mine = syncs[(syncs["method"] == method) & (syncs["sweep"] == sweep if "sweep" in syncs else True)]
            window = max(len(mine) // 50, 1)  # a running mean over about 2% of the run
            axes[2].plot(mine["t_local"], mine["update_norm"].rolling(window, min_periods=1).mean(), lw=1.0, label=label)
    axes[0].set(xlabel="local steps in the round", ylabel="||pseudo-gradient|| / steps", title="size per local step")
    axes[1].set(xlabel="local steps in the round", ylabel="cosine to the mean direction", title="alignment")
    axes[2].set(xlabel="total local updates", ylabel="||outer step|| (running mean)", title="outer step size")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(frameon=False, fontsize=8)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def plot_budget_gap(table: pd.DataFrame, metric: str, path: Path) -> None:
    """(DN + DyLU - DiLoCo) and (finetune - DiLoCo) against rounds per worker, band = range over paired seeds."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8), constrained_layout=True)
    x = table["rounds_per_worker"]
    for i, (other, label) in enumerate((("dn_dylu", "DN + DyLU - DiLoCo"), ("finetune_1w", "finetune (k x batch) - DiLoCo"))):
        col = f"{other}_minus_diloco"
        ax.plot(x, table[col], marker="o", color=f"C{i}", label=label, lw=1.6)
        ax.fill_between(x, table[f"{col}_low"], table[f"{col}_high"], color=f"C{i}", alpha=0.18, lw=0)
    ax.axhline(0.0, color="0.4", lw=0.8)
    ax.set_xscale("log")
    ax.set_xticks(list(x), [str(int(v)) for v in x])
    ax.set_xlabel("rounds per worker (log scale)")
    ax.set_ylabel(f"final eval {metric} difference")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=9)
    seeds = int(table["seeds"].min()) if len(table) else 0
    ax.set_title(f"gap to DiLoCo against budget (mean over {seeds} seeds, band = min..max)\nabove 0: worse than DiLoCo",
                 fontsize=10)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
