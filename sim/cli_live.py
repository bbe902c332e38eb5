"""Commands that meet the real clock: ``live`` (a scenario as a real asynchronous system) and ``calibrate``.

``sim/cli.py`` calls :func:`register` on its app; the shared options and
``fail`` come from :mod:`sim.cli_common`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sim.cli_common import (ADDRESS_OPT, FILE_ARG, FORCE_OPT, QUIET_OPT, SET_OPT, console, err_console, fail,
                            fail_with, load, method_opt, parse_seeds, seed_opt)
from sim.errors import UserError, naming_file


def register(app: typer.Typer) -> None:
    app.command("live")(live)
    app.command("calibrate")(calibrate)


def parse_kills(items: list[str]) -> list[tuple[int, int]]:
    """``--kill W:N`` items as (worker, n-th job of that worker)."""
    kills = []
    for item in items:
        worker, _, n = item.partition(":")
        if not (worker.isdigit() and n.isdigit() and int(n) >= 1):
            fail(f"--kill {item!r}: expected WORKER:JOB, e.g. 1:3 (worker 1 dies during its 3rd job)")
        kills.append((int(worker), int(n)))
    return kills


def live(
    file: Path = FILE_ARG,
    time_scale: float = typer.Option(..., "--time-scale", "-t", help="real seconds per simulated second: each job takes S x its planned time (e.g. 0.05: a 10 s round in 0.5 s)"),
    method: Optional[str] = method_opt(None, single=True),
    set_: list[str] = SET_OPT,
    seed: Optional[str] = seed_opt(None, single=True),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run folder (default: a new reports/live/NAME-METHOD-sSEED-xSCALE)"),
    against: bool = typer.Option(True, "--against/--no-against", help="simulate the same scenario too and print how far the live run is from it"),
    tie_window_ms: float = typer.Option(2.0, "--tie-window", min=0.0, help="results sent within this many real ms of each other are one arrival time, applied in worker order (the simulation's rule for exact ties)"),
    pad: bool = typer.Option(True, "--pad/--no-pad", help="--no-pad: results leave as soon as computed (the hardware's own time; needs --time-scale 1), to compare with a fleet made by calibrate"),
    kill: list[str] = typer.Option([], "--kill", help="WORKER:JOB: that worker's process dies during its JOB-th job, a real fault (repeatable)"),
    address: Optional[str] = ADDRESS_OPT,
    quiet: bool = QUIET_OPT,
) -> None:
    """Run a scenario as a real asynchronous system on Ray and compare it with its simulation.

    Each worker is a Ray actor that trains its jobs with the scenario's
    trainer and emulates its device: a job's result leaves when S x its
    planned time has passed. The server applies the scenario's schedule
    and outer update to the results as they really arrive.
    """
    if method is not None and "," in method:
        fail(f"--method {method!r}: live takes one method")
    seeds = parse_seeds(seed) if seed is not None else []
    if len(seeds) > 1:
        fail(f"--seed {seed!r}: live takes one seed")
    kills = parse_kills(kill)
    scenario = load(file, method, list(set_) + [f"seed={s}" for s in seeds])
    from sim.live.against import describe
    from sim.live.session import live as run_live

    def notify(line: str) -> None:
        if not quiet:  # the same facts are in the summary printed at the end and in the run folder
            err_console.print(f"note: {line}", markup=False)

    try:
        with naming_file(file):
            result = run_live(scenario, time_scale, out, tie_window=tie_window_ms / 1e3, address=address,
                              against=against, kills=kills, pad=pad, notify=notify)
    except KeyboardInterrupt:
        fail("interrupted; no run folder was written (earlier results are untouched)", code=130)
    except UserError as exc:
        fail_with(exc)
    s, info = result.summary, result.summary["live"]
    final = s["final"]
    metrics = ", ".join(f"{k} {final[k]:.4f}" for k in ("perplexity", "loss", "accuracy") if k in final)
    console.print(f"{s['status']}: {s['method']} seed {s['seed']}: {metrics} after {final['t_local']} local steps, "
                  f"{s['simulated_seconds']:.1f} simulated s in {info['real_seconds']:.1f} real s")
    overruns = f"overruns: {info['overruns']} jobs computed past their emulated time; " if pad else ""
    console.print(f"{overruns}ties applied in worker order: {info['tie_batches']} ({info['tie_reordered']} reordered); "
                  f"faults: {info['faults']}")
    console.print(f"run folder: {result.folder}")
    if result.against is not None:
        for line in describe(result.against):
            console.print(line)


def calibrate(
    file: Path = FILE_ARG,
    set_: list[str] = SET_OPT,
    out: Path = typer.Option(Path("device_profiles/this_machine.yaml"), "--out", "-o", help="device profile to write"),
    workers: Optional[int] = typer.Option(None, "--workers", "-k", min=1, help="devices in the profile (default: cores / compute.threads)"),
    name: str = typer.Option("this-machine", "--name", help="device name prefix"),
    steps: int = typer.Option(20, "--steps", min=1, help="local steps per timed job"),
    repeats: int = typer.Option(5, "--repeats", min=1, help="timed jobs (and transfers); the median is kept"),
    live_jobs: int = typer.Option(0, "--live-jobs", min=0, help="then run the k workers live, un-padded, for this many jobs each and keep what they really cost: step time while sharing the machine, and each job's fixed overhead (0: skip)"),
    address: Optional[str] = ADDRESS_OPT,
    force: bool = FORCE_OPT,
) -> None:
    """Measure this machine's seconds per local step for a scenario's trainer and its actor-to-actor transfers.

    Writes a device profile: a fleet of this machine that a simulation
    (``workers: {fleet: device_profiles/this_machine.yaml}``) and the
    un-padded live comparison (``live --time-scale 1``) can use.
    """
    from sim.cli_common import default_jobs
    from sim.live.calibrate import calibrate as measure
    from sim.live.calibrate import profile_yaml
    from sim.outputs import atomic_output, check_output_file

    scenario = load(file, None, list(set_))
    try:
        check_output_file(out, "--out", force)
        k = workers or default_jobs(scenario.compute.threads)
        with naming_file(file):
            c = measure(scenario, steps=steps, repeats=repeats, address=address, workers=k, live_jobs=live_jobs)
        text = profile_yaml(c, scenario, k, name)
        with atomic_output(out) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except UserError as exc:
        fail_with(exc)
    console.print(f"{c.seconds_per_step * 1e3:.3f} ms per local step ({c.step_spread[0] * 1e3:.3f}-"
                  f"{c.step_spread[1] * 1e3:.3f}), transfers {c.latency_ms:.3f} ms + {c.bandwidth_gbps:.3g} Gbit/s")
    if c.measured_live:
        console.print(f"live, {k} worker{'s' if k != 1 else ''}: {c.live_seconds_per_step * 1e3:.3f} ms per local step, "
                      f"{c.job_overhead_ms:.2f} ms per job besides its steps")
    console.print(f"device profile: {out}")

