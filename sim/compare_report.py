"""A comparison's report: its tables, plots and report.md, drawn from runs already loaded.

``compare`` (and each experiment of ``reproduce``) draws it from the run
folders it just computed or reused (:func:`sim.compare.build_report`).
``asyncsim report`` draws it again later (sim/report_folder.py): from the
run folders when they are still at hand, else from the CSVs the report
folder kept (committed reports: the run store is git-ignored). So drawing
is kept apart from running: :func:`render_report` takes the loaded tables
and draws whatever they allow; a plot that needs a table that is gone is
not drawn, and the result says which and why.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # annotations only
    from sim.scenario import Scenario

#: every file a comparison report is made of (diagnostics only when its runs recorded them): its own, and nothing
#: else, which is what ``asyncsim report`` may rewrite
REPORT_FILES = {
    "curves_updates": "curves_updates.png",
    "curves_time": "curves_time.png",
    "table_md": "table.md",
    "table_csv": "table.csv",
    "runs_csv": "runs.csv",
    "curves_csv": "curves.csv",
    "timeline": "timeline.png",
    "staleness": "staleness.png",
    "time_budget": "time_per_worker.png",
    "time_budget_csv": "time_per_worker.csv",
    "time_to_target_csv": "time_to_target.csv",
    "diagnostics_csv": "diagnostics.csv",
    "diagnostics": "diagnostics.png",
    "report": "report.md",
}
#: the tables a report keeps that it cannot make again without the runs: ``asyncsim report`` reads them and never
#: rewrites them
KEPT_TABLES = ("runs.csv", "curves.csv", "time_per_worker.csv", "time_to_target.csv", "diagnostics.csv")


@dataclass
class ReportData:
    """What a report is drawn from: the runs' own tables, or what a report folder kept of them.

    From run folders, ``metrics`` and ``events`` are every run's tables and
    ``scenarios`` (by the runs' ``folder`` column) give each timeline its
    grace period and worker devices. Where the runs are gone, ``metrics``
    may come from ``curves.csv`` and ``events`` is None; ``budgets``,
    ``times`` and ``diagnostics`` are then the report's own CSVs of them.
    """

    runs: pd.DataFrame
    metrics: pd.DataFrame | None = None
    events: pd.DataFrame | None = None
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    budgets: pd.DataFrame | None = None
    times: pd.DataFrame | None = None
    diagnostics: pd.DataFrame | None = None


@dataclass
class Rendered:
    """The files written (by REPORT_FILES key), and each file not drawn with the table it needs."""

    files: dict[str, Path]
    missing: dict[str, str]


def primary_metric(runs: pd.DataFrame) -> str:
    """The metric a report leads with, from the runs' final columns (the same choice as from their curves)."""
    from sim.report import PRIMARY_METRICS

    return next(m for m in PRIMARY_METRICS if f"final_{m}" in runs.columns)


def render_report(
    data: ReportData,
    axis_label: str | None,
    methods: list[str],
    out_dir: Path,
    command: str,
    provenance: str,
    target: float | None = None,
    existing: frozenset[str] = frozenset(),
) -> Rendered:
    """Write what ``data`` allows of a comparison's plots, tables and report.md into ``out_dir``.

    ``provenance`` is the sentence after the methods and seeds (how many runs,
    computed or reused). A plot that cannot be drawn keeps its place in
    report.md when its file is among ``existing`` (kept from when the runs
    were at hand), else report.md says it is not drawn. Tables read from the
    report (:data:`KEPT_TABLES`) are not written again.
    """
    from sim.report import (budget_markdown, column_labels, diagnostics_table, final_table, plot_compare_curves,
                            plot_diagnostics, plot_staleness, plot_time_budget, plot_timeline, table_markdown,
                            time_to_target, time_to_target_markdown, worker_time_budget)

    out_dir.mkdir(parents=True, exist_ok=True)
    runs, metrics, events = data.runs, data.metrics, data.events
    from_runs = events is not None  # the run folders are at hand: every table is made afresh
    files: dict[str, Path] = {}
    missing: dict[str, str] = {}

    def path(key: str) -> Path:
        files[key] = out_dir / REPORT_FILES[key]
        return files[key]

    def lack(key: str, needs: str) -> None:
        missing[REPORT_FILES[key]] = needs

    metric = primary_metric(runs)
    log_y = metric == "perplexity"
    if metrics is not None:
        plot_compare_curves(metrics, "t_local", path("curves_updates"), methods, log_y=log_y, axis_label=axis_label)
        plot_compare_curves(metrics, "tau", path("curves_time"), methods, log_y=log_y, axis_label=axis_label)
        if from_runs:
            _curves_frame(metrics).to_csv(path("curves_csv"), index=False)
    else:
        lack("curves_updates", "metrics")
        lack("curves_time", "metrics")
    table = final_table(runs, metric, methods)
    table.to_csv(path("table_csv"), index=False)
    if from_runs:
        runs.to_csv(path("runs_csv"), index=False)
    markdown = table_markdown(table, metric, axis_label)
    path("table_md").write_text(markdown + "\n", encoding="utf-8")
    # the first seed at the last swept value (for heterogeneity: the most heterogeneous fleet)
    first = runs[runs["seed"] == runs["seed"].iloc[0]].iloc[-1]
    panel = runs[(runs["seed"] == first["seed"]) & (runs["sweep"] == first["sweep"])
                 & (runs["scenario"] == first["scenario"])]
    panel = panel.iloc[sorted(range(len(panel)), key=lambda i: _order(methods, panel["method"].iloc[i]))]
    budgets = data.budgets
    if events is not None:
        first_events = events[(events["seed"] == first["seed"]) & (events["sweep"] == first["sweep"])
                              & (events["scenario"] == first["scenario"])]
        scenarios = {r.method: data.scenarios[r.folder] for r in panel.itertuples()}
        grace = {m: sc.schedule.grace_period for m, sc in scenarios.items()}
        plot_timeline(first_events, path("timeline"), methods, grace)
        plot_staleness(events, path("staleness"), methods)
        budgets = pd.concat([worker_time_budget(first_events[first_events["method"] == m],
                                                [d.name for d in sc.workers.devices]).assign(method=m)
                             for m, sc in scenarios.items()], ignore_index=True)
        budgets.to_csv(path("time_budget_csv"), index=False)
    else:
        lack("timeline", "events")
        lack("staleness", "events")
    per_method = {} if budgets is None else {
        m: b.drop(columns="method").reset_index(drop=True) for m, b in budgets.groupby("method", sort=False)}
    budget_sections = []
    if per_method:
        plot_time_budget(per_method, path("time_budget"))
        for method, budget in per_method.items():
            budget_sections += [f"**{method}**", "", budget_markdown(budget), ""]
    else:
        lack("time_budget", "events")
    wall = table.assign(column=column_labels(table)).pivot_table(index="method", columns="column",
                                                                  values="simulated_seconds", sort=False)
    times = data.times
    if times is None and metrics is not None:
        times = time_to_target(metrics, table, metric, target)
        times.to_csv(path("time_to_target_csv"), index=False)
    target_source = "given by --target" if target is not None else f"the worst method's mean final {metric}"
    if times is not None:
        target_section = [time_to_target_markdown(times, methods), "",
                          f"The target is {target_source} in each column: the first evaluation at or below it "
                          "(`time_to_target.csv`).", ""]
    else:
        target_section = ["Not drawn: it needs the runs' metrics (`curves.csv`, or the run folders).", ""]
    traffic_section = _traffic_section(runs, methods)
    diagnostics_section = []
    diagnostics = diagnostics_table(events) if events is not None else data.diagnostics
    if diagnostics is not None and len(diagnostics):  # some runs recorded eval.diagnostics
        if events is not None:
            diagnostics.to_csv(path("diagnostics_csv"), index=False)
            plot_diagnostics(events, path("diagnostics"), methods)
        else:
            lack("diagnostics", "events")
        diagnostics_section = [
            "## Per-update diagnostics (eval.diagnostics): pseudo-gradients by round length", "",
            _image("diagnostics", "diagnostics", files, missing, existing), "",
            _diagnostics_markdown(diagnostics), "",
            "Means over every seed's syncs (`diagnostics.csv`): the pseudo-gradient's norm per local step, its cosine "
            "to the mean of the last k pseudo-gradients, and the norm of the outer step that applied it.", ""]
    seeds = sorted(set(runs["seed"]))
    swept = ", ".join(dict.fromkeys(runs["sweep"]))

    def image(key: str, alt: str) -> str:
        return _image(key, alt, files, missing, existing)

    lines = [
        f"# Comparison: {', '.join(sorted(set(runs['scenario'])))}",
        "",
        "Made by:",
        "",
        f"    {command}",
        "",
        f"Methods: {', '.join(methods)}; seeds: {', '.join(map(str, seeds))}"
        + (f"; swept {axis_label}: {swept}" if axis_label else "") + f". {provenance}",
        "",
        *_missing_note(missing, existing),
        f"## Final eval {metric}",
        "",
        markdown,
        "",
        "## Simulated wall-clock to finish the budget (s, mean over seeds)",
        "",
        _frame_markdown(wall),
        "",
        f"## Simulated wall-clock to reach the target {metric} (s, mean ± std over seeds)",
        "",
        *target_section,
        *traffic_section,
        f"## Eval {metric} against total local updates",
        "",
        image("curves_updates", "curves vs updates"),
        "",
        f"## Eval {metric} against simulated wall-clock",
        "",
        image("curves_time", "curves vs time"),
        "",
        "## Worker timeline (first rounds, first seed" + (f", {axis_label} = {first['sweep']})" if axis_label else ")"),
        "",
        image("timeline", "timeline"),
        "",
        "## Staleness at sync",
        "",
        image("staleness", "staleness"),
        "",
        "## Time per worker (first seed): training, communication, lost work, idle",
        "",
        image("time_budget", "time per worker"),
        "",
        *budget_sections,
        *diagnostics_section,
        "Per-run numbers and folders: `runs.csv`; the table as CSV: `table.csv`; time per worker: `time_per_worker.csv`.",
    ]
    path("report").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Rendered(files, missing)


def _order(methods: list[str], method: str) -> int:
    return methods.index(method) if method in methods else len(methods)


def _curves_frame(metrics: pd.DataFrame) -> pd.DataFrame:
    """Every run's evaluations, which run first: what the curves and time-to-target are drawn from without the runs."""
    keys = ["scenario", "sweep", "method", "seed"]
    return metrics[keys + [c for c in metrics.columns if c not in keys]]


def _image(key: str, alt: str, files: dict[str, Path], missing: dict[str, str], existing: frozenset[str]) -> str:
    """A plot's place in report.md: the image when it was drawn now or is kept from before, else why it is not."""
    name = REPORT_FILES[key]
    if key in files or name in existing:
        return f"![{alt}]({name})"
    return f"Not drawn: it needs the runs' {missing.get(name, 'tables')}."


def _missing_note(missing: dict[str, str], existing: frozenset[str]) -> list[str]:
    """One paragraph, when the report was drawn without its runs: what is not drawn, and that older files stay."""
    if not missing:
        return []
    kept = "; the files drawn from the runs are kept" if set(missing) & existing else ""
    return [f"Drawn again from this folder's CSVs, without the run folders. Not drawn: {not_drawn(missing)}{kept}.",
            ""]


def not_drawn(missing: dict[str, str]) -> str:
    """``timeline.png, staleness.png (need the runs' events)``: the files not drawn, grouped by what they need."""
    needs = dict.fromkeys(missing.values())
    return "; ".join(f"{', '.join(n for n, w in missing.items() if w == need)} (need the runs' {need})"
                     for need in needs)


def _traffic_section(runs: pd.DataFrame, methods: list[str]) -> list[str]:
    """GB sent and peak rates per method, when the runs sent anything (runs.csv of older reports may lack them)."""
    if "gb_sent" not in runs.columns or not runs["gb_sent"].any():
        return []
    from sim.report import column_labels
    from sim.traffic import PEAK_COLUMNS, TRAFFIC_COLUMNS  # imports torch: only for runs that sent something

    section = []
    labelled = runs.assign(column=column_labels(runs))
    for col, what in zip(TRAFFIC_COLUMNS, ("in all", "across regions")):
        frame = labelled.pivot_table(index="method", columns="column", values=col, sort=False)
        section += [f"## GB sent per run {what} (mean over seeds)", "",
                    _frame_markdown(frame.reindex([m for m in methods if m in frame.index]), digits=4), ""]
    if all(col in runs.columns for col in PEAK_COLUMNS):
        peaks = labelled.pivot_table(index="method", columns="column", values=list(PEAK_COLUMNS), sort=False)
        peaks = peaks.reindex([m for m in methods if m in peaks.index])
        for col, what in zip(PEAK_COLUMNS, ("Peak rate at the server, in and out (Gbit/s", "Peak rate on the busiest "
                                            "worker's link, one direction (Gbit/s", "Largest single upload (MB")):
            section += [f"## {what}, mean over seeds)", "", _frame_markdown(peaks[col], digits=4), ""]
    section += ["A transfer counts at its average rate, bytes over the time from leaving to landing "
                "(queueing included); rates of transfers on one link at once add up (sim/traffic.py). "
                "The largest upload is what one sync asks of a worker's link at a time.", ""]
    return section


def _diagnostics_markdown(table: pd.DataFrame) -> str:
    """The diagnostics table: a row per method (swept value) and round length."""
    lines = ["| method | steps | syncs | norm per step | cosine | outer step norm |", "|---|---|---|---|---|---|"]
    for r in table.itertuples():
        label = r.method + (f" [{r.sweep}]" if getattr(r, "sweep", "") else "")
        lines.append(f"| {label} | {r.steps} | {r.syncs} | {r.norm_per_step:.4g} | {r.cosine:.3f} | {r.update_norm:.4g} |")
    return "\n".join(lines)


def _frame_markdown(frame: pd.DataFrame, digits: int = 1) -> str:
    cols = [str(c) or "value" for c in frame.columns]
    lines = ["| method | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for method, row in frame.iterrows():
        lines.append(f"| {method} | " + " | ".join(f"{v:.{digits}f}" for v in row) + " |")
    return "\n".join(lines)
