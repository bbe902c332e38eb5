"""Transfers that a schedule moves itself while its workers train (Streaming DiLoCo, eager updates).

Where DiLoCo's round is download, train, upload (sim/planner.py), these
schedules send while the worker computes. A worker's uplink and downlink each
carry one transfer at a time, in the order sent: a worker sends in time
order, so a greedy "free at" per link is exact. An upload that has crossed
the worker's own link queues on the server's ingress: a capacity-one FIFO
served in (reached, worker) order, as :func:`sim.network.fifo_arrivals`.
Every stage is planned when the one before it ends, so the times are exact
and a resumed run replays them.

A transfer's stages: an upload *reaches* the server's ingress, then
*arrives*; a download *lands* on the worker. :meth:`Wires.due` gives the
next one; ties break by (time, stage, worker, order sent), never by chance.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sim.jobs import Finished
from sim.simtime import ZERO, Time

if TYPE_CHECKING:  # annotations only
    import torch

    from sim.schedules.base import Run

#: at one instant: arrivals at the server first, then landings at workers, then uploads entering the ingress
STAGES = ("arrive", "land", "reach")


@dataclass
class Transfer:
    at: Time  # when its current stage is due
    stage: str  # one of STAGES
    worker: int
    part: int  # the fragment it carries (-1: the whole vector)
    key: int  # what it belongs to: a sync's step (Streaming DiLoCo) or a round (eager)
    sent: Time  # when it left (the worker, or the server)
    num_bytes: int
    payload: torch.Tensor  # the values as they arrive (encoded and decoded)
    job: Finished  # the job it comes from (an upload) or goes to (a download: the job that ended there)
    order: int  # sent n-th: the last tie-break

    @property
    def rank(self) -> tuple[Time, int, int, int]:
        return (self.at, STAGES.index(self.stage), self.worker, self.order)

    def plain(self) -> dict[str, Any]:
        return {"at": self.at.plain(), "stage": self.stage, "worker": self.worker, "part": self.part, "key": self.key,
                "sent": self.sent.plain(), "num_bytes": self.num_bytes, "payload": self.payload,
                "job": self.job.plain(), "order": self.order}

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> Transfer:
        return cls(**{**plain, "at": Time.from_plain(plain["at"]), "sent": Time.from_plain(plain["sent"]),
                      "job": Finished.from_plain(plain["job"])})


@dataclass
class Sync:
    """What the server gathers for one sync: the uploads in so far, and the workers whose upload is on its way."""

    received: dict[int, tuple[torch.Tensor, Finished]] = field(default_factory=dict)
    sending: set[int] = field(default_factory=set)

    def plain(self) -> list[Any]:
        return [sorted(self.sending), [[w, payload, job.plain()] for w, (payload, job) in sorted(self.received.items())]]

    @classmethod
    def from_plain(cls, plain: list[Any]) -> Sync:
        sending, received = plain
        return cls({w: (payload, Finished.from_plain(job)) for w, payload, job in received}, set(sending))


class Wires:
    """Each worker's up- and downlink, the server's ingress, and the transfers on them (a heap by rank:
    the engine asks for the next one at every event)."""

    def __init__(self, k: int):
        self.up_free, self.down_free = [ZERO] * k, [ZERO] * k
        self.ingress_free = ZERO
        self.queue: list[tuple[tuple[Time, int, int, int], Transfer]] = []  # (rank, transfer); ranks are unique
        self.sent = 0

    def upload(self, run: Run, job: Finished, part: int, key: int, payload: torch.Tensor, num_bytes: int) -> None:
        """``job``'s worker sends ``payload`` now, or once its uplink is free; it reaches the ingress after its link."""
        w = job.worker
        start = max(run.state.now, self.up_free[w])
        self.up_free[w] = reaches = start + run.link_time(w, num_bytes)
        self._add(Transfer(reaches, "reach", w, part, key, start, num_bytes, payload, job, self.sent))

    def download(self, run: Run, job: Finished, part: int, key: int, payload: torch.Tensor, num_bytes: int) -> None:
        """The server sends ``payload`` to ``job``'s worker now; it lands after the worker's downlink is free."""
        w = job.worker
        start = max(run.state.now, self.down_free[w])
        self.down_free[w] = lands = start + run.link_time(w, num_bytes)
        self._add(Transfer(lands, "land", w, part, key, start, num_bytes, payload, job, self.sent))

    def _add(self, transfer: Transfer) -> None:
        heapq.heappush(self.queue, (transfer.rank, transfer))
        self.sent += 1

    def next_at(self) -> Time | None:
        return self.queue[0][0][0] if self.queue else None

    def due(self, now: Time) -> Transfer | None:
        """The next transfer stage due at ``now``, taken off the queue (a reach goes back as its arrival)."""
        if not self.queue or self.queue[0][0][0] != now:
            return None
        return heapq.heappop(self.queue)[1]

    def enter_ingress(self, run: Run, transfer: Transfer) -> None:
        """An upload reached the server's link: it is received once the uploads before it are (FIFO)."""
        start = max(transfer.at, self.ingress_free)
        self.ingress_free = start + run.ingress_time(transfer.num_bytes)
        transfer.at, transfer.stage = self.ingress_free, "arrive"
        heapq.heappush(self.queue, (transfer.rank, transfer))

    def cancel(self, worker: int, now: Time) -> None:
        """``worker``'s device went down at ``now``: what is still on its way to it is lost with its state,
        and its downlink is free from now (the cancelled transfers no longer hold it)."""
        self.queue = [(r, t) for r, t in self.queue if not (t.worker == worker and t.stage == "land")]
        heapq.heapify(self.queue)
        self.down_free[worker] = min(self.down_free[worker], now)

    def state_dict(self) -> dict[str, Any]:
        return {"up_free": [t.plain() for t in self.up_free], "down_free": [t.plain() for t in self.down_free],
                "ingress_free": self.ingress_free.plain(), "transfers": [t.plain() for _, t in sorted(self.queue)],
                "sent": self.sent}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.up_free = [Time.from_plain(t) for t in state["up_free"]]
        self.down_free = [Time.from_plain(t) for t in state["down_free"]]
        self.ingress_free = Time.from_plain(state["ingress_free"])
        self.queue = [(t.rank, t) for t in map(Transfer.from_plain, state["transfers"])]
        heapq.heapify(self.queue)
        self.sent = state["sent"]
