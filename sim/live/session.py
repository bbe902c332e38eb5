"""``asyncsim live``: build a live run of a scenario, run it, write its folder, set it beside the simulation.

The folder has what a simulated run's has (scenario, metrics and events
tables, summary) plus ``live.csv``: per job, its planned and real times
(launch, compute, send, handled by the server, seconds since the start),
its compute seconds and any overrun of the emulated time. With
``against``, the simulation of the same scenario is computed in this
process and ``against.json`` holds :func:`sim.live.against.compare`.

Live runs are real, so they are never reused and never replace one
another: the default folder is new (``reports/live/NAME-METHOD-sSEED-xSCALE``,
then ``-2``, ``-3``...).
"""
from __future__ import annotations

import json
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from sim.errors import UserError
from sim.live.clock import RealClock
from sim.scenario import Scenario
from sim.signals import on_stop_signals

#: where live run folders go unless --out says otherwise (relative to the working directory)
LIVE_DIR = Path("reports") / "live"


@dataclass
class LiveResult:
    folder: Path
    summary: dict[str, Any]
    metrics: pd.DataFrame
    events: pd.DataFrame
    log: pd.DataFrame
    theta: Any
    against: dict[str, Any] | None


def live_scenario(scenario: Scenario, notify: Callable[[str], None]) -> Scenario:
    """The scenario a live server can run: refuses other schedules; the grace window closes when it ends.

    A real server cannot see the next arrival, so Algorithm 5's window is
    read as ``grace_wait: window`` (the workers synced in a window restart
    when it closes); with no grace period both readings are the same.
    """
    from sim.live.engine import LIVE_SCHEDULES

    schedule = scenario.method.schedule
    if schedule not in LIVE_SCHEDULES:
        raise UserError(f"method {scenario.method.preset!r} (schedule {schedule}) cannot run live: its transfers are "
                        f"scheduled by the simulated links; asyncsim live runs the {', '.join(LIVE_SCHEDULES)} schedules")
    if scenario.schedule.grace_period > 0 and scenario.schedule.grace_wait != "window":
        notify("schedule.grace_wait set to window: a live server cannot see the next arrival, so the workers of a "
               "grace window restart when it closes (compare with the simulation under the same reading)")
        return scenario.with_overrides({"schedule.grace_wait": "window"})
    return scenario


def _interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C and SIGTERM stop a live run at once, as KeyboardInterrupt: nothing is written (Ray's own
    SIGTERM handler, installed when it starts, would otherwise dump a stack and leave the driver half-closed)."""
    raise KeyboardInterrupt


def new_folder(scenario: Scenario, scale: float, root: Path = LIVE_DIR) -> Path:
    """A live run's default folder: never an existing one."""
    base = root / f"{scenario.name}-{scenario.method.preset}-s{scenario.seed}-x{scale:g}"
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder


def live(scenario: Scenario, scale: float, out: Path | None = None, *, tie_window: float = 0.002,
         address: str | None = None, against: bool = False, kills: Iterable[tuple[int, int]] = (),
         pad: bool = True, progress: Any = None, notify: Callable[[str], None] | None = None) -> LiveResult:
    """Run ``scenario`` live at ``scale`` real seconds per simulated second and write its run folder.

    ``pad=False``: jobs take their real compute time (``scale`` must be 1).
    """
    import torch

    from sim.build import assemble
    from sim.live.engine import LiveSimulation
    from sim.live.fleet import LiveFleet
    from sim.outputs import check_run_destination
    from sim.records import write_run_folder
    from sim.summary import run_summary
    from sim.trainer_factory import build_trainer

    say = notify or (lambda _line: None)
    try:
        clock = RealClock(scale)
    except ValueError as exc:
        raise UserError(f"--time-scale: {exc}") from None
    if not pad and scale != 1:
        raise UserError(f"--no-pad runs on the real clock: the time scale must be 1, not {scale:g}")
    scenario = live_scenario(scenario, say)
    folder = Path(out) if out is not None else new_folder(scenario, scale)
    check_run_destination(folder, "--out")
    torch.set_num_threads(scenario.compute.threads)
    trainer = build_trainer(scenario)
    say(f"starting {scenario.workers.k} worker actors on Ray for {scenario.name}/{scenario.method.preset}, "
        f"time scale {scale:g}")
    fleet = LiveFleet(scenario, kills=kills, address=address)
    with on_stop_signals(_interrupt), closing(fleet):
        parts = assemble(scenario, trainer, fleet)
        sim = LiveSimulation(parts, fleet, clock, tie_window, progress, say, pad)
        started = time.time()
        outcome = sim.run()
        real_seconds = time.time() - started
    metrics, events = outcome.recorder.metrics_frame(), outcome.recorder.events_frame()
    log = pd.DataFrame(sim.log)
    summary = run_summary(parts.settings, outcome, metrics, events)
    final = summary["final"]
    summary.update({
        "live": {"time_scale": scale, "padded": pad, "tie_window_s": tie_window, "real_seconds": real_seconds,
                 "overruns": sim.overruns, "tie_batches": sim.ties["batches"], "tie_reordered": sim.ties["reordered"],
                 "faults": int((log["fault"] != "").sum()) if len(log) else 0,
                 "ray_address": address or "local"},
    })
    comparison = None
    if against:
        from sim.live.against import compare
        from sim.runner import simulate

        simulated = simulate(scenario)
        comparison = compare(simulated.events, events, simulated.summary["final"], final,
                             simulated.summary["simulated_seconds"], outcome.simulated_seconds,
                             simulated.params, outcome.theta)
        comparison["sim_run_hash"] = simulated.run_hash
        summary["against"] = comparison
    extra: dict[str, Callable[[Path], Any]] = {
        "live.csv": lambda path: log.to_csv(path, index=False, float_format="%.6f", lineterminator="\n")}
    if comparison is not None:
        from sim.live.plots import plot_timelines

        extra["against.json"] = lambda path: path.write_text(json.dumps(comparison, indent=2) + "\n", encoding="utf-8")
        extra["timeline_vs_sim.png"] = lambda path: plot_timelines(simulated.events, events, path,
                                                                   title=f"{scenario.name} - {scenario.method.preset}, "
                                                                         f"time scale {scale:g}")
    write_run_folder(folder, scenario=scenario.resolved(), metrics=metrics, events=events, summary=summary,
                     extra_files=extra)
    return LiveResult(folder, summary, metrics, events, log, outcome.theta, comparison)
