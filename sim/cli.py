"""The ``asyncsim`` command line. User errors are one line and exit code 2.

Shared options (``--method``, ``--seed``, ``--set``, ``--out``, ``--runs``,
``-j``, ``--quiet``, ``--force``) are defined once in :mod:`sim.cli_common`
and mean the same in every command. Heavy modules (torch, pandas,
matplotlib) are imported inside the commands that need them.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from sim.cli_common import (ADDRESS_OPT, FILE_ARG, FORCE_OPT, JOBS_OPT, METHOD_SET_OPT, NAME_OPT, QUIET_OPT,
                            RUNS_EXECUTOR_OPT, RUNS_OPT, SET_OPT, STORE_OPT, OneValueGroup, canonical_command,
                            cluster_of, console, default_jobs, err_console, fail, fail_with, load, method_opt, out_opt,
                            narrow_table, parse_method_sets, parse_seeds, seed_opt, split_list,
                            use_runs_dir)
from sim.cli_init import register as register_init_command
from sim.cli_lm import register as register_lm_commands
from sim.cli_live import register as register_live_commands
from sim.cli_report import register as register_report_commands
from sim.cli_store import register as register_store_commands
from sim.errors import RunDiverged, RunInterrupted, ScenarioError, UserError, naming_file

#: compare's methods when --method is not given (mirrors sim.compare.DEFAULT_METHODS, which imports pandas)
DEFAULT_METHODS = "finetune_1w,diloco,async_diloco,async_poly,async_buffer,dn_dylu"

app = typer.Typer(
    cls=OneValueGroup,  # an option given twice that click would silently drop is one line instead
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Simulate asynchronous Local-SGD (Liu et al., 2024) with real PyTorch payloads.",
)


@app.command()
def run(
    file: Path = FILE_ARG,
    method: Optional[str] = method_opt(None),
    set_: list[str] = SET_OPT,
    seed: Optional[str] = seed_opt(None),
    out: Optional[Path] = out_opt("run folder, computed afresh (default: the run store, reused when it exists)"),
    runs: Optional[Path] = RUNS_OPT,
    jobs: Optional[int] = JOBS_OPT,
    quiet: bool = QUIET_OPT,
    executor: str = typer.Option("serial", "--executor", "-e", help="serial | process | ray: where jobs are computed (never changes results)"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: start a local Ray)"),
    checkpoint_every: int = typer.Option(100, "--checkpoint-every", min=0, help="save the run's state every N server updates (0: only on Ctrl-C / SIGTERM)"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run from its checkpoint (same bytes as an uninterrupted run)"),
    bad_checkpoint: str = typer.Option("stop", "--bad-checkpoint", help="stop | restart: when --resume finds a damaged, truncated, foreign or older checkpoint, stop in one line (default) or keep it aside and start afresh"),
) -> None:
    """Simulate one scenario and write its run folder; prints the run hash."""
    if method is not None and "," in method:
        fail(f"--method {method!r}: run takes one method; use compare for several")
    seeds = parse_seeds(seed) if seed is not None else []
    if len(seeds) > 1:
        fail(f"--seed {seed!r}: run takes one seed; use compare or sweep for several")
    if executor not in ("serial", "process", "ray"):
        fail(f"--executor {executor!r}: expected serial, process or ray")
    if bad_checkpoint not in ("stop", "restart"):
        fail(f"--bad-checkpoint {bad_checkpoint!r}: expected stop or restart")
    use_runs_dir(runs)
    scenario = load(file, method, list(set_) + [f"seed={s}" for s in seeds])
    from sim.runner import run as run_scenario

    bar = None if quiet else Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[metric]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    )
    progress = None
    if bar is not None:
        bar.start()
        task = bar.add_task(f"{scenario.name}/{scenario.method.preset}", total=scenario.schedule.t_max, metric="")

        def progress(t_local: int, t_max: int, row: dict[str, Any] | None) -> None:
            if row is not None:
                key = "perplexity" if "perplexity" in row else "loss"
                bar.update(task, metric=f"{key} {row[key]:.4g}")
            bar.update(task, completed=min(t_local, t_max))

    pretraining = None if bar is None else follow_pretraining(bar, metric="once, cached for later runs")

    def notify(line: str) -> None:
        (bar.console if bar is not None else err_console).print(f"note: {line}", markup=False)

    started = time.monotonic()  # for the wall time printed at the end; never part of the results
    try:
        with naming_file(file):  # a field found bad only once the run is built names the scenario file too
            result = run_scenario(scenario, out=out, progress=progress, executor=executor,
                                  jobs=jobs or default_jobs(scenario.compute.threads), address=address,
                                  checkpoint_every=checkpoint_every, resume=resume, notify=notify,
                                  bad_checkpoint=bad_checkpoint, on_pretrain=pretraining)  # type: ignore[arg-type]
    except RunInterrupted:
        if bar is not None:
            bar.stop()
        again = " ".join(["asyncsim", *sys.argv[1:]]) + ("" if resume else " --resume")
        fail(f"interrupted; state saved, no run folder written (earlier results untouched); continue with: {again}", code=130)
    except KeyboardInterrupt:
        if bar is not None:
            bar.stop()
        fail("interrupted; no run folder was written (earlier results are untouched)", code=130)
    except UserError as exc:
        if bar is not None:
            bar.stop()
        fail_with(exc)
    finally:
        if bar is not None:
            if "result" in locals() and result.reused:  # a full bar, not an empty one that never moved
                bar.update(task, completed=scenario.schedule.t_max, metric="reused")
            bar.stop()
    s = result.summary
    final = s["final"]
    metrics = ", ".join(f"{k} {final[k]:.4f}" for k in ("perplexity", "loss", "accuracy") if k in final)
    how = "reused existing run" if result.reused else s.get("status", "finished")
    if result.resumed_from is not None:
        how += f" (resumed from server update {result.resumed_from})"
    console.print(
        f"{how}: {s['method']} seed {s['seed']}: {metrics} after {final['t_local']} local steps, "
        f"{s['simulated_seconds']:.1f} simulated s"
    )
    console.print(f"run folder: {result.folder}")
    console.print(f"run hash: {result.run_hash}")
    pretrains = scenario.trainer.name == "lm" and (scenario.trainer.config.get("pretrain_steps") or 0) > 0
    console.print(f"wall time: {wall_time(time.monotonic() - started)}"
                  + ("" if result.reused else " on this machine"
                     + (" (pretraining, if it was not cached, included)" if pretrains else "")))
    if s.get("status") in ("diverged", "stalled"):  # the run folder is written, but the run did not finish
        fail(f"{s['status']}: {s[s['status']]}; metrics up to that point are in {result.folder}", RunDiverged.exit_code)


def wall_time(seconds: float) -> str:
    """``42 s``, ``9 min 32 s`` or ``2 h 05 min``: how long a command took, for people."""
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


INTERRUPTED_RUNS = ("interrupted; finished runs are kept and interrupted ones saved their state "
                    "(no report written); run the same command again to continue")


def follow_pretraining(bar: Progress, **fields: str) -> Callable[[str, int, int], None]:
    """A pretraining progress callback (sim.prepare.PretrainProgress): one bar per checkpoint label, added to ``bar``
    with ``fields`` (its text columns) on the first step, then moved."""
    tasks: dict[str, Any] = {}

    def update(label: str, step: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(label, total=total, **fields)
        bar.update(tasks[label], completed=step)

    return update


class RunsProgress:
    """A progress bar over whole runs (compare, reproduce, sweep): done, running, queued."""

    def __init__(self, total: int = 0, quiet: bool = False):
        self.quiet = quiet
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[last]}"), TimeElapsedColumn(), TextColumn("eta"),
                            TimeRemainingColumn(), console=err_console, disable=quiet)
        self.task = self.bar.add_task("runs", total=total, last="")
        #: a second bar while shared pretraining runs before the runs fan out
        self.pretraining = follow_pretraining(self.bar, last="once, cached for every run")
        self.running: list[str] = []
        self.waiting = 0  # runs queued behind the running ones (a cluster's queue)

    def __enter__(self) -> "RunsProgress":
        self.bar.start()
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        """Stops the bar; a stop by signal or a user error ends the command in one line."""
        self.bar.stop()
        if isinstance(exc, RunInterrupted):
            fail(INTERRUPTED_RUNS, code=130)
        if isinstance(exc, UserError):
            fail_with(exc)

    def total(self, n: int) -> None:
        self.bar.update(self.task, total=n)

    @staticmethod
    def _label(spec: Any) -> str:
        return f"{spec.method} s{spec.seed}" + (f" [{spec.sweep_value}]" if spec.sweep_value is not None else "")

    def _show(self, last: str) -> None:
        running = f"running: {', '.join(self.running)}" if self.running else ""
        waiting = f"queued: {self.waiting}" if self.waiting else ""
        self.bar.update(self.task, last=" | ".join(x for x in (running, waiting, last) if x))

    def queued(self, n: int) -> None:
        self.waiting = n
        self._show("")

    def started(self, spec: Any) -> None:
        self.running.append(self._label(spec))
        self._show("")

    def note(self, line: str) -> None:
        """One line about a decision on a run (a stored run set aside, a wait for another command), above the bar."""
        (self.bar.console if not self.quiet else err_console).print(f"note: {line}", markup=False)

    def done(self, spec: Any, reused: bool) -> None:
        label = self._label(spec)
        if label in self.running:
            self.running.remove(label)
        self.bar.update(self.task, advance=1)
        self._show(f"done: {label}" + (" (reused)" if reused else ""))


def _report_folder(out: Optional[Path], name: Optional[str], default_name: str) -> Path:
    if out is not None and name is not None:
        fail("--out and --name both name the report folder; give one")
    return out if out is not None else Path("reports") / (name or default_name)


def _execute(specs: list[Any], jobs: Optional[int], quiet: bool, cluster: Any = None) -> int:
    from sim import compare as cmp

    threads = max((s.scenario.compute.threads for s in specs), default=1)
    with RunsProgress(len(specs), quiet) as progress:
        computed = cmp.execute(specs, jobs=jobs or default_jobs(threads), on_done=progress.done,
                               on_start=progress.started, on_pretrain=progress.pretraining, cluster=cluster,
                               on_queued=progress.queued, on_note=progress.note)
    notice = cmp.version_notice(specs)
    if notice:
        err_console.print(f"note: {notice}", markup=False)
    return computed


@app.command()
def compare(
    files: list[Path] = typer.Argument(..., help="scenario YAML file(s)", show_default=False),
    method: str = method_opt(DEFAULT_METHODS),
    seed: str = seed_opt("0"),
    sweep: Optional[str] = typer.Option(None, "--sweep", help="axis to sweep: workers=4,8,16 | heterogeneity=no,slight,moderate,very | c=0,0.1 | model=... | any.field=v1,v2"),
    set_: list[str] = SET_OPT,
    method_set: list[str] = METHOD_SET_OPT,
    out: Optional[Path] = out_opt("report folder (default reports/<scenario name>[_<swept axis>])"),
    name: Optional[str] = NAME_OPT,
    runs: Optional[Path] = RUNS_OPT,
    jobs: Optional[int] = JOBS_OPT,
    quiet: bool = QUIET_OPT,
    force: bool = FORCE_OPT,
    target: Optional[float] = typer.Option(None, "--target", help="eval loss / perplexity for the time-to-target table (default: the worst method's final value)"),
    executor: str = RUNS_EXECUTOR_OPT,
    address: Optional[str] = ADDRESS_OPT,
    store: Optional[Path] = STORE_OPT,
) -> None:
    """Run methods x seeds (x a swept axis), reusing existing runs; write plots, tables and report.md."""
    from sim import compare as cmp
    from sim.outputs import check_report_destination, staged_folder

    method_list = split_list(method, "--method", "diloco,dn_dylu")
    seed_list = parse_seeds(seed)
    per_method = parse_method_sets(method_set)
    use_runs_dir(runs)
    cluster = cluster_of(executor, address, store)
    try:
        specs, axis = cmp.plan(list(files), method_list, seed_list, sweep, list(set_), per_method)
    except ScenarioError as exc:
        fail_with(exc)
    out_dir = _report_folder(out, name, specs[0].scenario.name + (f"_{axis}" if axis else ""))
    command = canonical_command("compare", [str(f) for f in files], methods=method, seeds=seed, sweep=sweep,
                                set_=list(set_), method_set=list(method_set), name=name, out=out, target=target)
    try:
        check_report_destination(out_dir, command, force)
    except UserError as exc:
        fail_with(exc)
    computed = _execute(specs, jobs, quiet, cluster)
    try:
        with staged_folder(out_dir) as staged:  # the whole report or nothing: a failed write keeps the earlier one
            written = cmp.build_report(specs, axis, method_list, staged, command, computed, target)
    except UserError as exc:
        fail_with(exc)
    console.print(f"{len(specs)} runs ({computed} computed, {len(specs) - computed} reused); "
                  f"report: {out_dir / written['report'].name}")
    console.print((out_dir / written["table_md"].name).read_text(encoding="utf-8"))


@app.command()
def reproduce(
    scenario: Path = typer.Argument(Path("very_heterogeneous"), help="base scenario, a file or a shipped example's name (its fleet is swept for Table 1)"),
    seed: str = seed_opt("0,1,2"),
    set_: list[str] = SET_OPT,
    out: Optional[Path] = out_opt("report folder (default reports/paper_toy)"),
    name: Optional[str] = NAME_OPT,
    runs: Optional[Path] = RUNS_OPT,
    jobs: Optional[int] = JOBS_OPT,
    quiet: bool = QUIET_OPT,
    force: bool = FORCE_OPT,
    notes: Optional[Path] = typer.Option(None, "--notes", help="a markdown file appended to report.md (e.g. a tuning sweep)"),
    wide_set: list[str] = typer.Option([], "--wide-set", help="KEY=VALUE for every experiment but the headline (and budget): a reduced budget for the wide sweeps"),
    method_set: list[str] = METHOD_SET_OPT,
    budget_rounds: Optional[str] = typer.Option(None, "--budget-rounds", help="also run finetune, DiLoCo, DN + DyLU at these rounds per worker (e.g. 10,40,160,320) and plot the gaps"),
    executor: str = RUNS_EXECUTOR_OPT,
    address: Optional[str] = ADDRESS_OPT,
    store: Optional[Path] = STORE_OPT,
) -> None:
    """Run the paper's comparisons (Fig. 2, 6, 7, 8; Tables 1-4) and check each finding on the numbers."""
    from sim.outputs import check_report_destination
    from sim.reproduce import reproduce as run_reproduction

    seed_list = parse_seeds(seed)
    use_runs_dir(runs)
    cluster = cluster_of(executor, address, store)
    try:
        notes_text = notes.read_text(encoding="utf-8") if notes is not None else None
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"--notes {notes}: cannot read ({getattr(exc, 'strerror', None) or exc})")
    out_dir = _report_folder(out, name, "paper_toy")
    per_method = parse_method_sets(method_set)
    try:
        rounds = [int(x) for x in split_list(budget_rounds, "--budget-rounds", "10,40,160,320")] if budget_rounds else None
    except ValueError:
        fail(f"--budget-rounds {budget_rounds!r}: expected comma-separated integers, e.g. 10,40,160,320")
    command = canonical_command("reproduce", [str(scenario)], name=name, out=out, seeds=seed, set_=list(set_),
                                wide_set=list(wide_set), method_set=list(method_set), budget_rounds=budget_rounds,
                                notes=notes)
    threads = load(scenario, None, list(set_)).compute.threads
    with RunsProgress(quiet=quiet) as progress:
        check_report_destination(out_dir, command, force)
        report = run_reproduction(scenario, out_dir, seed_list, jobs or default_jobs(threads), list(set_), command,
                                  on_plan=progress.total, on_done=progress.done, notes=notes_text,
                                  on_start=progress.started, on_pretrain=progress.pretraining,
                                  wide_sets=list(wide_set), method_sets=per_method, budget_rounds=rounds,
                                  cluster=cluster, on_queued=progress.queued, on_note=progress.note)
    console.print(f"report: {report}")


@app.command()
def sweep(
    file: Path = FILE_ARG,
    grid: list[str] = typer.Option([], "--grid", "-g", help="an axis: any.field=v1,v2 (repeatable; the cross product runs)"),
    method: Optional[str] = method_opt(None),
    seed: Optional[str] = seed_opt(None),
    set_: list[str] = SET_OPT,
    out: Optional[Path] = out_opt("also write the table of runs as CSV to this file (replaces only a file asyncsim wrote)"),
    csv: Optional[Path] = typer.Option(None, "--csv", hidden=True),
    runs: Optional[Path] = RUNS_OPT,
    jobs: Optional[int] = JOBS_OPT,
    quiet: bool = QUIET_OPT,
    force: bool = FORCE_OPT,
    executor: str = RUNS_EXECUTOR_OPT,
    address: Optional[str] = ADDRESS_OPT,
    store: Optional[Path] = STORE_OPT,
) -> None:
    """Run the cross product of grid axes (and --method, --seed lists), reusing runs; print a table of runs."""
    from sim import compare as cmp
    from sim.outputs import atomic_output, check_output_file

    out = out or csv
    methods = split_list(method, "--method", "diloco,dn_dylu") if method else []
    seeds = parse_seeds(seed) if seed else []
    use_runs_dir(runs)
    cluster = cluster_of(executor, address, store)
    try:
        if out is not None:
            check_output_file(out, "--out", force)
        specs = cmp.plan_grid(file, list(grid), list(set_), methods, seeds)
    except UserError as exc:
        fail_with(exc)
    computed = _execute(specs, jobs, quiet, cluster)
    _metrics, _events, runs_frame = cmp.load_results(specs)
    metric = "final_perplexity" if "final_perplexity" in runs_frame.columns else "final_loss"
    table = narrow_table("method", "seed", "setting", metric.removeprefix("final_"), "sim. s", "run hash", wrap="setting")
    for r in runs_frame.itertuples():
        table.add_row(r.method, str(r.seed), r.sweep or "-", f"{getattr(r, metric):.4f}", f"{r.simulated_seconds:.0f}",
                      r.run_hash[:8])
    console.print(table)
    console.print(f"{len(specs)} runs ({computed} computed, {len(specs) - computed} reused); run folders in "
                  f"{specs[0].folder.parent}")
    if out is not None:
        try:
            with atomic_output(out) as tmp:  # whole or not at all; its header is how a later sweep knows it
                runs_frame.to_csv(tmp, index=False)
        except UserError as exc:
            fail_with(exc)


@app.command()
def trace(
    run_folder: Path = typer.Argument(..., help="a run folder (with events.parquet)", show_default=False),
    out: Optional[Path] = out_opt("output JSON (default RUN/trace.json; replaces only a file asyncsim wrote)"),
    force: bool = FORCE_OPT,
) -> None:
    """Export a run's events as Chrome/Perfetto trace JSON (one track per worker)."""
    from sim.outputs import check_output_file

    if not (run_folder / "events.parquet").exists():
        fail(f"{run_folder}: not a run folder (no events.parquet)")
    target = out or run_folder / "trace.json"
    try:
        check_output_file(target, "--out" if out else "trace", force)
        from sim.trace import write_trace

        path = write_trace(run_folder, out)
    except UserError as exc:
        fail_with(exc)
    console.print(f"wrote {path}; open it at https://ui.perfetto.dev")


@app.command()
def validate(file: Path = FILE_ARG, method: Optional[str] = method_opt(None), set_: list[str] = SET_OPT) -> None:
    """Check a scenario file; prints its resolved method and digest."""
    sc = load(file, method, set_)
    m = sc.method
    console.print(
        f"ok: {file}: {sc.name}, trainer {sc.trainer.name}, k={sc.workers.k}, method {m.preset} "
        f"({m.schedule}, outer {m.outer['name'] if m.outer else '-'}, fix {m.fix['name'] if m.fix else '-'}, "
        f"DyLU {'on' if m.dylu else 'off'}), t_max {sc.schedule.t_max}, digest {sc.digest()[:12]}"
    )


@app.command()
def show(file: Path = FILE_ARG, method: Optional[str] = method_opt(None), set_: list[str] = SET_OPT) -> None:
    """Print the fully resolved scenario (the preset expanded, every default filled in) and its digest.

    What a run of it will use, before running it: the outer lr a preset
    picks, the fleet's devices, the trainer's whole config.
    """
    import yaml

    sc = load(file, method, set_)
    console.print(yaml.safe_dump(sc.resolved(), sort_keys=False, width=100).rstrip(), markup=False, highlight=False)
    console.print(f"# digest {sc.digest()}", markup=False, highlight=False)


@app.command()
def methods() -> None:
    """List the method presets."""
    from sim.presets import DESCRIPTIONS, PRESETS

    # two columns, so the description reads as a sentence at 80 columns (split in five it wrapped every 15 characters)
    table = narrow_table("preset", "schedule · outer · fix · DyLU: what it is", wrap="schedule · outer · fix · DyLU: what it is")
    for name, p in PRESETS.items():
        rule = " · ".join([p["schedule"], (p["outer"] or {}).get("name", "-"), (p["fix"] or {}).get("name", "-"),
                           "DyLU" if p["dylu"] else "no DyLU"])
        table.add_row(name, f"{rule}: {DESCRIPTIONS[name]}")
    console.print(table)


@app.command()
def profiles(
    scenario: Optional[Path] = typer.Option(None, "--scenario", help="show step times for this scenario's model (FLOP-rated devices need one)"),
    set_: list[str] = SET_OPT,
) -> None:
    """List the shipped device fleets (device_profiles/) and the step times they imply."""
    from sim.profiles import PROFILE_DIR, Fleet, load_fleet_raw

    flops = None
    if scenario is not None:
        from sim.trainer_factory import build_trainer

        trainer = build_trainer(load(scenario, None, set_))
        flops_fn = getattr(trainer, "flops_per_step", None)
        if not callable(flops_fn):
            fail(f"{scenario}: trainer does not report flops_per_step(); FLOP-rated devices cannot be timed")
        flops = flops_fn()
        console.print(f"model of {scenario}: {flops:.3g} FLOPs per local step (6 x parameters x tokens)")
    # the fleet name is what a user types: never cut; devices and description wrap beside it
    table = narrow_table("fleet", "slowest/fastest", "devices: s/step" + (" for this model" if flops else
                                                                           " (or peak TFLOP/s x MFU); what it is"),
                          wrap="devices: s/step" + (" for this model" if flops else " (or peak TFLOP/s x MFU); what it is"))
    for path in sorted(PROFILE_DIR.glob("*.yaml")):
        fleet = Fleet.model_validate(load_fleet_raw(path))
        cells, times = [], []
        for d in fleet.devices:
            if d.peak_tflops is not None and flops is None:
                cells.append(f"{d.name} {d.peak_tflops:g}TF x {d.utilization:g}")
                continue
            t = d.step_time(flops)
            times.append(t)
            cells.append(f"{d.name} {t:.3g}" if d.peak_tflops is not None else f"{t:.3g}")
        ratio = f"{max(times) / min(times):.2f}x" if len(times) == len(fleet.devices) else "-"
        table.add_row(path.stem, ratio, ", ".join(cells) + ". " + " ".join(fleet.description.split()).split(". ")[0])
    console.print(table)


@app.command()
def findings(
    report: list[str] = typer.Option(
        ["toy=reports/paper_toy/report.md", "tiny LM=reports/paper_lm_tiny/report.md",
         "micro LM, paper protocol=reports/paper_lm_micro/report.md"],
        "--report", help="LABEL=PATH of a reproduce report.md, one table column each (repeatable)"),
) -> None:
    """Print the findings table (row per finding of the paper, column per reproduction) from reproduce reports."""
    from sim.findings_table import findings_table

    columns = []
    for item in report:
        label, sep, path = item.partition("=")
        if not sep or not path:
            fail(f"--report {item!r}: expected LABEL=PATH to a reproduce report.md")
        columns.append((label, Path(path)))
    console.print(findings_table(columns), markup=False)


# language-model commands (models, pretrain) and init live in their own modules
register_lm_commands(app)
register_live_commands(app)
register_store_commands(app)
register_report_commands(app)
register_init_command(app)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
