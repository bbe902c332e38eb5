"""Round timing: when a round's model is in, its training ends, its upload arrives, or its device fails.

All of it is planned at dispatch, from the device profiles, the links and
the availability timelines: computed, never discovered. That is what lets
Algorithm 5's ``get_worker`` see the next completion before it happens, and
a resumed run reproduce every time exactly. Nothing here knows about SimPy,
tensors or the server; the engine asks, and orders what it is told.

A round of worker ``w`` dispatched at ``now`` (sim/network.py has the link model)::

    download   now .. train_start           the server's model, over w's link
    training   .. upload_start              steps x step time x jitter (a mean-one log-normal per round)
    upload     .. reaches                   the pseudo-gradient, over w's link
    ingress    .. arrival                   FIFO on the server's link (:meth:`Planner.arrivals`)

A device that goes down before its upload has left loses the round
(``lost_at``). The 1-worker baseline (``lockstep``) runs each round on every
device at once, every step waiting for the slowest, and keeps its model on
the devices: no communication, and any device's failure loses the round.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from sim.churn import Timeline
from sim.compression import payload_bytes
from sim.errors import FieldError
from sim.network import NetworkSpec, fifo_arrivals, transfer_seconds, worker_link
from sim.profiles import Device, jitter_factor
from sim.simtime import ZERO, Time
from trainers.base import ReportsFlops, Trainer


@dataclass(frozen=True)
class RoundPlan:
    """When one round's phases end (without a network they all end when training does)."""

    train_start: Time  # the model is downloaded, training begins
    upload_start: Time  # training is done, the upload begins
    arrival: Time  # at the server, provided the server's link is free (the FIFO may delay it)
    lost_at: Time | None  # the device goes down before the upload has left: nothing arrives


def step_times(devices: Sequence[Device], trainer: Trainer) -> list[float]:
    """Seconds per local step of each device; devices rated in FLOP/s need the trainer's FLOPs per step."""
    flops = trainer.flops_per_step() if isinstance(trainer, ReportsFlops) else None
    try:
        return [d.step_time(flops) for d in devices]
    except ValueError as exc:
        raise FieldError("workers", str(exc)) from None


class Planner:
    """Plans rounds for a fleet; its only state is the jitter stream (one draw per device per round)."""

    def __init__(self, devices: Sequence[Device], step_seconds: Sequence[float], *, network: NetworkSpec | None,
                 num_params: int, jitter: np.random.Generator, availability: Sequence[Timeline | None],
                 lockstep: bool = False, local_servers: bool = False):
        self.devices, self.lockstep = list(devices), lockstep
        self.steps = [Time.of(s) for s in step_seconds]
        #: a job's fixed cost besides its steps (Device.job_overhead_ms); None for every shipped fleet
        self.overheads = [None if d.job_overhead_ms is None else Time.of(d.job_overhead_ms / 1e3) for d in self.devices]
        self.jitter = jitter
        self.availability = list(availability)
        self.churn = any(self.availability)
        self.download: list[Time] | None = None  # per worker; None: communication takes no time
        self.network = network
        if network is not None:  # the engine passes none for the lockstep baseline, which sends nothing
            self.upload_bytes, self.download_bytes = payload_bytes(network, num_params)  # block scales included
            # with a server per region (HALoS) a worker's path is its region's path to itself, and that
            # server's ingress is not shared (sim/schedules/hierarchical.py)
            self.links = [worker_link(network, d.latency_ms or 0.0, d.bandwidth_gbps or math.inf, d.region,
                                 to=d.region if local_servers else network.server_region) for d in devices]
            ingress = 0.0 if local_servers else transfer_seconds(self.upload_bytes, network.server_bandwidth_gbps, 0.0)
            self.ingress = Time.of(ingress)
            self.download = [Time.of(link.transfer(self.download_bytes)) for link in self.links]
            self.upload = [Time.of(link.transfer(self.upload_bytes)) for link in self.links]
            if self.ingress.seconds == 0 and not any(d.seconds or u.seconds for d, u in zip(self.download, self.upload)):
                self.download = None  # free links: the same bytes as a run without a network

    @property
    def communicates(self) -> bool:
        """Whether rounds spend time on links (and the records carry download / upload times)."""
        return self.download is not None

    def _round(self, worker: int, steps: int) -> Time:
        """Training time of one round: steps x step time x the device's jitter factor (sim/profiles.py)."""
        return self.training(worker, steps, self.draw_jitter(worker))

    def draw_jitter(self, worker: int) -> float:
        """The device's jitter factor for its next round (one draw from the jitter stream; 1 without jitter)."""
        jitter = self.devices[worker].jitter
        return jitter_factor(jitter, self.jitter) if jitter > 0 else 1.0

    def training(self, worker: int, steps: int, factor: float) -> Time:
        """steps x step time, scaled by a jitter factor drawn by :meth:`draw_jitter`, plus the job's fixed overhead."""
        duration = self.steps[worker] * steps
        duration = duration.scaled(factor) if self.devices[worker].jitter > 0 else duration
        overhead = self.overheads[worker]
        return duration if overhead is None else duration + overhead

    def train_only(self, worker: int, start: Time, steps: int, factor: float) -> RoundPlan:
        """Training that starts at ``start``, its inputs already on the device; it ends (arrives) when training does."""
        end = start + self.training(worker, steps, factor)
        return RoundPlan(start, end, end, self._fails((worker,), start, end))

    def link_time(self, worker: int, num_bytes: int) -> Time:
        """Seconds for ``num_bytes`` over the worker's own path to the server (either way)."""
        return ZERO if self.network is None else Time.of(self.links[worker].transfer(num_bytes))

    def ingress_time(self, num_bytes: int) -> Time:
        """Seconds ``num_bytes`` hold the server's shared ingress link."""
        if self.network is None:
            return ZERO
        return Time.of(transfer_seconds(num_bytes, self.network.server_bandwidth_gbps, 0.0))

    def plan(self, worker: int, now: Time, steps: int) -> RoundPlan:
        """Times of a round of ``steps`` local steps dispatched to ``worker`` at ``now``."""
        if self.lockstep:  # synchronous data parallel: every step waits for the slowest device
            end = now + max(self._round(w, steps) for w in range(len(self.devices)))
            return RoundPlan(now, end, end, self._fails(range(len(self.devices)), now, end))
        if self.download is None:
            end = now + self._round(worker, steps)
            return RoundPlan(now, end, end, self._fails((worker,), now, end))
        train_start = now + self.download[worker]
        upload_start = train_start + self._round(worker, steps)
        reaches = self.reaches(worker, upload_start)
        return RoundPlan(train_start, upload_start, reaches + self.ingress, self._fails((worker,), now, reaches))

    def region_transfer(self, region: str | None, model: bool) -> Time:
        """A region server's change to the central server (``model``: the central model back), over their path."""
        if self.network is None:
            return ZERO
        latency, bandwidth = self.network.path(region)
        return Time.of(transfer_seconds(self.download_bytes if model else self.upload_bytes, bandwidth, latency))

    def reaches(self, worker: int, upload_start: Time) -> Time:
        """When an upload started at ``upload_start`` has crossed the worker's own link."""
        assert self.download is not None
        return upload_start + self.upload[worker]

    def arrivals(self, uploads: dict[int, Time], free_at: Time) -> dict[int, Time]:
        """Arrival times of uploads (worker -> upload start) through the server's FIFO link, free from ``free_at``.

        Uploads enter the FIFO in the order they reach it, so re-planning the
        jobs in flight after each dispatch stays exact: a new job can only
        overtake uploads that have not reached the server yet.
        """
        workers = sorted(uploads)
        times = fifo_arrivals([(self.reaches(w, uploads[w]), w) for w in workers], self.ingress, free_at)
        return dict(zip(workers, times))

    def _fails(self, workers: Sequence[int], start: Time, end: Time) -> Time | None:
        """The first failure of any of ``workers`` in [start, end), or None."""
        if not self.churn:
            return None
        timelines = [tl for w in workers if (tl := self.availability[w]) is not None]
        failures = [f for tl in timelines if (f := tl.fails_before(start, end)) is not None]
        return min(failures) if failures else None

    def up_at(self, worker: int, t: Time) -> Time:
        """``t`` if the worker can start a round then, else when it is back (lockstep: when every device is up)."""
        if not self.lockstep:
            timeline = self.availability[worker]
            return t if timeline is None else timeline.up_at(t)
        while True:
            back = max(t if tl is None else tl.up_at(t) for tl in self.availability)
            if back == t:
                return t
            t = back

    def state_dict(self) -> dict[str, Any]:
        return {"jitter": self.jitter.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.jitter.bit_generator.state = state["jitter"]
