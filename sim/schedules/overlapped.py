"""DiLoCo with its outer step overlapped by the next round (Kale, Douillard, Donchev 2025, arXiv 2502.12996).

Round t's all-reduce travels while round t + 1 trains. Each worker m keeps
its own model x_m and its own outer optimizer (the replicas' steps differ),
and starts round t + 1 as soon as it has finished round t and the average of
round t - 1, Delta^{t-1}, has reached it: communication is hidden while it
takes less than a round. With delta_m^t = x_m^{t-1} - theta_m^t its round's
pseudo-gradient, enc() the upload encoding and c = 1 / n, n the number of
uploads averaged in Delta^{t-1} (k without churn, their M):

    delayed (their Alg. 2)   x_m^t = Outer_m(x_m^{t-1}, Delta^{t-1})                      the average, a round late
    eager   (their Alg. 3)   x_m^t = Outer_m(x_m^{t-1}, c delta_m^t + Delta^{t-1} - c enc(delta_m^{t-1}))

Eager lets the worker's own fresh pseudo-gradient stand in for its share of
the average that has not arrived; the other workers' shares are applied a
round late. The server applies each round's average as DiLoCo does,
theta^t = Outer(theta^{t-1}, Delta^t): the model every replica agrees on once the
averages are in, which is the one evaluated (the papers do not say which
model they evaluate).

Reductions (tests/test_identities.py): with one worker, Delta^{t-1} =
enc(delta^{t-1}) exactly, so eager takes DiLoCo's steps and its replica is
DiLoCo's model; without communication time it is DiLoCo, clock and all.
Delayed is the recurrence x^t = Outer(x^{t-1}, Delta^{t-1}) on the same clock
as DiLoCo, and no reduction of it (the delay counts in rounds).

A worker whose device goes down leaves the rounds it has not uploaded to;
back up, it takes the server's model with a fresh outer state and joins the
next round no worker has started. An average of a round it uploaded to
before going down is not sent to it (it restarts from the whole model, so
it owes none). Kale et al. have no churn: these rules are ours. A round's average may then hold fewer
than k uploads; the server says how many with it, and eager's share weight
is 1 / n of that average. Delta^{t-1} - c enc(delta_m^{t-1}) is then exactly
the other workers' shares, and the worker's fresh pseudo-gradient takes its
own: an average over the same n workers, weights summing to 1, as the
paper's 1 / M does without churn. Before any average (round 0, or the first
round after a rejoin) the fresh share is 1 / k.
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch

from sim.jobs import Finished, Job
from sim.outer.base import OuterUpdate, PseudoGradient
from sim.outer.registry import construct
from sim.scenario import Scenario
from sim.schedules.base import Run
from sim.schedules.overlapping import WHOLE, Key, Overlapping
from sim.schedules.wires import Sync, Transfer
from sim.simtime import Time
from trainers.base import JobResult

AVERAGE = -2  # a download of a round's average (WHOLE: the server's model)


@dataclass
class Replica:
    """One worker's model, its outer optimizer, and the averages it still owes itself."""

    outer: OuterUpdate
    x: torch.Tensor | None = None
    round: int = 0  # the round it trains (or has just finished)
    joined: int = 0  # the first round it takes part in
    sent: torch.Tensor | None = None  # enc(delta_m^{t-1}): its share of the average it waits for
    owes: int | None = None  # the round whose average it applies next (None: none)
    active: bool = True
    waiting: bool = False  # for the average it owes
    delta: torch.Tensor | None = None  # its finished round's pseudo-gradient, while it waits
    fresh: torch.Tensor | None = None  # enc(delta) of that round: its share of the next average
    last: Finished | None = None
    landed: dict[int, torch.Tensor] = field(default_factory=dict)  # round -> its average


class OneRoundOverlap(Overlapping):
    """The machinery both rules share; subclasses say what outer gradient a worker applies."""

    def __init__(self, scenario: Scenario):
        super().__init__(scenario)
        k = scenario.workers.k
        self.c = 1.0 / k
        self.replicas = [Replica(construct(scenario.method.outer, k)) for _ in range(k)]
        self.averaged: dict[int, int] = {}  # round -> how many uploads its average holds (sent with it)

    @abstractmethod
    def outer_gradient(self, replica: Replica, delta: torch.Tensor, average: torch.Tensor | None) -> torch.Tensor | None:
        """What worker m's outer optimizer steps on after its round (None: no step)."""

    # -- workers ---------------------------------------------------------------------------
    def start(self, run: Run) -> None:
        """Every worker downloads the server's model, then trains."""
        for w in range(run.k):
            self.send_model(run, w, 0, None)

    def _train(self, run: Run, w: int) -> None:
        replica = self.replicas[w]
        spec, jitter = self.specs.get(run, replica.round, w)
        assert replica.x is not None
        if run.train(w, replica.x.clone(), spec, None, jitter) is None:  # down: rejoins when back up
            self._leave(run, w)

    def on_arrival(self, run: Run, job: Job, result: JobResult) -> None:
        """Round t is done: upload its pseudo-gradient, step once the average owed is in, train round t + 1."""
        replica = self.replicas[job.worker]
        replica.last = Finished.of(job)
        if run.state.diverged:
            return
        sent = run.links.received(result.delta)
        self.expect((WHOLE, replica.round), job.worker)
        self.wires.upload(run, replica.last, WHOLE, replica.round, sent,
                          self.num_bytes(run, run.theta.numel(), upload=True))
        replica.delta, replica.fresh = result.delta, sent
        self._step_and_go(run, job.worker)

    def _step_and_go(self, run: Run, w: int) -> None:
        """The outer step once the average owed has landed (else wait for it), then the next round."""
        replica = self.replicas[w]
        if replica.owes is not None and replica.owes not in replica.landed:
            replica.waiting = True
            return
        replica.waiting = False
        average = None if replica.owes is None else replica.landed.pop(replica.owes)
        assert replica.x is not None and replica.delta is not None
        g = self.outer_gradient(replica, replica.delta, average)
        if g is not None:
            replica.outer.step(replica.x, PseudoGradient(delta=g))
        replica.sent, replica.owes, replica.delta, replica.fresh = replica.fresh, replica.round, None, None
        replica.round += 1
        self._train(run, w)

    # -- the server ------------------------------------------------------------------------
    def members(self, key: Key) -> set[int]:
        return {w for w, rep in enumerate(self.replicas) if rep.active and rep.joined <= key[1]}

    def close(self, run: Run, key: Key, sync: Sync, workers: list[int], mean: torch.Tensor) -> None:
        """The server's outer step on the round's average (DiLoCo's), and the average goes back to the members."""
        run.apply_mean([sync.received[w][1] for w in workers], mean)
        run.evaluate()
        self.averaged[key[1]] = len(workers)
        average = run.links.download(mean)
        members = self.members(key)  # one back up since restarts from the whole model: it owes no average
        for w in workers:
            if w in members:
                self.wires.download(run, sync.received[w][1], AVERAGE, key[1], average,
                                    self.num_bytes(run, run.theta.numel(), upload=False))

    def landed(self, run: Run, t: Transfer) -> None:
        replica = self.replicas[t.worker]
        if t.part == WHOLE:  # the server's model (start, or back up)
            replica.x = t.payload
            self._train(run, t.worker)
            return
        replica.landed[t.key] = t.payload
        if replica.waiting and replica.owes == t.key:
            self._step_and_go(run, t.worker)

    # -- churn -----------------------------------------------------------------------------
    def _leave(self, run: Run, w: int) -> None:
        replica = self.replicas[w]
        replica.active, replica.waiting, replica.landed = False, False, {}
        replica.sent, replica.owes, replica.delta, replica.fresh = None, None, None, None
        self.wires.cancel(w, run.state.now)
        self.close_all_complete(run)

    def on_loss(self, run: Run, job: Job) -> None:
        assert job.lost_at is not None
        self._leave(run, job.worker)
        run.rejoin_when_up(job.worker, job.lost_at)

    def on_rejoin(self, run: Run, worker: int, at: Time) -> None:
        """Back up: the server's model, a fresh outer state, and the next round no worker has begun."""
        run.rejoin(worker, at)
        replica = self.replicas[worker]
        replica.outer = construct(self.sc.method.outer, run.k)
        replica.active = True
        replica.round = replica.joined = max(rep.round for rep in self.replicas) + 1
        self.send_model(run, worker, replica.round, replica.last)

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "averaged": sorted(self.averaged.items()),
            "replicas": [{"outer": rep.outer.state_dict(), "x": rep.x, "round": rep.round, "joined": rep.joined,
                          "sent": rep.sent, "owes": rep.owes, "active": rep.active, "waiting": rep.waiting,
                          "delta": rep.delta, "fresh": rep.fresh, "last": None if rep.last is None else rep.last.plain(),
                          "landed": sorted(rep.landed.items())} for rep in self.replicas],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.averaged = {int(r): int(n) for r, n in state["averaged"]}
        for rep, saved in zip(self.replicas, state["replicas"]):
            rep.outer.load_state_dict(saved["outer"])
            rep.x, rep.round, rep.joined, rep.sent = saved["x"], saved["round"], saved["joined"], saved["sent"]
            rep.owes, rep.active, rep.waiting = saved["owes"], saved["active"], saved["waiting"]
            rep.delta, rep.fresh = saved["delta"], saved["fresh"]
            rep.last = None if saved["last"] is None else Finished.from_plain(saved["last"])
            rep.landed = {int(r): g for r, g in saved["landed"]}


class Eager(OneRoundOverlap):
    """Alg. 3: the worker's fresh share stands in for its share of the average still on its way."""

    def outer_gradient(self, replica: Replica, delta: torch.Tensor, average: torch.Tensor | None) -> torch.Tensor | None:
        if average is None:  # no average yet: the fresh share of k
            return delta * self.c
        assert replica.sent is not None and replica.owes is not None
        share = 1.0 / self.averaged[replica.owes]  # 1 / k without churn: the same arithmetic as the paper's 1 / M
        return delta * share + (average - replica.sent * share)


class Delayed(OneRoundOverlap):
    """Alg. 2: the previous round's average, applied a round late (no step before the first is in)."""

    def outer_gradient(self, replica: Replica, delta: torch.Tensor, average: torch.Tensor | None) -> torch.Tensor | None:
        return average
