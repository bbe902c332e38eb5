"""``asyncsim calibrate``: measure this machine as a device, for a fleet of it that a simulation can use.

Two numbers, each the median of several repeats after a warm-up:

- **seconds per local step** of the scenario's trainer: one job of
  ``steps`` local steps (its data, its optimizer, its per-job overhead)
  divided by ``steps``, with the scenario's torch thread count; that is
  exactly how the planner turns a device into job durations
  (steps x seconds per step);
- **transfer throughput and latency between two local Ray actors**: a
  model-sized float32 vector handed from one actor to the other through the
  object store, and a one-float one for the latency. On one machine the
  object store is shared memory, so this is the live runtime's own
  transport cost, not a network's.

The result is a device profile YAML (``devices:`` with ``seconds_per_step``,
``latency_ms``, ``bandwidth_gbps``), ``workers`` copies of this machine,
the fleet to simulate "this machine, k workers" with.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

from sim.executors import start_ray
from sim.scenario import Scenario
from trainers.base import JobSpec, Trainer

#: the first bytes of a profile calibrate writes: lets it replace its own file and nothing else
CALIBRATED_MARK = "# made by asyncsim calibrate"


@dataclass(frozen=True)
class Calibration:
    seconds_per_step: float
    step_spread: tuple[float, float]  # min, max seconds per step over the repeats
    latency_ms: float
    bandwidth_gbps: float
    threads: int
    steps: int
    repeats: int


def time_steps(trainer: Trainer, scenario: Scenario, steps: int, repeats: int) -> tuple[float, tuple[float, float]]:
    """Median (and range of) seconds per local step of the scenario's trainer, one job of ``steps`` steps at a time."""
    torch.set_num_threads(scenario.compute.threads)
    theta = trainer.init_params()
    lr = scenario.lr.max
    per_step = []
    for i in range(repeats + 1):
        spec = JobSpec(worker=0, shard=0, lrs=(lr,) * steps, data_offset=i * steps * trainer.batch_size(),
                       threads=scenario.compute.threads)
        start = time.perf_counter()
        trainer.local_train(theta, spec, None)
        if i:  # the first is a warm-up (allocations, lazy imports)
            per_step.append((time.perf_counter() - start) / steps)
    return statistics.median(per_step), (min(per_step), max(per_step))


class _Holder:
    """A Ray actor that makes and hands over tensors, for :func:`time_transfer`."""

    def make(self, n: int) -> torch.Tensor:
        return torch.zeros(n)

    def take(self, tensor: torch.Tensor) -> float:
        """When ``tensor`` had arrived: Ray resolves the argument before the call starts."""
        return time.time()


def time_transfer(num_params: int, repeats: int, address: str | None = None) -> tuple[float, float]:
    """(latency ms, throughput Gbit/s) of one tensor handed between two local Ray actors."""
    ray, started_here = start_ray("asyncsim calibrate", address)
    try:
        holder = ray.remote(num_cpus=0)(_Holder)
        a, b = holder.remote(), holder.remote()

        def once(n: int) -> float:
            ref = a.make.remote(n)
            ray.wait([ref])
            start = time.time()
            return ray.get(b.take.remote(ref)) - start

        once(1), once(num_params)  # warm-up
        latency = statistics.median(once(1) for _ in range(repeats))
        seconds = statistics.median(once(num_params) for _ in range(repeats))
    finally:
        if started_here:
            ray.shutdown()
    bits = 32 * num_params
    return latency * 1e3, bits / max(seconds - latency, 1e-9) / 1e9


def calibrate(scenario: Scenario, steps: int = 20, repeats: int = 5, address: str | None = None) -> Calibration:
    from sim.build import build_trainer

    trainer = build_trainer(scenario)  # once: an LM trainer loads its data
    seconds, spread = time_steps(trainer, scenario, steps, repeats)
    latency, gbps = time_transfer(trainer.init_params().numel(), repeats, address)
    return Calibration(seconds, spread, latency, gbps, scenario.compute.threads, steps, repeats)


def profile_yaml(c: Calibration, scenario: Scenario, workers: int, name: str) -> str:
    """The device profile: ``workers`` devices named ``name-0``..., each this machine."""
    import yaml

    description = (f"This machine, measured by asyncsim calibrate for trainer {scenario.trainer.name} "
                   f"({scenario.name}): {c.seconds_per_step * 1e3:.3f} ms per local step (median of {c.repeats} jobs "
                   f"of {c.steps} steps, {c.step_spread[0] * 1e3:.3f}-{c.step_spread[1] * 1e3:.3f} ms), "
                   f"{c.threads} torch thread(s); transfers between two local Ray actors: {c.latency_ms:.3f} ms "
                   f"latency, {c.bandwidth_gbps:.3g} Gbit/s. Give each worker its own cores "
                   f"(no more workers than cores / threads) for these numbers to hold.")
    devices = [{"name": f"{name}-{w}", "seconds_per_step": float(f"{c.seconds_per_step:.6g}"),
                "latency_ms": float(f"{c.latency_ms:.4g}"), "bandwidth_gbps": float(f"{c.bandwidth_gbps:.4g}")}
               for w in range(workers)]
    body: dict[str, Any] = {"description": description, "devices": devices}
    return CALIBRATED_MARK + "\n" + yaml.safe_dump(body, sort_keys=False, width=100)
