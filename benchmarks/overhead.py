"""Overhead: ``simulate()`` of a scenario vs a bare PyTorch loop doing the same training.

Three measurements, back to back in one process:

1. ``simulate(scenario)`` (serial executor), with every job the trainer
   computes recorded (its JobSpec: shard, data offset, learning rates);
2. a bare PyTorch loop on a freshly built trainer of the same scenario: one
   model, one fused AdamW, the same batches of the same shards in the same
   order with the same learning rates (the trainer's own data and step
   code), plus as many ``trainer.evaluate`` calls as the simulation made;
3. the payload alone: ``trainer.local_train`` on each recorded job (what
   local SGD costs per round over plain training: a fresh AdamW, loading
   theta, computing the pseudo-gradient).

(1) and (2) run ``--toy-repeat`` (2) / ``--lm-repeat`` (1) times each, in
the order S B, B S, ..., and the best time of each side counts. The ratio
is (1) / (2): what the simulator adds on top of the training and
evaluation the user asked for. Targets (issue 5): <= 1.25 for the toy,
<= 1.05 for the tiny LM, on wall-clock time; the ratio of CPU seconds is
printed beside it (steadier when other processes share the cores).

    .venv/bin/python benchmarks/overhead.py                 # toy and tiny LM
    .venv/bin/python benchmarks/overhead.py --only toy --toy-t-max 4000 --profile
"""
from __future__ import annotations

import argparse
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from common import LM_SCENARIO, TOY_SCENARIO, cpu_timed, emit, header, lm_unavailable, profile_top, skip, timed, torch_threads

import torch
import torch.nn.functional as F

from sim import load_scenario, simulate
from sim.trainer_factory import build_trainer
from sim.scenario import Scenario
from sim.trainer_names import resolve_trainer_class
from trainers.base import JobSpec, flatten_params, load_flat_params

TARGETS = {"toy": 1.25, "lm": 1.05}


# -- the same training, written as a plain loop -----------------------------------------


@dataclass
class PlainLoop:
    """How to train one trainer type as an ordinary loop over the batches of given jobs."""

    optimizer: Callable[[Any, float], torch.optim.Optimizer]
    batches: Callable[[Any, JobSpec], Iterator[Any]]  # one batch per local step of the job
    step: Callable[[Any, torch.optim.Optimizer, Any, float], float]  # one optimizer step, returns the loss


def _toy_optimizer(trainer: Any, lr: float) -> torch.optim.Optimizer:
    cfg = trainer.config
    return torch.optim.AdamW(trainer._model.parameters(), lr=lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=True)


def _toy_batches(trainer: Any, spec: JobSpec) -> Iterator[Any]:
    batch = trainer.config.batch_size * spec.batch_multiplier
    positions = torch.from_numpy(trainer._shard_positions(spec.shard, spec.data_offset, batch * spec.steps))
    for step in range(spec.steps):
        idx = positions[step * batch : (step + 1) * batch]
        yield trainer._train_x[idx].to(trainer.dtype), trainer._train_y[idx]


def _toy_step(trainer: Any, opt: torch.optim.Optimizer, batch: Any, lr: float) -> float:
    for group in opt.param_groups:
        group["lr"] = lr
    x, y = batch
    loss = F.cross_entropy(trainer._model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def _lm_batches(trainer: Any, spec: JobSpec) -> Iterator[Any]:
    from trainers.data import gather_windows

    batch = trainer.arch.batch_size * spec.batch_multiplier
    order = trainer._shard_windows(spec.shard, spec.data_offset, batch * spec.steps)
    for step in range(spec.steps):
        yield gather_windows(trainer.corpus.train, order[step * batch : (step + 1) * batch], trainer.arch.seq_len)


PLAIN_LOOPS = {
    "toy": PlainLoop(_toy_optimizer, _toy_batches, _toy_step),
    "lm": PlainLoop(
        optimizer=lambda trainer, lr: trainer._optimizer(lr),
        batches=_lm_batches,
        step=lambda trainer, opt, windows, lr: trainer._step(opt, windows, lr),
    ),
}


@contextmanager
def recording_jobs(trainer_cls: type) -> Iterator[list[JobSpec]]:
    """Record the JobSpec of every job ``trainer_cls.local_train`` computes, in order."""
    specs: list[JobSpec] = []
    original = trainer_cls.local_train

    def local_train(self: Any, theta: torch.Tensor, job: JobSpec, optimizer_state: Any = None) -> Any:
        specs.append(job)
        return original(self, theta, job, optimizer_state)

    trainer_cls.local_train = local_train
    try:
        yield specs
    finally:
        trainer_cls.local_train = original


@dataclass
class BareTimes:
    build: float
    train: float
    evaluate: float
    steps: int

    @property
    def total(self) -> float:
        return self.build + self.train + self.evaluate


def bare_loop(sc: Scenario, loop: PlainLoop, specs: list[JobSpec], evals: int) -> BareTimes:
    """Build the scenario's trainer and train it as one plain loop over the recorded jobs' batches."""
    with torch_threads(sc.compute.threads):
        build, trainer = timed(lambda: build_trainer(sc))
        start_params, theta = timed(trainer.init_params)
        model = trainer._model
        load_flat_params(model, theta)
        model.train()
        opt = loop.optimizer(trainer, specs[0].lrs[0])
        train = evaluate = 0.0
        every, next_eval, done, steps = sc.eval.every, 0, 0, 0

        def run_eval() -> None:
            nonlocal evaluate, done
            seconds, _ = timed(lambda: trainer.evaluate(flatten_params(model)))
            model.train()
            evaluate += seconds
            done += 1

        for spec in specs:
            if done < evals and steps >= next_eval:
                run_eval()
                next_eval = (steps // every + 1) * every
            seconds, _ = timed(lambda: [loop.step(trainer, opt, b, lr) for b, lr in zip(loop.batches(trainer, spec), spec.lrs)])
            train += seconds
            steps += spec.steps
        while done < evals:
            run_eval()
    return BareTimes(build + start_params, train, evaluate, steps)


def payload_only(sc: Scenario, specs: list[JobSpec]) -> float:
    """Seconds of ``local_train`` over the recorded jobs (from the initial parameters).

    Results are dropped as they come, as the engine does: keeping a thousand
    pseudo-gradients alive makes every new one fault in fresh pages.
    """

    def run_all(trainer: Any, theta: torch.Tensor) -> None:
        for spec in specs:
            trainer.local_train(theta, spec)

    with torch_threads(sc.compute.threads):
        trainer = build_trainer(sc)
        seconds, _ = timed(lambda: run_all(trainer, trainer.init_params()))
    return seconds


# -- the benchmark ------------------------------------------------------------------------


def measure(label: str, sc: Scenario, loop: PlainLoop, repeat: int, profile: bool) -> None:
    """``repeat`` runs of each side in the order S B, B S, S B, ...; the best of each side counts."""
    trainer_cls = resolve_trainer_class(sc.trainer.name)
    print(f"{label}: {sc.name}, method {sc.method.preset}, k={sc.workers.k}, t_max={sc.schedule.t_max}, eval every {sc.eval.every}")
    simulate(sc.with_overrides({"schedule.t_max": sc.schedule.H * sc.workers.k}))  # warm-up: imports, caches, allocator
    sims: list[tuple[float, float]] = []
    bares: list[tuple[float, float, BareTimes]] = []
    specs: list[JobSpec] = []
    evals = 0

    def run_sim() -> None:
        nonlocal specs, evals
        with recording_jobs(trainer_cls) as recorded:
            wall, cpu, result = cpu_timed(lambda: simulate(sc))
        assert not specs or recorded == specs, "the same scenario must compute the same jobs"
        specs, evals = recorded, len(result.metrics)
        sims.append((wall, cpu))

    def run_bare() -> None:
        wall, cpu, times = cpu_timed(lambda: bare_loop(sc, loop, specs, evals))
        bares.append((wall, cpu, times))

    for i in range(repeat):
        for side in ((run_sim, run_bare) if i % 2 == 0 else (run_bare, run_sim)):
            side()
    payload_s = payload_only(sc, specs)
    sim_s, sim_cpu = min(w for w, _ in sims), min(c for _, c in sims)
    bare_s, bare_cpu = min(w for w, _, _ in bares), min(c for _, c, _ in bares)
    bare = min(bares, key=lambda b: b[0])[2]
    assert bare.steps == sum(s.steps for s in specs)
    ratio = sim_s / bare_s
    engine_s = sim_s - (bare.build + payload_s + bare.evaluate)
    runs = f"best of {repeat}: " if repeat > 1 else ""
    print(f"  jobs computed {len(specs)}, inner steps {bare.steps}, evaluations {evals}")
    print(f"  simulate()                         {sim_s:8.2f} s  ({runs}{', '.join(f'{w:.2f}' for w, _ in sims)})")
    print(f"  bare PyTorch loop                  {bare_s:8.2f} s  ({runs}{', '.join(f'{w:.2f}' for w, _, _ in bares)})")
    print(f"                                              = build {bare.build:.2f} + train {bare.train:.2f} + {evals} evals {bare.evaluate:.2f}")
    print(f"  ratio simulate / bare              {ratio:8.3f}    (target <= {TARGETS[label]})")
    print(f"  ratio of CPU seconds               {sim_cpu / bare_cpu:8.3f}    ({sim_cpu:.2f} / {bare_cpu:.2f} s: steadier on a shared machine)")
    print(f"  ratio vs the training steps alone  {sim_s / (bare.build + bare.train):8.3f}    (bare loop without evaluations)")
    print(f"  where the difference goes ({sim_s - bare.total:+.2f} s):")
    print(f"    local SGD rounds (local_train {payload_s:.2f} s - plain steps {bare.train:.2f} s)  {payload_s - bare.train:+7.2f} s")
    print(f"    engine, outer updates, records, run hash (the rest)          {engine_s:+7.2f} s")
    print(f"  per inner step: simulate {1e3 * sim_s / bare.steps:.3f} ms, bare {1e3 * bare_s / bare.steps:.3f} ms")
    emit(f"overhead {label}: simulate / bare loop", ratio, TARGETS[label], "x", higher_is_better=False, note=f"CPU-time ratio {sim_cpu / bare_cpu:.3f}")
    if profile:
        text, _ = profile_top(lambda: simulate(sc), top=25)
        print(f"  cProfile of simulate() ({label}), top 25 by own time:\n{text}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["toy", "lm"], help="run one of the two")
    ap.add_argument("--toy-t-max", type=int, default=8000, help="local-step budget of the toy run (default 8000)")
    ap.add_argument("--lm-t-max", type=int, default=400, help="local-step budget of the tiny-LM run (default 400)")
    ap.add_argument("--toy-repeat", type=int, default=2, help="runs of each side for the toy, best counts (default 2)")
    ap.add_argument("--lm-repeat", type=int, default=1, help="runs of each side for the LM, best counts (default 1)")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of simulate()")
    args = ap.parse_args()
    header("overhead: simulate() vs a bare PyTorch loop")
    if args.only in (None, "toy"):
        sc = load_scenario(TOY_SCENARIO, overrides={"schedule.t_max": args.toy_t_max})
        measure("toy", sc, PLAIN_LOOPS["toy"], args.toy_repeat, args.profile)
    if args.only in (None, "lm"):
        reason = lm_unavailable()
        if reason:
            skip("overhead lm: simulate / bare loop", reason, TARGETS["lm"], "x", higher_is_better=False)
            return
        sc = load_scenario(LM_SCENARIO, overrides={"schedule.t_max": args.lm_t_max})
        measure("lm", sc, PLAIN_LOOPS["lm"], args.lm_repeat, args.profile)


if __name__ == "__main__":
    main()
