"""``asyncsim reproduce``: the paper's experiments on our own runs, and a verdict for each finding.

The experiments are planned from one base scenario (the paper's Table 1
"very" fleet, k = 4): the headline comparison at the base budget, the
heterogeneity levels, the staleness fixes, SGD vs Nesterov outer updates, c,
the number of workers, the model size and, on request, the budget. Wide
sweeps may run at a reduced budget (``wide_sets``); the headline always runs
at the base scenario's. Per-method settings (``method_sets``) carry the
result of a tuning sweep, so each baseline runs at its best setting, as the
paper tuned them. The verdicts themselves live in :mod:`sim.findings`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from sim import compare as cmp
from sim.cluster import Cluster
from sim.confidence import MIN_SEEDS
from sim.findings import FINDINGS, LEVELS, Results, budget_gap_finding, gap_against_budget, section_lines
from sim.outputs import staged_folder
from sim.scenario import Scenario, load_scenario, parse_override

PAPER_METHODS = ("finetune_1w", "diloco", "async_diloco", "dn_dylu")


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    methods: tuple[str, ...]
    sweep: str | None = None
    wide: bool = True  # runs at the reduced budget when one is given


def size_sweep(base: Scenario) -> str:
    """Three model sizes around the base: the toy's hidden width, or the LM's hidden size, x 3/4, 1, 3/2."""
    config = base.trainer.config
    if base.trainer.name == "lm":
        from trainers.configs import LMConfig

        field, width = "trainer.config.d_model", LMConfig(**config).arch().d_model
    else:
        field, width = "trainer.config.hidden", int(config.get("hidden", 512))
    step = 8 if width >= 32 else 1  # real widths stay multiples of 8
    sizes = sorted({max(step, round(width * f / step) * step) for f in (0.75, 1.0, 1.5)})
    return f"{field}=" + ",".join(map(str, sizes))


def steps_per_round(base: Scenario) -> int:
    """Local steps of one round of every worker, k x H: a budget of r rounds per worker is r times this."""
    return base.workers.k * base.schedule.H


def experiments(base: Scenario, budget_rounds: list[int] | None = None) -> tuple[Experiment, ...]:
    """Every experiment the findings need, planned from the base scenario."""
    exps = [
        Experiment("headline", "Tables 1-3: finetune, DiLoCo, async DiLoCo, DN + DyLU at the full budget", PAPER_METHODS,
                   wide=False),
        Experiment("heterogeneity", "Table 1 / Fig. 2, 10: levels of heterogeneity", PAPER_METHODS,
                   "heterogeneity=" + ",".join(LEVELS)),
        Experiment("fixes", "Fig. 8: existing fixes for staleness",
                   ("diloco", "async_diloco", "async_poly", "async_polythres", "async_delaycomp", "async_buffer", "dn_dylu")),
        Experiment("outer_sgd", "Fig. 6: outer SGD vs Nesterov, sync vs async",
                   ("diloco", "async_diloco", "diloco_sgd", "async_sgd")),
        Experiment("c", "Table 4: c in {0, 0.1} for DN + DyLU", ("dn_dylu",), "c=0.0,0.1"),
        Experiment("workers", "Table 2: k = 4, 8, 16 workers", PAPER_METHODS, "workers=4,8,16"),
        Experiment("size", "Table 3: model sizes", PAPER_METHODS, size_sweep(base)),
    ]
    if budget_rounds:
        per_round = steps_per_round(base)
        exps.append(Experiment("budget", "Gap against budget: rounds per worker " + ", ".join(map(str, budget_rounds)),
                               ("finetune_1w", "diloco", "dn_dylu"),
                               "schedule.t_max=" + ",".join(str(r * per_round) for r in budget_rounds), wide=False))
    return tuple(exps)


def _starting_point(res: Results) -> str:
    """Where training starts, and which methods end worse than that (short budgets make this common)."""
    start = res.initial("headline", "diloco")
    finals = pd.concat(res.runs.values())
    finals = finals[finals["status"] == "finished"]
    worse = sorted(set(finals[finals[f"final_{res.metric}"] > start]["method"]))
    better = sorted(set(finals["method"]) - set(worse))
    line = f"Before any training the eval {res.metric} is {start:.4f}."
    if worse:
        line += (f" Methods with a run ending worse than that: {', '.join(worse)}; "
                 f"every run ends better for: {', '.join(better) or 'none'}.")
    return line


def _budget_section(res: Results, out_dir: Path) -> list[str]:
    """The gap-against-budget table and plot (``budget/gap.csv``, ``budget/gap.png``)."""
    from sim.report import plot_budget_gap

    table = gap_against_budget(res)
    folder = out_dir / "budget"
    table.to_csv(folder / "gap.csv", index=False)
    plot_budget_gap(table, res.metric, folder / "gap.png")
    header = "| rounds per worker | budget | diloco | dn_dylu - diloco | finetune_1w - diloco |\n|---|---|---|---|---|"
    rows = [f"| {int(r.rounds_per_worker)} | {int(r.budget)} | {r.diloco:.4f} | {r.dn_dylu_minus_diloco:+.4f} "
            f"[{r.dn_dylu_minus_diloco_low:+.4f}, {r.dn_dylu_minus_diloco_high:+.4f}] | {r.finetune_1w_minus_diloco:+.4f} "
            f"[{r.finetune_1w_minus_diloco_low:+.4f}, {r.finetune_1w_minus_diloco_high:+.4f}] |" for r in table.itertuples()]
    return ["## Gap against budget", "",
            f"Final eval {res.metric} differences to DiLoCo, mean [min, max] over paired seeds "
            "(`budget/gap.csv`):", "", header, *rows, "", "![gap against budget](budget/gap.png)", ""]


def reproduce(
    scenario: Path,
    out_dir: Path,
    seeds: list[int],
    jobs: int,
    sets: list[str],
    command: str,
    on_plan: Callable[[int], None] | None = None,
    on_done: Callable[[Any, bool], None] | None = None,
    notes: str | None = None,
    on_pretrain: Callable[[str, int, int], None] | None = None,
    on_start: Callable[[Any], None] | None = None,
    wide_sets: list[str] | None = None,
    method_sets: dict[str, list[str]] | None = None,
    budget_rounds: list[int] | None = None,
    cluster: Cluster | None = None,
    on_queued: Callable[[int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> Path:
    """Run every experiment (reusing runs), write sub-reports and the findings report."""
    base = load_scenario(scenario, overrides=dict(parse_override(s) for s in sets))
    planned = []
    for exp in experiments(base, budget_rounds):
        exp_sets = list(sets) + (list(wide_sets or []) if exp.wide else [])
        specs, axis = cmp.plan([scenario], list(exp.methods), seeds, exp.sweep, exp_sets, method_sets)
        planned.append((exp, specs, axis))
    all_specs = [s for _, specs, _ in planned for s in specs]
    if on_plan:
        on_plan(len(all_specs))
    computed = cmp.execute(all_specs, jobs=jobs, on_done=on_done, on_pretrain=on_pretrain, on_start=on_start,
                           cluster=cluster, on_queued=on_queued, on_note=on_note)
    res = Results(steps_per_round(base))
    sections = []
    for exp, specs, _axis in planned:
        res.add(exp.name, specs)
        sections.append(f"- [{exp.title}]({exp.name}/report.md)" + ("" if exp.wide and wide_sets else " (full budget)"))
    tuned = "; ".join(f"{m}: {', '.join(v)}" for m, v in (method_sets or {}).items()) or "none"
    lines = [
        f"# Reproducing the paper's findings: {scenario.name}",
        "",
        "Made by:",
        "",
        f"    {command}",
        "",
        f"Base scenario `{scenario}` with overrides {sets or 'none'}; seeds {', '.join(map(str, seeds))}; "
        f"{len({s.folder for s in all_specs})} distinct runs ({computed} computed by this call). "
        f"The headline comparison runs at the base budget ({base.schedule.t_max} local steps); "
        + (f"the wide sweeps at a reduced budget ({', '.join(wide_sets)}). " if wide_sets else "so do the others. ")
        + f"Per-method settings from tuning: {tuned}. "
        f"Final eval {res.metric} is the mean ± std over seeds; a gap is called a tie when the seed ranges (min..max) "
        "overlap or, where both ran the same seeds, the 95% bootstrap interval of the paired per-seed difference "
        f"contains 0. Each verdict gives its seeds and budget; with fewer than {MIN_SEEDS} seeds it is indicative.",
        "",
        _starting_point(res),
        "",
        "## Findings",
        "",
    ]
    findings = [check(res) for check in FINDINGS] + ([budget_gap_finding(res)] if budget_rounds else [])
    for f in findings:
        lines += section_lines(f, res.basis(f.experiment))
    tail = ["## Experiments", ""] + sections + [""] + (["## Notes", "", notes.strip(), ""] if notes else [])
    with staged_folder(out_dir) as staged:  # the whole report or nothing: a failed write keeps the earlier one
        for exp, specs, axis in planned:
            cmp.build_report(specs, axis, list(exp.methods), staged / exp.name, command, 0)
        budget = _budget_section(res, staged) if budget_rounds else []
        (staged / "report.md").write_text("\n".join(lines + budget + tail) + "\n", encoding="utf-8")
    return out_dir / "report.md"
