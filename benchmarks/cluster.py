"""Whole runs as Ray tasks vs local processes, and what a cluster would do for the paper-protocol LM study.

Overhead, back to back in one process: the same N runs (seeds 0..N-1 of one
scenario) computed (1) locally, one at a time (``compare.execute(jobs=1)``),
and (2) as Ray tasks on a local Ray limited to one CPU
(``compare.execute(cluster=Cluster())``), each into a fresh run store. Ray's
start (``ray.init``) is timed apart. The ratio is (2) / (1); the per-run
overhead ((2) - (1)) / N. The run hashes must be identical. Toy and tiny LM.

Projection, on paper: the runs of ``reports/paper_lm_micro``'s command
(``sim.reproduce.experiments`` on ``scenarios/lm_micro_paper.yaml``), each
timed as (its local steps) x (seconds per local step of its model size,
measured here on one core, evaluations included) + the per-run Ray
overhead, packed longest-first onto N nodes x C cores (a run is one task of
one core). On GPUs the seconds per step come from the device profiles'
peak FLOP/s x utilization and the trainer's FLOPs per step: a compute-bound
lower bound, since a model this small is bound by kernel launches.

    .venv/bin/python benchmarks/cluster.py
    .venv/bin/python benchmarks/cluster.py --runs 2 --toy-t-max 800 --skip-lm
    .venv/bin/python benchmarks/cluster.py --per-run-overhead 1.25    # the projection alone
"""
from __future__ import annotations

import argparse
import heapq
import os
import tempfile
from pathlib import Path

from common import LM_SCENARIO, ROOT, TOY_SCENARIO, emit, header, lm_unavailable, skip, timed

from sim import load_scenario
from sim.cluster import Cluster
from sim.compare import execute, plan
from sim.records import read_summary

PAPER_SCENARIO = ROOT / "scenarios" / "lm_micro_paper.yaml"
#: the settings of reports/paper_lm_micro's command (its report says them)
PAPER_WIDE = ["schedule.t_max=16000"]
PAPER_BUDGET_ROUNDS = [10, 40, 160, 320]


def overhead(label: str, scenario: Path, runs: int, sets: list[str]) -> float:
    """Seconds the Ray path adds per run, measured against local one-at-a-time runs."""
    import ray

    seeds = list(range(runs))
    specs_of = lambda: plan([scenario], ["dn_dylu"], seeds, None, sets, {})[0]  # noqa: E731
    hashes = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ASYNCSIM_RUNS"] = str(Path(tmp) / "local")
        local_s, _ = timed(lambda: execute(specs_of(), jobs=1))
        hashes["local"] = [read_summary(s.folder)["run_hash"] for s in specs_of()]
        os.environ.setdefault("RAY_worker_niceness", "0")  # as sim/cluster.py does for a Ray it starts
        start_s, _ = timed(lambda: ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
                                            logging_level="ERROR"))
        try:
            os.environ["ASYNCSIM_RUNS"] = str(Path(tmp) / "ray")
            ray_s, _ = timed(lambda: execute(specs_of(), cluster=Cluster()))
            hashes["ray"] = [read_summary(s.folder)["run_hash"] for s in specs_of()]
        finally:
            ray.shutdown()
    same = hashes["local"] == hashes["ray"]
    per_run = (ray_s - local_s) / runs
    print(f"{label}: {runs} runs, local -j 1 {local_s:.1f} s, Ray (1 CPU) {ray_s:.1f} s (+ {start_s:.1f} s to start Ray), "
          f"{per_run:+.2f} s per run; run hashes identical: {same}")
    emit(f"cluster overhead, {label}: Ray / local -j 1", ray_s / local_s, None, "x", higher_is_better=False,
         note=f"{per_run:+.2f} s per run, Ray start {start_s:.1f} s, hashes {'identical' if same else 'DIFFER'}")
    return max(per_run, 0.0)


def seconds_per_step(scenario, steps: int = 300) -> float:
    """One core, one short run of this scenario's model (evaluations at its own cadence): seconds per local step."""
    from sim import simulate

    sc = scenario.with_overrides({"schedule.t_max": steps, "compute.threads": 1})
    elapsed, _ = timed(lambda: simulate(sc))
    return elapsed / steps


def makespan(durations: list[float], slots: int) -> float:
    """Longest-first onto ``slots`` cores: when the last run ends."""
    ends = [0.0] * slots
    for d in sorted(durations, reverse=True):
        heapq.heappush(ends, heapq.heappop(ends) + d)
    return max(ends)


def projection(per_run_overhead: float) -> None:
    from sim.trainer_factory import build_trainer
    from sim.reproduce import experiments
    import yaml

    base = load_scenario(PAPER_SCENARIO)
    specs = []
    for exp in experiments(base, PAPER_BUDGET_ROUNDS):
        sets = PAPER_WIDE if exp.wide else []
        specs += plan([PAPER_SCENARIO], list(exp.methods), [0, 1, 2], exp.sweep, sets, {})[0]
    unique = {s.folder: s.scenario for s in specs}
    widths = sorted({sc.trainer.config.get("d_model") for sc in unique.values()}, key=lambda w: w or 0)
    rate = {}
    for width in widths:
        sc = next(sc for sc in unique.values() if sc.trainer.config.get("d_model") == width and sc.workers.k == 4
                  and sc.method.preset == "diloco")
        rate[width] = seconds_per_step(sc)
        print(f"micro LM d_model {width or 'preset'}: {rate[width] * 1e3:.1f} ms per local step on one core (evals included)")
    durations = [sc.schedule.t_max * rate[sc.trainer.config.get("d_model")] + per_run_overhead for sc in unique.values()]
    total = sum(durations)
    print(f"paper_lm_micro: {len(unique)} runs, {total / 3600:.1f} core-hours; the longest run {max(durations) / 60:.1f} min")
    rows = []
    for nodes, cores in ((1, 2), (1, 16), (4, 16), (16, 16), (64, 16)):
        span = makespan(durations, nodes * cores)
        rows.append((nodes, cores, span))
        print(f"  {nodes:>3} nodes x {cores:>2} cores: {span / 3600:6.2f} h")
        emit(f"projection, paper_lm_micro on {nodes} x {cores} cores", span / 3600, None, "h", higher_is_better=False)
    catalog = yaml.safe_load((ROOT / "device_profiles" / "accelerator_catalog.yaml").read_text())
    flops = build_trainer(base).flops_per_step()
    for gpu in catalog.get("devices", catalog.get("accelerators", []))[:3]:
        step = flops / (gpu["peak_tflops"] * 1e12 * gpu["utilization"])
        gpu_total = sum(sc.schedule.t_max * step for sc in unique.values())
        print(f"  on one {gpu['name']} (compute-bound lower bound, {step * 1e6:.2f} us per step): "
              f"{gpu_total:.0f} s of compute; launch-bound in practice")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=4, help="runs per side (default 4)")
    ap.add_argument("--toy-t-max", type=int, default=4000)
    ap.add_argument("--lm-t-max", type=int, default=200)
    ap.add_argument("--skip-lm", action="store_true")
    ap.add_argument("--skip-projection", action="store_true")
    ap.add_argument("--per-run-overhead", type=float, help="seconds per run for the projection (skips measuring it)")
    args = ap.parse_args()
    if args.per_run_overhead is not None:
        header("Projection: reports/paper_lm_micro on a cluster")
        projection(args.per_run_overhead)
        return
    try:
        import ray  # noqa: F401  (only whether it is there)
    except ImportError:
        skip("cluster overhead", "ray is not installed (pip install 'asyncsim[ray]')")
        return
    header("Whole runs as Ray tasks vs local -j 1")
    toy = overhead("toy", TOY_SCENARIO, args.runs, [f"schedule.t_max={args.toy_t_max}"])
    lm = None
    reason = lm_unavailable()
    if args.skip_lm or reason:
        skip("cluster overhead, tiny LM", reason or "--skip-lm")
    else:
        lm = overhead("tiny LM", LM_SCENARIO, args.runs, [f"schedule.t_max={args.lm_t_max}"])
    if not args.skip_projection:
        header("Projection: reports/paper_lm_micro on a cluster")
        projection(lm if lm is not None else toy)


if __name__ == "__main__":
    main()
