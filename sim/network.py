"""Communication time: model downloads, pseudo-gradient uploads, and the server's link.

A round of worker ``w`` dispatched at time ``t`` is, in simulated time::

    download  t .. t + L_w + model_bytes / B_w           (the server's theta)
    training  .. + steps x step time x jitter
    upload    .. + L_w + grad_bytes / B_w                 (the worker's own link)
    ingress   FIFO on the server's link: start at max(reached, link free),
              hold it for grad_bytes / B_server            -> arrival at the server

``L_w`` and ``B_w`` combine the device's link with the region matrix entry
between its region and the server's (latencies add, the narrower bandwidth
wins). The server link is a capacity-one first-in-first-out resource: uploads
that reach it while another is being received wait their turn, which is how
the server becomes the bottleneck of a large fleet.

Arrival times are *planned* (computed, not discovered), like every time in
the engine, for two reasons: the grace period of Algorithm 5 needs the next
arrival before it happens, and a resumed run must reproduce the same floats.
Planning stays exact under contention because uploads enter the FIFO in the
order they reach it: :func:`fifo_arrivals` is re-run over the jobs in flight
whenever new ones are dispatched, and a new job can only overtake uploads
that have not reached the server yet.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

Dtype = Literal["fp32", "bf16", "int8", "fp4"]
#: values per int8 / fp4 block scale unless ``network.block_size`` says otherwise (as the MX formats)
DEFAULT_BLOCK = 32


class RegionLink(BaseModel):
    """One entry of the region matrix: the path between two regions (symmetric)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    between: tuple[str, str]
    latency_ms: float = Field(0.0, ge=0, allow_inf_nan=False)
    bandwidth_gbps: float = Field(math.inf, gt=0)


class NetworkSpec(BaseModel):
    """The scenario's ``network:`` section. Absent: communication takes no time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: Dtype = Field("fp32", description="pseudo-gradient encoding on upload (bf16 / int8 / fp4: compressed, "
                                             "and the server receives the decoded values: sim/compression.py)")
    model_dtype: Dtype = Field("fp32", description="model encoding on download")
    block_size: int | None = Field(None, ge=1, le=2**20, description="values per int8 / fp4 scale (default 32)")
    server_region: str | None = None
    server_bandwidth_gbps: float = Field(math.inf, gt=0, description="the server's ingress link, shared by uploads")
    regions: tuple[RegionLink, ...] = ()

    @model_validator(mode="after")
    def _pairs_once(self) -> "NetworkSpec":
        seen: set[frozenset[str]] = set()
        for link in self.regions:
            pair = frozenset(link.between)
            if pair in seen:
                raise ValueError(f"region pair {'/'.join(link.between)} is listed twice")
            seen.add(pair)
        return self

    @property
    def block(self) -> int:
        """Values per block scale of the int8 / fp4 encodings."""
        return self.block_size or DEFAULT_BLOCK

    def path(self, region: str | None, to: str | None = None) -> tuple[float, float]:
        """(latency s, bandwidth Gbit/s) between ``region`` and ``to`` (default: the server's region)."""
        to = self.server_region if to is None else to
        if region is None or to is None:
            return 0.0, math.inf
        for link in self.regions:
            if frozenset(link.between) == frozenset((region, to)):
                return link.latency_ms / 1e3, link.bandwidth_gbps
        return 0.0, math.inf  # same region, or a pair the matrix leaves out: no extra cost


def transfer_seconds(num_bytes: float, bandwidth_gbps: float, latency_s: float) -> float:
    """latency + bytes / bandwidth; an infinite bandwidth moves any payload instantly."""
    return latency_s + (0.0 if math.isinf(bandwidth_gbps) else num_bytes * 8 / (bandwidth_gbps * 1e9))


@dataclass(frozen=True)
class WorkerLink:
    """A worker's effective path to the server: its own link and the region path combined."""

    latency_s: float
    bandwidth_gbps: float

    def transfer(self, num_bytes: float) -> float:
        """Seconds to move ``num_bytes`` either way (the link is symmetric)."""
        return transfer_seconds(num_bytes, self.bandwidth_gbps, self.latency_s)


def worker_link(net: NetworkSpec, latency_ms: float, bandwidth_gbps: float, region: str | None,
                to: str | None = None) -> WorkerLink:
    """The worker's own link combined with its region's path to ``to`` (default: the server's region)."""
    path_latency, path_bandwidth = net.path(region, to)
    return WorkerLink(latency_s=latency_ms / 1e3 + path_latency, bandwidth_gbps=min(bandwidth_gbps, path_bandwidth))


def fifo_arrivals(reached: Sequence[tuple[float, int]], service_s: float, free_at: float) -> list[float]:
    """Arrival times of uploads through a capacity-one FIFO link.

    ``reached`` holds (time the upload reaches the server's link, worker) per
    upload; they are served in that order (ties by worker), each holding the
    link ``service_s`` seconds, starting no earlier than ``free_at``. Returns
    the arrival times in the order given.
    """
    order = sorted(range(len(reached)), key=lambda i: reached[i])
    out = [0.0] * len(reached)
    for i in order:
        start = max(reached[i][0], free_at)
        free_at = out[i] = start + service_s
    return out
