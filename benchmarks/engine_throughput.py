"""Engine throughput: scheduling only (null trainer, plain SGD outer) at k = 4, 64, 1024 workers.

For each k, ``async_sgd`` runs (best of ``--repeat``, default 3) of the null trainer (a 4-value parameter
vector, microseconds per job) on the paper's four "very" heterogeneous step
times (0.58, 0.75, 1.51, 3.33 s, repeated to k workers, 10% log-normal
jitter so completions do not tie), budgeted at ``--jobs`` synced jobs:

- ``simulate()`` end to end (engine, event log, data frames, run hash):
  synced jobs per second (targets, issue 5: >= 100k at k = 4, and k = 1024
  at >= 80% of k = 4);
- the engine alone (``Simulation.run``) and the SimPy events it schedules per
  job, which with the bare-SimPy rate gives the most jobs per second SimPy
  itself would allow at that many events per job.

A bare SimPy baseline runs in the same process: ``n`` processes each looping
``yield env.timeout(x)``, events per second at n = 4 and n = 1024. Last, a
cProfile of ``simulate()`` at the smallest and largest k shows what bounds it.

    .venv/bin/python benchmarks/engine_throughput.py
    .venv/bin/python benchmarks/engine_throughput.py --ks 4,1024 --jobs 5000
"""
from __future__ import annotations

import argparse
from typing import Any

import simpy
from common import emit, header, profile_top, timed

from sim import scenario_from_dict, simulate
from sim.build import assemble
from sim.engine import Simulation
from sim.executors import make_executor
from sim.profiles import fleet_path, load_fleet_raw
from sim.scenario import Scenario
from sim.trainer_factory import build_trainer

#: seconds per step of the paper's "very" fleet, read from its device profile
VERY_HETEROGENEOUS = tuple(d["seconds_per_step"] for d in load_fleet_raw(fleet_path("very_heterogeneous"))["devices"])
H = 10
TARGET_K4 = 100_000.0
TARGET_SCALING = 0.8


def scheduling_scenario(k: int, jobs: int) -> Scenario:
    return scenario_from_dict(
        {
            "name": f"engine-k{k}",
            "seed": 0,
            "trainer": {"name": "null", "config": {"dim": 4}},
            "workers": {"k": k, "devices": [{"seconds_per_step": s, "jitter": 0.1} for s in VERY_HETEROGENEOUS]},
            "method": {"preset": "async_sgd"},
            "schedule": {"H": H, "t_max": H * jobs},
            "lr": {"max": 0.01, "min": 0.0001, "warmup": 0},
            "eval": {"every": H * jobs},  # evaluate at the start and the end only
        }
    )


def synced_jobs(events: Any) -> int:
    return int(events["event"].isin(["sync", "drop"]).sum())


def engine_alone(sc: Scenario) -> tuple[float, int, int]:
    """Seconds of ``Simulation.run`` alone, synced jobs, SimPy events scheduled."""
    trainer = build_trainer(sc)
    sim = Simulation(assemble(sc, trainer, make_executor("serial", sc, trainer)))
    seconds, outcome = timed(sim.run)
    jobs = sum(1 for e in outcome.recorder.events["event"] if e in ("sync", "drop"))
    return seconds, jobs, next(sim.env._eid)  # SimPy numbers every scheduled event


def bare_simpy(processes: int, events: int) -> float:
    """Events per second of ``processes`` SimPy processes looping ``yield env.timeout(x)``."""
    env = simpy.Environment()
    per_process = max(events // processes, 1)

    def loop(i: int) -> Any:
        dt = 1.0 + i / processes  # distinct periods: a realistic, untied event queue
        for _ in range(per_process):
            yield env.timeout(dt)

    for i in range(processes):
        env.process(loop(i))
    seconds, _ = timed(env.run)
    return processes * per_process / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ks", default="4,64,1024", help="worker counts (default 4,64,1024)")
    ap.add_argument("--jobs", type=int, default=20_000, help="synced jobs per run (default 20000)")
    ap.add_argument("--simpy-events", type=int, default=500_000, help="events of each bare SimPy run (default 500000)")
    ap.add_argument("--profile-jobs", type=int, default=5_000, help="synced jobs of the profiled runs; 0: no profile")
    ap.add_argument("--repeat", type=int, default=3, help="take the best of this many runs of each measurement (default 3)")
    args = ap.parse_args()
    ks = [int(x) for x in args.ks.split(",")]
    header("engine throughput: null trainer, plain SGD outer (scheduling only)")

    simulate(scheduling_scenario(4, 200))  # warm-up: imports, first calls
    bare = {n: max(bare_simpy(n, args.simpy_events) for _ in range(args.repeat)) for n in sorted({4, 1024, *ks})}
    print(f"bare SimPy (processes looping `yield env.timeout(x)`), {args.simpy_events:,} events, best of {args.repeat}:")
    for n, rate in bare.items():
        print(f"  {n:>5} processes  {rate:>12,.0f} events/s")

    print(f"\nbest of {args.repeat} runs each:")
    print(f"{'k':>5} {'jobs':>7} {'simulate s':>10} {'jobs/s':>9} {'vs k=' + str(ks[0]):>8} {'engine s':>9} {'engine jobs/s':>13} {'events/job':>10} {'SimPy cap jobs/s':>16}")
    rates: dict[int, float] = {}
    for k in ks:
        sc = scheduling_scenario(k, args.jobs)
        seconds, result = min((timed(lambda: simulate(sc)) for _ in range(args.repeat)), key=lambda r: r[0])
        jobs = synced_jobs(result.events)
        rates[k] = jobs / seconds
        eng_s, eng_jobs, eng_events = min((engine_alone(sc) for _ in range(args.repeat)), key=lambda r: r[0])
        per_job = eng_events / eng_jobs
        cap = bare.get(k, bare[min(bare, key=lambda n: abs(n - k))]) / per_job
        print(
            f"{k:>5} {jobs:>7} {seconds:>10.2f} {rates[k]:>9,.0f} {rates[k] / rates[ks[0]]:>8.2f} "
            f"{eng_s:>9.2f} {eng_jobs / eng_s:>13,.0f} {per_job:>10.1f} {cap:>16,.0f}"
        )
    if 4 in rates:
        emit("engine: jobs/s at k=4", rates[4], TARGET_K4, "jobs/s", higher_is_better=True)
    if 4 in rates and 1024 in rates:
        emit("engine: jobs/s k=1024 / k=4", rates[1024] / rates[4], TARGET_SCALING, "x", higher_is_better=True)
    emit("bare SimPy: events/s, 4 processes", bare[4], None, "events/s", higher_is_better=True)
    emit("bare SimPy: events/s, 1024 processes", bare[1024], None, "events/s", higher_is_better=True)

    if args.profile_jobs:
        for k in sorted({ks[0], ks[-1]}):
            text, _ = profile_top(lambda: simulate(scheduling_scenario(k, args.profile_jobs)), top=18)
            print(f"\ncProfile of simulate() at k={k}, {args.profile_jobs} jobs, top 18 by own time:\n{text}")


if __name__ == "__main__":
    main()
