"""Stacked jobs (``compute.stack``): simulated local steps per second on one core, stacked vs one by one.

Each case simulates one scenario twice, back to back, with ``compute.stack``
1 (today's serial path) and with ``compute.stack`` k (every job in flight
trained together when the first result is needed; trainers/stacked.py),
best of ``--repeat`` alternating runs of each side, CPU seconds of this
process (steadier than wall-clock on a shared machine). Only the local
rounds are timed: no pretraining, one evaluation at the end. Beside them:

- the ceiling: one model trained on k x the batch, per simulated local step
  (k local steps' worth of examples per step): what one process could do
  with the k workers' work if their models were one;
- the share of the stacked run's trained steps that it discarded (jobs
  trained ahead and then cancelled when the budget was reached);
- the largest difference of the final models, stacked vs serial.

Targets (issue 25): micro LM DiLoCo k = 4 >= 1.4x, DN + DyLU and async
DiLoCo k = 4 >= 1.15x, DiLoCo k = 16 >= 1.5x; the toy no slower (>= 1.0x).

    .venv/bin/python benchmarks/stacked.py               # every case
    .venv/bin/python benchmarks/stacked.py --quick       # small budgets
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from common import ROOT, cpu_timed, emit, header, torch_threads

from sim import load_scenario
from sim.build import assemble
from sim.engine import Simulation
from sim.executors import make_executor
from sim.scenario import Scenario
from sim.trainer_factory import build_trainer
from trainers.base import JobSpec


@dataclass(frozen=True)
class Case:
    label: str
    scenario: str
    method: str
    k: int
    rounds: int  # local rounds per worker in the budget
    target: float | None


CASES = [
    Case("micro LM, DiLoCo, k = 4", "lm_micro_paper.yaml", "diloco", 4, 4, 1.4),
    Case("micro LM, async DiLoCo, k = 4", "lm_micro_paper.yaml", "async_diloco", 4, 4, 1.15),
    Case("micro LM, DN + DyLU, k = 4", "lm_micro_paper.yaml", "dn_dylu", 4, 4, 1.15),
    Case("micro LM, DiLoCo, k = 16", "lm_micro_paper.yaml", "diloco", 16, 2, 1.5),
    Case("micro LM, DN + DyLU, k = 16", "lm_micro_paper.yaml", "dn_dylu", 16, 2, None),
    Case("tiny LM, DiLoCo, k = 4", "lm_tiny_very_heterogeneous.yaml", "diloco", 4, 2, None),
    Case("toy, DiLoCo, k = 4", "very_heterogeneous.yaml", "diloco", 4, 40, 1.0),
    Case("toy, DN + DyLU, k = 4", "very_heterogeneous.yaml", "dn_dylu", 4, 40, 1.0),
]


#: the four ways to compute one scenario: (compute.stack is k, compute.compile); "serial" is the baseline
MODES = {"serial": (False, False), "stacked": (True, False), "compiled": (False, True), "compiled + stacked": (True, True)}


def scenario_of(case: Case, stacked: bool, scale: float, compiled: bool = False) -> Scenario:
    base = load_scenario(ROOT / "scenarios" / case.scenario, method=case.method)
    H = base.schedule.H
    overrides = {"workers.k": case.k, "schedule.t_max": max(H, int(case.rounds * scale) * H * case.k),
                 "eval.every": 10**9, "compute.stack": case.k if stacked else 1, "compute.compile": compiled}
    if base.trainer.name == "lm":
        overrides["trainer.config.pretrain_steps"] = 0
    return base.with_overrides(overrides)


def simulate_once(sc: Scenario, trainer=None) -> tuple[float, int, torch.Tensor, dict[str, int]]:
    """CPU seconds of the run, the local steps that reached the server, the final model, the executor's counts.

    ``trainer`` (built from ``sc``) is reused across repeats, so a compiled model's one-off compilation
    falls in the first repeat only and best-of-n times the compiled steps.
    """
    trainer = trainer or build_trainer(sc)
    executor = make_executor("serial", sc, trainer)
    sim = Simulation(assemble(sc, trainer, executor))
    _, cpu, _ = cpu_timed(sim.run)
    events = sim.recorder.events_frame()
    steps = int(events.loc[events["event"] == "sync", "steps"].sum())
    counts = {key: getattr(executor, key, 0) for key in ("trained_steps", "discarded_steps", "passes")}
    return cpu, steps, sim.theta.clone(), counts


def ceiling(sc: Scenario, repeat: int) -> float:
    """Simulated local steps per CPU second of one model trained on k x the batch for one round."""
    trainer = build_trainer(sc)
    theta = trainer.init_params()
    H, k = sc.schedule.H, sc.workers.k
    spec = JobSpec(worker=0, shard=0, lrs=(sc.lr.max,) * H, data_offset=0, batch_multiplier=k)
    best = min(cpu_timed(lambda: trainer.local_train(theta, spec))[1] for _ in range(repeat))
    return H * k / best


def measure(case: Case, repeat: int, scale: float, compiled: bool) -> None:
    modes = [m for m in MODES if compiled or not MODES[m][1]]
    scenarios = {m: scenario_of(case, *MODES[m][:1], scale, MODES[m][1]) for m in modes}
    trainers = {m: build_trainer(scenarios[m]) for m in modes}
    runs: dict[str, list] = {m: [] for m in modes}
    for i in range(max(repeat, 2) if compiled else repeat):  # a compiled side's first repeat compiles
        for m in (modes if i % 2 == 0 else modes[::-1]):
            runs[m].append(simulate_once(scenarios[m], trainers[m]))
    best = {m: min(runs[m], key=lambda r: r[0]) for m in modes}
    rate = {m: best[m][1] / best[m][0] for m in modes}
    top = ceiling(scenarios["serial"], repeat)
    counts = best["stacked"][3]
    discarded = counts["discarded_steps"] / max(counts["trained_steps"], 1)
    gap = {m: float((best[m][2] - best["serial"][2]).abs().max()) for m in modes}
    fastest = max(modes, key=lambda m: rate[m])
    shown = "; ".join(f"{m} {rate[m]:,.0f} ({rate[m] / rate['serial']:.2f}x, max diff {gap[m]:.1e})" for m in modes)
    print(f"{case.label}: steps/s {shown}; ceiling {top:,.0f} ({top / rate['serial']:.2f}x); fastest: {fastest}, "
          f"{(rate[fastest] - rate['serial']) / max(top - rate['serial'], 1e-9):.0%} of the way to the ceiling; "
          f"discarded {discarded:.1%} of stacked steps; {counts['passes']} passes", flush=True)
    emit(f"stacked / serial steps per second, {case.label}", round(rate["stacked"] / rate["serial"], 3),
         None if compiled else case.target, "x", higher_is_better=True,
         note=f"ceiling {top / rate['serial']:.2f}x; discarded {discarded:.1%}; max diff {gap['stacked']:.1e}")
    if compiled:
        for m in ("compiled", "compiled + stacked"):
            emit(f"{m} / serial steps per second, {case.label}", round(rate[m] / rate["serial"], 3),
                 case.target if m == "compiled + stacked" else None, "x", higher_is_better=True,
                 note=f"ceiling {top / rate['serial']:.2f}x; max diff {gap[m]:.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a quarter of each budget, one run per side")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="cases whose label contains one of these words")
    ap.add_argument("--no-compile", action="store_true", help="skip the compute.compile modes (toy: no compiled mode)")
    args = ap.parse_args()
    header("Stacked jobs: compute.stack k vs 1, one core")
    scale, repeat = (0.25, 1) if args.quick else (1.0, args.repeat)
    with torch_threads(1):
        for case in CASES:
            if not args.only or any(word in case.label for word in args.only):
                measure(case, repeat, scale, compiled=not args.no_compile and "toy" not in case.label)


if __name__ == "__main__":
    main()
