"""The ``asyncsim`` command line. User errors are one line and exit code 2."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from sim.compare import DEFAULT_METHODS
from sim.scenario import Scenario, ScenarioError, load_scenario, parse_override
from sim.engine import RunInterrupted
from trainers.base import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Simulate asynchronous Local-SGD (Liu et al., 2024) with real PyTorch payloads.",
)
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    """Print a user error as exactly one line (control characters escaped) and exit."""
    line = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in message)
    err_console.print(f"error: {line}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def _load(file: Path, method: Optional[str], sets: list[str]) -> Scenario:
    try:
        overrides = dict(parse_override(s) for s in sets)
        return load_scenario(file, overrides=overrides, method=method)
    except ScenarioError as exc:
        fail(str(exc))
        raise  # unreachable, for type checkers


FILE_ARG = typer.Argument(..., help="scenario YAML file", show_default=False)
METHOD_OPT = typer.Option(None, "--method", "-m", help="method preset to run instead of the file's")
SET_OPT = typer.Option([], "--set", "-s", help="override a field: KEY=VALUE, e.g. schedule.H=100 (repeatable)")


@app.command()
def run(
    file: Path = FILE_ARG,
    method: Optional[str] = METHOD_OPT,
    set_: list[str] = SET_OPT,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run folder (computed afresh); default reports/runs/<name>-<method>-s<seed>-<digest>"),
    seed: Optional[int] = typer.Option(None, "--seed", help="override the scenario's seed"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    executor: str = typer.Option("serial", "--executor", "-e", help="serial | process | ray: where jobs are computed (never changes results)"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="processes / Ray CPUs (default: cores / compute.threads)"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: start a local Ray)"),
    checkpoint_every: int = typer.Option(100, "--checkpoint-every", min=0, help="save the run's state every N server updates (0: only on Ctrl-C / SIGTERM)"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run from its checkpoint (same bytes as an uninterrupted run)"),
) -> None:
    """Simulate one scenario and write its run folder; prints the run hash."""
    from sim.runner import run as run_scenario

    sets = list(set_) + ([f"seed={seed}"] if seed is not None else [])
    scenario = _load(file, method, sets)
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
            metric = ""
            if row is not None:
                key = "perplexity" if "perplexity" in row else "loss"
                metric = f"{key} {row[key]:.4g}"
            bar.update(task, completed=min(t_local, t_max), metric=metric)

    try:
        if executor not in ("serial", "process", "ray"):
            fail(f"--executor {executor!r}: expected serial, process or ray")
        result = run_scenario(scenario, out=out, progress=progress, executor=executor, jobs=jobs, address=address,
                              checkpoint_every=checkpoint_every, resume=resume)
    except RunInterrupted:
        if bar is not None:
            bar.stop()
        again = " ".join(["asyncsim", *sys.argv[1:]]) + ("" if resume else " --resume")
        fail(f"interrupted; state saved, no run folder written (earlier results untouched); continue with: {again}", code=130)
        return
    except KeyboardInterrupt:
        if bar is not None:
            bar.stop()
        fail("interrupted; no run folder was written (earlier results are untouched)", code=130)
        return
    except UserError as exc:
        if bar is not None:
            bar.stop()
        fail(str(exc))
    finally:
        if bar is not None:
            bar.stop()
    s = result.summary
    final = s["final"]
    metrics = ", ".join(f"{k} {final[k]:.4f}" for k in ("perplexity", "loss", "accuracy") if k in final)
    how = "reused existing run" if result.reused else s.get("status", "finished")
    if result.resumed_from is not None:
        how += f" (resumed from server update {result.resumed_from})"
    if s.get("status") in ("diverged", "stalled"):
        err_console.print(f"[red]{s['status']}[/red]: {s[s['status']]}; metrics up to that point are in the run folder")
    console.print(
        f"{how}: {s['method']} seed {s['seed']}: {metrics} after {final['t_local']} local steps, "
        f"{s['simulated_seconds']:.1f} simulated s"
    )
    console.print(f"run folder: {result.folder}")
    console.print(f"run hash: {result.run_hash}")


def canonical_command(command: str, args: list[str], **options: Any) -> str:
    """The command line that reproduces a report, rebuilt from parsed options."""
    import shlex

    parts = ["asyncsim", command, *args]
    for key, value in options.items():
        flag = "--" + key.rstrip("_").replace("_", "-")
        for v in value if isinstance(value, list) else [value]:
            if v is not None:
                parts += [flag, str(v)]
    return " ".join(shlex.quote(p) for p in parts)


class RunsProgress:
    """A progress bar over whole runs (compare, reproduce)."""

    def __init__(self, total: int = 0):
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[last]}"),
                            TimeElapsedColumn(), console=err_console)
        self.task = self.bar.add_task("runs", total=total, last="")
        self.pretrain_tasks: dict[str, Any] = {}

    def __enter__(self) -> "RunsProgress":
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    def total(self, n: int) -> None:
        self.bar.update(self.task, total=n)

    def pretraining(self, label: str, step: int, total: int) -> None:
        """A second bar while shared pretraining runs before the runs fan out."""
        if label not in self.pretrain_tasks:
            self.pretrain_tasks[label] = self.bar.add_task(label, total=total, last=f"{label} (once, cached for every run)")
        self.bar.update(self.pretrain_tasks[label], completed=step)

    def done(self, spec: Any, reused: bool) -> None:
        label = f"{spec.scenario.name}/{spec.method} seed {spec.seed}" + (f" [{spec.sweep_value}]" if spec.sweep_value is not None else "")
        self.bar.update(self.task, advance=1, last=label + (" (reused)" if reused else ""))


@app.command()
def compare(
    files: list[Path] = typer.Argument(..., help="scenario YAML file(s)", show_default=False),
    methods: str = typer.Option(",".join(DEFAULT_METHODS), "--methods", help="comma-separated presets"),
    seeds: str = typer.Option("0", "--seeds", help="comma-separated seeds, e.g. 0,1,2"),
    sweep: Optional[str] = typer.Option(None, "--sweep", help="axis to sweep: workers=4,8,16 | heterogeneity=no,slight,moderate,very | c=0,0.1 | model=... | any.field=v1,v2"),
    set_: list[str] = SET_OPT,
    name: Optional[str] = typer.Option(None, "--name", help="report folder name under reports/ (default from the scenario and sweep)"),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="runs computed in parallel (one process each)"),
    reports_dir: Path = typer.Option(Path("reports"), "--reports-dir", help="where report folders go"),
) -> None:
    """Run methods x seeds (x a swept axis), reusing existing runs; write plots, tables and report.md."""
    from sim import compare as cmp

    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    try:
        seed_list = [int(x) for x in seeds.split(",") if x.strip()]
    except ValueError:
        fail(f"--seeds {seeds!r}: expected comma-separated integers, e.g. 0,1,2")
    try:
        specs, axis = cmp.plan(list(files), method_list, seed_list, sweep, list(set_))
    except ScenarioError as exc:
        fail(str(exc))
    if not specs:
        fail("nothing to run: no method accepts the swept field")
    label = name or (specs[0].scenario.name + (f"_{axis}" if axis else ""))
    with RunsProgress(len(specs)) as progress:
        try:
            computed = cmp.execute(specs, jobs=jobs, on_done=progress.done, on_pretrain=progress.pretraining)
        except UserError as exc:
            fail(str(exc))
    out_dir = reports_dir / label
    command = canonical_command("compare", [str(f) for f in files], methods=methods, seeds=seeds, sweep=sweep,
                                set_=list(set_), name=name, jobs=jobs)
    files_written = cmp.build_report(specs, axis, method_list, out_dir, command, computed)
    console.print(f"{len(specs)} runs ({computed} computed, {len(specs) - computed} reused); report: {files_written['report']}")
    console.print(files_written["table_md"].read_text(encoding="utf-8"))


@app.command()
def reproduce(
    scenario: Path = typer.Argument(Path("scenarios/very_heterogeneous.yaml"), help="base scenario (its fleet is swept for Table 1)"),
    name: str = typer.Option("paper_toy", "--name", help="report folder under reports/"),
    seeds: str = typer.Option("0,1,2", "--seeds", help="comma-separated seeds"),
    set_: list[str] = SET_OPT,
    jobs: int = typer.Option(2, "--jobs", "-j", min=1, help="runs computed in parallel (one process each)"),
    reports_dir: Path = typer.Option(Path("reports"), "--reports-dir"),
    notes: Optional[Path] = typer.Option(None, "--notes", help="a markdown file appended to report.md (e.g. a tuning sweep)"),
) -> None:
    """Run the paper's comparisons (Fig. 2, 6, 7, 8; Tables 1, 4) and check each finding on the numbers."""
    from sim.reproduce import reproduce as run_reproduction

    try:
        seed_list = [int(x) for x in seeds.split(",") if x.strip()]
    except ValueError:
        fail(f"--seeds {seeds!r}: expected comma-separated integers, e.g. 0,1,2")
    try:
        notes_text = notes.read_text(encoding="utf-8") if notes is not None else None
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"--notes {notes}: cannot read ({getattr(exc, 'strerror', None) or exc})")
    with RunsProgress() as progress:
        try:
            command = canonical_command("reproduce", [str(scenario)], name=name, seeds=seeds, set_=list(set_), jobs=jobs,
                                        notes=notes)
            report = run_reproduction(scenario, reports_dir / name, seed_list, jobs, list(set_), command,
                                      on_plan=progress.total, on_done=progress.done, notes=notes_text,
                                      on_pretrain=progress.pretraining)
        except UserError as exc:
            fail(str(exc))
    console.print(f"report: {report}")


@app.command()
def sweep(
    file: Path = FILE_ARG,
    grid: list[str] = typer.Option(..., "--grid", "-g", help="an axis: method=a,b | seed=0,1,2 | any.field=v1,v2 (repeatable; the cross product runs)"),
    set_: list[str] = SET_OPT,
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="runs computed in parallel (one process each)"),
    csv: Optional[Path] = typer.Option(None, "--csv", help="also write the table of runs as CSV"),
) -> None:
    """Run the cross product of grid axes, reusing existing run folders; print a table of runs."""
    from sim import compare as cmp

    try:
        specs = cmp.plan_grid(file, list(grid), list(set_))
    except ScenarioError as exc:
        fail(str(exc))
    with RunsProgress(len(specs)) as progress:
        try:
            computed = cmp.execute(specs, jobs=jobs, on_done=progress.done, on_pretrain=progress.pretraining)
        except UserError as exc:
            fail(str(exc))
    _metrics, _events, runs = cmp.load_results(specs)
    metric = "final_perplexity" if "final_perplexity" in runs.columns else "final_loss"
    table = Table("method", "seed", "setting", metric.removeprefix("final_"), "simulated s", "run hash", "folder")
    for r in runs.itertuples():
        table.add_row(r.method, str(r.seed), r.sweep or "-", f"{getattr(r, metric):.4f}", f"{r.simulated_seconds:.0f}",
                      r.run_hash[:12], r.folder)
    console.print(table)
    console.print(f"{len(specs)} runs ({computed} computed, {len(specs) - computed} reused)")
    if csv is not None:
        runs.to_csv(csv, index=False)


@app.command()
def trace(
    run_folder: Path = typer.Argument(..., help="a run folder (with events.parquet)", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output JSON (default RUN/trace.json)"),
) -> None:
    """Export a run's events as Chrome/Perfetto trace JSON (one track per worker)."""
    from sim.trace import write_trace

    if not (run_folder / "events.parquet").exists():
        fail(f"{run_folder}: not a run folder (no events.parquet)")
    path = write_trace(run_folder, out)
    console.print(f"wrote {path}; open it at https://ui.perfetto.dev")


@app.command()
def validate(file: Path = FILE_ARG, method: Optional[str] = METHOD_OPT, set_: list[str] = SET_OPT) -> None:
    """Check a scenario file; prints its resolved method and digest."""
    sc = _load(file, method, set_)
    m = sc.method
    console.print(
        f"ok: {file}: {sc.name}, trainer {sc.trainer.name}, k={sc.workers.k}, method {m.preset} "
        f"({m.schedule}, outer {m.outer['name'] if m.outer else '-'}, fix {m.fix['name'] if m.fix else '-'}, "
        f"DyLU {'on' if m.dylu else 'off'}), t_max {sc.schedule.t_max}, digest {sc.digest()[:12]}"
    )


@app.command()
def methods() -> None:
    """List the method presets."""
    from sim.presets import DESCRIPTIONS, PRESETS

    table = Table("preset", "schedule", "outer", "fix", "DyLU", "what")
    for name, p in PRESETS.items():
        table.add_row(
            name,
            p["schedule"],
            (p["outer"] or {}).get("name", "-"),
            (p["fix"] or {}).get("name", "-"),
            "on" if p["dylu"] else "off",
            DESCRIPTIONS[name],
        )
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
        from sim.runner import build_trainer

        trainer = build_trainer(_load(scenario, None, set_))
        flops_fn = getattr(trainer, "flops_per_step", None)
        if not callable(flops_fn):
            fail(f"{scenario}: trainer does not report flops_per_step(); FLOP-rated devices cannot be timed")
        flops = flops_fn()
        console.print(f"model of {scenario}: {flops:.3g} FLOPs per local step (6 x parameters x tokens)")
    table = Table("fleet", "devices: s/step" + (" for this model" if flops else " (or peak TFLOP/s x MFU)"), "slowest/fastest", "description")
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
        table.add_row(path.stem, ", ".join(cells), ratio, " ".join(fleet.description.split()).split(". ")[0])
    console.print(table)


# language-model commands (models, pretrain) live in their own module
from sim.cli_lm import register as _register_lm_commands  # noqa: E402

_register_lm_commands(app)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
