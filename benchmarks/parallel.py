"""Parallel speedup: the serial executor vs the process executor with P = 2 workers.

Runs the same scenario twice back to back in one process, ``simulate(sc)``
and ``simulate(sc, executor="process", jobs=P)``, and prints the cores, both
wall times, the speedup (target >= 1.6x on the tiny LM, issue 5) and whether
the two run hashes are byte-identical (they must be: results never depend on
the executor). The tiny LM is used when available, else the toy.

CPU seconds of the main process and of the pool's processes are printed too:
pool CPU / (P x wall) says how busy the P workers were, and pool CPU minus
the serial run's CPU what the pool costs on top of the jobs (start-up of P
processes that import torch and build their own trainer, jobs in flight at
the end that the serial executor never computes, contention).

    .venv/bin/python benchmarks/parallel.py
    .venv/bin/python benchmarks/parallel.py --payload toy --t-max 4000
"""
from __future__ import annotations

import argparse
import os
import resource

from common import LM_SCENARIO, TOY_SCENARIO, emit, header, lm_unavailable, timed

from sim import load_scenario, simulate

TARGET = 1.6


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--payload", choices=["lm", "toy"], default="lm", help="lm (default; falls back to toy) or toy")
    ap.add_argument("--t-max", type=int, help="local-step budget (default: 1000 for the LM, 16000 for the toy)")
    ap.add_argument("--jobs", type=int, default=2, help="processes of the process executor (default 2)")
    args = ap.parse_args()
    header(f"parallel: serial vs process executor (P={args.jobs})")
    payload = args.payload
    if payload == "lm":
        reason = lm_unavailable()
        if reason:
            print(f"SKIPPED the tiny LM ({reason}); measuring the toy instead")
            payload = "toy"
    path, t_max = (LM_SCENARIO, args.t_max or 1000) if payload == "lm" else (TOY_SCENARIO, args.t_max or 16000)
    sc = load_scenario(path, overrides={"schedule.t_max": t_max})
    print(f"{payload}: {sc.name}, method {sc.method.preset}, k={sc.workers.k}, t_max={t_max}, {sc.compute.threads} torch thread(s) per job")
    print(f"cores: {os.cpu_count()}, P = {args.jobs}")

    self0 = cpu_seconds(resource.RUSAGE_SELF)
    serial_s, serial = timed(lambda: simulate(sc))
    self1, kids1 = cpu_seconds(resource.RUSAGE_SELF), cpu_seconds(resource.RUSAGE_CHILDREN)
    process_s, process = timed(lambda: simulate(sc, executor="process", jobs=args.jobs))
    self2, kids2 = cpu_seconds(resource.RUSAGE_SELF), cpu_seconds(resource.RUSAGE_CHILDREN)

    speedup = serial_s / process_s
    same = serial.run_hash == process.run_hash
    pool_cpu = kids2 - kids1
    print(f"  serial              {serial_s:8.2f} s   (CPU {self1 - self0:.1f} s)")
    print(
        f"  process, P={args.jobs}        {process_s:8.2f} s   (CPU main {self2 - self1:.1f} s, pool {pool_cpu:.1f} s, "
        f"pool busy {pool_cpu / (args.jobs * process_s):.0%})"
    )
    discarded = int((process.events["event"] == "discard").sum())
    print(
        f"  pool CPU - serial CPU {pool_cpu - (self1 - self0):+.1f} s   (start-up of {args.jobs} processes, "
        f"up to {min(discarded, args.jobs)} of the {discarded} jobs discarded at the end already running, contention)"
    )
    print(f"  speedup             {speedup:8.2f} x   (target >= {TARGET}x{'' if payload == 'lm' else ', set for the LM'})")
    print(f"  jobs                {serial.summary['jobs']} serial, {process.summary['jobs']} process")
    print(f"  run hash serial     {serial.run_hash}")
    print(f"  run hash process    {process.run_hash}")
    print(f"  byte-identical      {'yes' if same else 'NO'}")
    emit(f"parallel {payload}: speedup P={args.jobs}", speedup, TARGET, "x", higher_is_better=True)
    emit(f"parallel {payload}: same run hash", 1.0 if same else 0.0, 1.0, "bool", higher_is_better=True)


if __name__ == "__main__":
    main()
