"""Device churn: when each worker is up and when it is down.

A device profile may give ``availability``: mean up and down times (each
period exponential, starting up at time 0), or explicit down intervals (a
trace). A worker that goes down before its upload has left it loses that job
(its pseudo-gradient never arrives, recorded as ``lost``) and rejoins when it
comes back up, starting a new round from the server's current model.

Each worker's periods come from its own RNG stream and are generated in
order, on demand: how far the run looks ahead never changes the draws, so
the timeline is a pure function of (seed, worker) and needs no checkpoint.
"""
from __future__ import annotations

import bisect
import csv
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sim.simtime import Time


class Availability(BaseModel):
    """A device's up/down behaviour: random (mean up and down seconds) or a list of down intervals."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean_up_s: float | None = Field(None, gt=0, allow_inf_nan=False)
    mean_down_s: float | None = Field(None, gt=0, allow_inf_nan=False)
    down: tuple[tuple[float, float], ...] = Field((), description="explicit [start, end) seconds the device is down")

    @model_validator(mode="after")
    def _one_kind(self) -> "Availability":
        random = (self.mean_up_s is not None, self.mean_down_s is not None)
        if any(random) and not all(random):
            raise ValueError("give both mean_up_s and mean_down_s")
        if all(random) == bool(self.down):
            raise ValueError("give either mean_up_s and mean_down_s, or down intervals (a trace)")
        last = 0.0
        for start, end in self.down:
            if not (last <= start < end):
                raise ValueError(f"down intervals must be sorted, disjoint and non-empty (at [{start}, {end}])")
            last = end
        return self


def read_trace(path: Path) -> list[list[float]]:
    """Down intervals from a CSV file with columns ``down_at,up_at`` (seconds; a header row is optional)."""
    rows: list[list[float]] = []
    with open(path, encoding="utf-8", newline="") as fh:
        for i, row in enumerate(csv.reader(fh)):
            if not row or row[0].strip().startswith("#"):
                continue
            if i == 0 and not _is_number(row[0]):
                continue  # header
            try:
                rows.append([float(row[0]), float(row[1])])
            except (ValueError, IndexError):
                raise ValueError(f"{path}: line {i + 1}: expected two numbers 'down_at,up_at'") from None
    if not rows:
        raise ValueError(f"{path}: no down intervals")
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class Timeline:
    """One worker's down intervals, extended lazily from its own stream.

    Instants are exact :class:`~sim.simtime.Time` values: a job is lost iff
    its device goes down strictly before its upload has left, and an exact
    tie between a failure and a round's end must not depend on float rounding.
    """

    def __init__(self, spec: Availability, rng: np.random.Generator):
        self.spec, self.rng = spec, rng
        self.starts = [Time.of(s) for s, _ in spec.down]
        self.ends = [Time.of(e) for _, e in spec.down]
        self._end_ticks = [e.ticks for e in self.ends]
        self.random = spec.mean_up_s is not None

    def _extend_past(self, t: Time) -> None:
        while self.random and (not self.ends or self.ends[-1] <= t):
            start = (self.ends[-1].seconds if self.ends else 0.0) + float(self.rng.exponential(self.spec.mean_up_s))
            end = start + float(self.rng.exponential(self.spec.mean_down_s))
            self.starts.append(Time.of(start))
            self.ends.append(Time.of(end))
            self._end_ticks.append(self.ends[-1].ticks)

    def down_interval(self, t: Time) -> tuple[Time, Time] | None:
        """The first down interval that ends after ``t`` (it contains ``t`` if its start <= t); None: up for good."""
        self._extend_past(t)
        i = bisect.bisect_right(self._end_ticks, t.ticks)
        return (self.starts[i], self.ends[i]) if i < len(self.ends) else None

    def up_at(self, t: Time) -> Time:
        """``t`` if the worker is up then, else when it comes back."""
        interval = self.down_interval(t)
        return interval[1] if interval is not None and interval[0] <= t else t

    def fails_before(self, t0: Time, t1: Time) -> Time | None:
        """When a worker up at ``t0`` goes down before ``t1``, or None if it stays up."""
        interval = self.down_interval(t0)
        return interval[0] if interval is not None and interval[0] < t1 else None


def timelines(availability: list[Availability | None], rngs: list[np.random.Generator]) -> list[Timeline | None]:
    """One timeline per worker; worker ``w`` draws from ``rngs[w]`` (the run's stream (seed, STREAM_CHURN, w))."""
    return [None if spec is None else Timeline(spec, rng) for spec, rng in zip(availability, rngs, strict=True)]


def resolve_trace(device: dict[str, Any], base: Path | None) -> dict[str, Any]:
    """Replace ``availability.trace: FILE`` by its intervals, so they become part of the scenario's identity."""
    avail = device.get("availability")
    if not isinstance(avail, dict) or "trace" not in avail:
        return device
    avail = dict(avail)
    trace = Path(str(avail.pop("trace")))
    if not trace.is_absolute() and base is not None:
        trace = base / trace
    avail["down"] = read_trace(trace)
    return {**device, "availability": avail}
