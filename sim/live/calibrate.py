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

With ``live_jobs`` > 0 the numbers are then measured again *as the live
runtime pays them*: short un-padded live runs (async DiLoCo, ``workers``
actors, ``live_jobs`` jobs each, grace 0; :data:`LIVE_PROBES` of them) give

- seconds per local step while the k actors and the server share the
  machine (all jobs' compute time over all their steps), which a lone job
  overstates the speed of (#24: 20-35% with 2 actors on 2 cores);
- ``job_overhead_ms``: each job's real cycle (its dispatch to its worker's
  next dispatch) less its compute, the mean over jobs: Ray's launch and
  the server's handling of the result (the outer step, recording it, the
  next dispatch), which the model of time otherwise leaves out.

Both are means over a probe's jobs, not medians, because a run's time
to finish is a *sum* of job cycles: the occasional slow job (a
collection, the OS scheduling another process) counts in full: with
medians every 20-step job of #24's un-padded check came in late (the
"(medians)" rows of reports/sim_to_real). The probe runs
:data:`LIVE_PROBES` times and the median probe is kept: a shared host has
slow spells of seconds, and one spell must not become the profile (the
"(one probe)" rows: a single probe met one, and every run on it finished
early).

Async DiLoCo with no grace window is used because its worker cycles do
not wait on each other: a cycle less its compute is overhead, not a barrier.
It also keeps every actor computing all the time, the most contention a
method can have: with more actors than free cores, a sync or buffered
method, whose actors idle at barriers, steps faster than the profile says
(the two-worker rows of reports/sim_to_real, "step vs profile").
Give each actor and the server a core and the question does not arise.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from sim.executors import start_ray
from sim.scenario import Scenario
from trainers.base import JobSpec, Trainer

#: live probes per calibration (``live_jobs`` > 0); the one with the median step time is kept
LIVE_PROBES = 3

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
    live_seconds_per_step: float | None = None  # under the live runtime's contention (live_jobs > 0)
    job_overhead_ms: float | None = None  # each job's real cycle less its compute, in a live run
    live_jobs: int = 0

    @property
    def measured_live(self) -> bool:
        """Whether the live runtime's own costs were measured (``live_jobs`` > 0)."""
        return self.live_seconds_per_step is not None and self.job_overhead_ms is not None


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


def step_time(log: pd.DataFrame) -> float:
    """Seconds per local step of a live run's jobs (rows of ``live.csv``): their compute over their steps.

    A sum over a sum, not a mean of ratios: a run's compute time is the sum.
    """
    return float(log["compute_s"].sum() / log["steps"].sum())


def live_costs(log: pd.DataFrame) -> tuple[float, float]:
    """(seconds per step, job overhead seconds) from a live run's per-job log (``live.csv``): means over jobs.

    Per step: all completed jobs' compute over all their steps. A job's
    cycle is its real dispatch to the next real dispatch of the same worker;
    the last job of each worker has no next one and is left out. A log read
    back from ``live.csv`` has an empty ``fault`` as a missing value.
    """
    done = log[log["fault"].fillna("") == ""].sort_values(["worker", "real_dispatched"])
    cycle = done.groupby("worker")["real_dispatched"].diff().shift(-1)
    overhead = (cycle - done["compute_s"]).where(done["worker"].eq(done["worker"].shift(-1))).dropna()
    return step_time(done), float(max(overhead.mean(), 0.0))


def time_live(scenario: Scenario, seconds_per_step: float, workers: int, jobs: int, steps: int,
              address: str | None = None) -> tuple[float, float]:
    """Run short un-padded live runs of ``workers`` copies of this machine and measure what they really cost."""
    import tempfile
    from pathlib import Path

    from sim.live.session import live

    device = {"name": "this-machine", "seconds_per_step": seconds_per_step}
    probe = scenario.with_overrides({
        "method": "async_diloco", "workers": {"devices": [device] * workers}, "schedule.H": steps,
        "schedule.t_max": workers * jobs * steps, "schedule.grace_period": 0.0, "eval.every": workers * jobs * steps})
    costs = []
    for i in range(LIVE_PROBES):
        with tempfile.TemporaryDirectory(prefix="asyncsim-calibrate-") as tmp:
            costs.append(live_costs(live(probe, 1.0, Path(tmp) / f"run{i}", pad=False, address=address).log))
    return median_probe(costs)


def median_probe(costs: list[tuple[float, float]]) -> tuple[float, float]:
    """The probe with the median seconds per step, whole: its step time and overhead were measured together."""
    return sorted(costs)[(len(costs) - 1) // 2]


def calibrate(scenario: Scenario, steps: int = 20, repeats: int = 5, address: str | None = None,
              workers: int = 1, live_jobs: int = 0) -> Calibration:
    from sim.trainer_factory import build_trainer

    trainer = build_trainer(scenario)  # once: an LM trainer loads its data
    seconds, spread = time_steps(trainer, scenario, steps, repeats)
    ray, started_here = start_ray("asyncsim calibrate", address)  # once, for the transfers and every live probe
    try:
        latency, gbps = time_transfer(trainer.init_params().numel(), repeats, address)
        solo = Calibration(seconds, spread, latency, gbps, scenario.compute.threads, steps, repeats)
        if live_jobs <= 0:
            return solo
        per_step, overhead = time_live(scenario, seconds, workers, live_jobs, steps, address)
    finally:
        if started_here:
            ray.shutdown()
    return dataclasses.replace(solo, live_seconds_per_step=per_step, job_overhead_ms=overhead * 1e3,
                               live_jobs=live_jobs)


def profile_yaml(c: Calibration, scenario: Scenario, workers: int, name: str) -> str:
    """The device profile: ``workers`` devices named ``name-0``..., each this machine."""
    import yaml

    description = (f"This machine, measured by asyncsim calibrate for trainer {scenario.trainer.name} "
                   f"({scenario.name}): {c.seconds_per_step * 1e3:.3f} ms per local step (median of {c.repeats} jobs "
                   f"of {c.steps} steps, {c.step_spread[0] * 1e3:.3f}-{c.step_spread[1] * 1e3:.3f} ms), "
                   f"{c.threads} torch thread(s); transfers between two local Ray actors: {c.latency_ms:.3f} ms "
                   f"latency, {c.bandwidth_gbps:.3g} Gbit/s. Give each worker its own cores "
                   f"(no more workers than cores / threads) for these numbers to hold.")
    live = c.measured_live
    if live:
        actors = f"{workers} actor{'s' if workers != 1 else ''}"
        description += (f" Measured again in un-padded live runs of {actors}, {c.live_jobs} jobs each "
                        f"(means over a run's jobs{f', the median of {LIVE_PROBES} runs' if LIVE_PROBES > 1 else ''}): "
                        f"{c.live_seconds_per_step * 1e3:.3f} ms per step while they share the machine with the "
                        f"server, and {c.job_overhead_ms:.2f} ms per job besides its steps (launch, the server's "
                        f"handling); the devices carry these.")
    per_step = c.live_seconds_per_step if live else c.seconds_per_step
    devices = [{"name": f"{name}-{w}", "seconds_per_step": float(f"{per_step:.6g}"),
                **({"job_overhead_ms": float(f"{c.job_overhead_ms:.4g}")} if live else {}),
                "latency_ms": float(f"{c.latency_ms:.4g}"), "bandwidth_gbps": float(f"{c.bandwidth_gbps:.4g}")}
               for w in range(workers)]
    body: dict[str, Any] = {"description": description, "devices": devices}
    return CALIBRATED_MARK + "\n" + yaml.safe_dump(body, sort_keys=False, width=100)
