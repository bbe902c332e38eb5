"""What proving a stored run costs before it is reused (issue 21): ``sim.store.run_problem`` on a run folder.

Reuse used to read the two parquet tables and trust them. Now it also
re-hashes them (canonical CSV, :func:`sim.records.run_hash`), hashes the two
CSV files as they lie, and checks the digest. This measures both on a real
run folder, by default the full micro-LM protocol's DN + DyLU schedule (64K
local steps) computed with the null trainer, whose tables have the same rows
as the LM run's (the events depend on the schedule only; seconds to make),
and prints the time and the ratio to the plain read (best of 5 each).

    .venv/bin/python benchmarks/store_check.py                       # the 64K-step schedule's folder
    .venv/bin/python benchmarks/store_check.py --folder STORE/RUN    # an existing run folder (a real LM run)
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import ROOT, emit

FULL_PROTOCOL = ROOT / "scenarios" / "lm_micro_paper.yaml"


def best_of(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", type=Path, help="a run folder (default: compute or reuse the micro LM's DN + DyLU run)")
    ap.add_argument("--t-max", type=int, default=64000, help="local steps of the schedule made when --folder is not given")
    args = ap.parse_args()

    from sim.runner import run
    from sim.scenario import load_scenario, scenario_from_dict

    if args.folder is None:  # the micro LM's 131,392 parameters, trained by nothing
        null = {"name": "null", "config": {"dim": 131_392, "dtype": "float32"}}
        sc = load_scenario(FULL_PROTOCOL, overrides={"schedule.t_max": args.t_max, "trainer": null}, method="dn_dylu")
        with tempfile.TemporaryDirectory() as store:
            folder = run(sc, out=Path(store) / "run").folder
            measure(folder, sc)
        return
    else:
        import yaml

        sc = scenario_from_dict(yaml.safe_load((args.folder / "scenario.yaml").read_text()), str(args.folder))
        measure(args.folder, sc)


def measure(folder: Path, sc) -> None:
    """Time the proof of ``folder`` (the run of ``sc``) against a plain read of its tables."""
    import pandas as pd

    from sim.records import read_summary, run_hash
    from sim.store import run_problem

    assert run_problem(folder, sc) is None, "the folder does not prove itself"
    events = pd.read_parquet(folder / "events.parquet")
    metrics = pd.read_parquet(folder / "metrics.parquet")
    print(f"run folder {folder}: {len(events):,} event rows, {len(metrics):,} metric rows, "
          f"{read_summary(folder)['final']['t_local']:,} local steps")

    def plain_read() -> None:  # what reuse did before: read both tables
        pd.read_parquet(folder / "metrics.parquet")
        pd.read_parquet(folder / "events.parquet")

    def prove() -> None:  # what reuse does now, then the same read
        assert run_problem(folder, sc) is None
        plain_read()

    plain, proven = best_of(plain_read), best_of(prove)
    rehash = best_of(lambda: run_hash(metrics, events))
    print(f"plain read of the tables: {plain * 1e3:.1f} ms; proven and read: {proven * 1e3:.1f} ms "
          f"(run_hash over in-memory tables alone: {rehash * 1e3:.1f} ms)")
    emit(f"store: proving a {read_summary(folder)['final']['t_local'] // 1000}K-step micro-LM run before reuse (ms)",
         proven * 1e3, 500.0, "ms", higher_is_better=False)
    emit("store: proven reuse / plain read of the tables", proven / plain, None, "x", higher_is_better=False)


if __name__ == "__main__":
    main()
