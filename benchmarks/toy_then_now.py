"""The toy's default speed now against an older commit, measured side by side in one run (issue 25: "the toy: no
slower than today").

Issue 25 added stacked jobs and compiled steps as options; the toy's default
(one job at a time, serial executor, eager) must not have slowed down. This
script checks out ``--then`` (default: the commit before the first stacked
change) into a temporary git worktree it creates and removes, and times the
same toy scenario in both trees, alternating, ``--repeat`` times each, every
timing in a fresh process with one torch thread. It reports simulated local
steps per second (median per tree) and their ratio, and checks that both trees
give the same run hash (the serial path's bits are unchanged too).

    .venv/bin/python benchmarks/toy_then_now.py
    .venv/bin/python benchmarks/toy_then_now.py --then 5826090^ --repeat 5 --t-max 8000
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, emit, header

#: the commit before issue 25's first change (5826090, "compute.stack: ..."): "today" when the issue was filed
THEN = "5826090^"
METHODS = ("diloco", "dn_dylu")

#: what each timed process runs (the same public API in both trees): one toy run, its wall time and local steps
PROBE = """
import json, sys, time
import torch
torch.set_num_threads(1)
from sim import load_scenario, simulate
sc = load_scenario("scenarios/very_heterogeneous.yaml", method=sys.argv[1],
                   overrides={"schedule.t_max": int(sys.argv[2]), "eval.every": int(sys.argv[2]) // 4})
t = time.perf_counter()
r = simulate(sc)
seconds = time.perf_counter() - t
steps = int(r.events.loc[r.events["event"] == "complete", "steps"].sum())
print(json.dumps({"seconds": seconds, "steps": steps, "hash": r.run_hash}))
"""


def timed_run(tree: Path, method: str, t_max: int) -> dict:
    """One toy run in a fresh interpreter whose ``sim`` is the one in ``tree``."""
    out = subprocess.run([sys.executable, "-c", PROBE, method, str(t_max)], cwd=tree, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(tree)})
    if out.returncode != 0:
        raise SystemExit(f"{tree}: the toy run failed: {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--then", default=THEN, help=f"the older commit (default {THEN})")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per tree and method, alternating (default 5)")
    p.add_argument("--t-max", type=int, default=8000, help="the toy runs' budget of synced local steps")
    args = p.parse_args()
    header("The toy's default speed, then and now (issue 25)")
    with tempfile.TemporaryDirectory(prefix="asyncsim-then-") as tmp:
        then = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(then), args.then], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            trees = {"then": then, "now": ROOT}
            for method in METHODS:
                runs: dict[str, list[dict]] = {"then": [], "now": []}
                for _ in range(args.repeat):
                    for name, tree in trees.items():
                        runs[name].append(timed_run(tree, method, args.t_max))
                rates = {name: [r["steps"] / r["seconds"] for r in rs] for name, rs in runs.items()}
                rate = {name: statistics.median(rs) for name, rs in rates.items()}
                # "no slower": faster, or a tie (the two sides' ranges of runs overlap)
                tie = min(rates["now"]) <= max(rates["then"]) and min(rates["then"]) <= max(rates["now"])
                verdict = "a tie" if tie else "faster" if rate["now"] > rate["then"] else "slower"
                hashes = {name: {r["hash"] for r in rs} for name, rs in runs.items()}
                same = hashes["then"] == hashes["now"] and len(hashes["now"]) == 1
                print(f"{method}: then {rate['then']:.0f} local steps/s, now {rate['now']:.0f} "
                      f"({rate['now'] / rate['then']:.3f}x); spread now {min(rates['now']):.0f}.."
                      f"{max(rates['now']):.0f}; same run hash: {same}; {verdict}",
                      flush=True)
                emit(f"toy {method} k = 4, serial, now / {args.then}", rate["now"] / rate["then"], 1.0, "x",
                     higher_is_better=True, ok=verdict != "slower",
                     note=f"median of {args.repeat} alternating runs each; {verdict}; same hash: {same}")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(then)], cwd=ROOT, capture_output=True)


if __name__ == "__main__":
    main()
