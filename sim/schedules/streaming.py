"""Streaming DiLoCo (Douillard et al. 2025, arXiv 2501.18512): fragments synced in turn while workers train on.

The model is cut into P fragments, strided over layers (sim/fragments.py).
Each worker keeps its own model theta_w and its inner AdamW state across
syncs; unlike DiLoCo it never restarts from the server's model. Fragment p
syncs every H inner steps, the fragments H / P steps apart: at the steps
s = o_p (mod H), o_p = (p + 1) H / P, so the last fragment syncs at H, 2H, ...
as DiLoCo does (torchft staggers them this way; the paper's Alg. 2 tests
(t - t_p) mod H = 0). With g_p the global fragment a worker merged last::

    worker, step s (p syncs)  Delta_w = g_p - theta_w[p], uploaded in network.dtype; it trains on
    server, all in            theta[p] <- Outer_p(theta[p], mean_w Delta_w)           one outer state per fragment
                              theta[p] goes back to every member in network.model_dtype
    worker, step s + tau      theta_w[p] <- alpha theta_w[p] + (1 - alpha) theta[p]   (Sec. 2.3; it waits if not landed)

A worker's peak upload is 1/P of the model, and tau inner steps hide each
sync's round trip.

**Phase, against torchft** (torchft/local_sgd.py, ``DiLoCo``): torchft takes
fragment p's pseudo-gradient tau steps *before* o_p and merges at o_p; we
take it at o_p and merge tau steps after. The spacing is the same; the
phase is the paper's: its Algorithm 2 syncs fragment p when
(t - t_p) mod H = 0 and applies the outer result tau steps later (Sec. 2.3,
"overlapping communication"), and at tau = 0 both readings are DiLoCo's,
which the identity below needs. So with our phase every fragment's first
pseudo-gradient covers H / P steps (torchft's first, H / P - tau) and the
last fragment merges tau steps after DiLoCo would. The bound on tau
differs too: torchft holds one fragment in flight at a time, so it needs
tau < H / P; here each fragment's sync is its own transfer, several may be
in flight, and the one rule is that a fragment merges before its own next
sync: tau < H, checked when the scenario is validated
(``method.streaming.overlap``, one line). Up to tau < H / P the two agree
on how many fragments travel at once. torchft also asks H to be a multiple
of P; the offsets here are floor((p + 1) H / P), so any H >= P works. A worker is a chain of jobs that only train
(:meth:`Run.train`), cut at its syncs and merges, each a pure function of
(model, spec, inner state); a round's specs (shard, inner learning rates,
jitter) are drawn for every worker at once, in worker order, so the model
does not depend on who gets there first. theta_w is kept as (g, g - theta_w),
the global fragments merged last and the worker's drift from them: the
drift is exactly what a sync uploads.

Exact reduction (tests/test_identities.py): P = 1, tau = 0, alpha = 0 with the
inner state reset every round is DiLoCo (Algorithm 1): every worker waits for
the sync, takes the server's model, and uploads exactly its round's delta.

A worker whose device goes down leaves every sync it had not uploaded to;
back up, it downloads the whole server model and joins at the next round no
worker has started, with a fresh inner state. A sync it uploaded to before
going down still merges its fragment and counts its steps up to that sync,
but the fragment is not sent back to it; its later steps count from its
restart, never twice. torchft and Douillard et al. have no churn: these
rules are ours.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from sim.dispatch import segment
from sim.fragments import fragment_indices
from sim.jobs import Finished, Job
from sim.outer.registry import construct
from sim.scenario import Scenario
from sim.schedules.base import Run
from sim.schedules.overlapping import WHOLE, Key, Overlapping
from sim.schedules.wires import Sync, Transfer
from sim.simtime import Time
from trainers.base import JobResult


@dataclass
class Worker:
    """One worker's own model, as the global fragments it merged last and its drift from them."""

    ref: torch.Tensor | None = None  # g: per fragment, the global value merged last
    drift: torch.Tensor | None = None  # g - theta_w
    inner: Any = None  # its inner optimizer's state (carried within a round, and across rounds with inner_state: keep)
    step: int = 0  # local steps done
    joined: int = 0  # it takes part in the syncs after this step
    counted: int = 0  # its steps counted in t_local so far
    restarts: list[int] = field(default_factory=list)  # steps it restarted at (back up) and has not been counted past
    active: bool = True  # False while its device is down
    waiting: bool = False  # at a merge, for a fragment still on its way
    last: Finished | None = None  # its last finished job (what the records name)
    landed: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)  # (fragment, sync step) -> g_p


class Streaming(Overlapping):
    carries_inner_state = True

    def __init__(self, scenario: Scenario):
        super().__init__(scenario)
        spec = scenario.method.streaming
        assert spec is not None  # the scenario checks it
        self.P, self.tau, self.alpha, self.keep = spec.fragments, spec.overlap, spec.alpha, spec.inner_state == "keep"
        self.H = scenario.schedule.H
        self.offsets = [(p + 1) * self.H // self.P % self.H for p in range(self.P)]
        self.outers = [construct(scenario.method.outer, scenario.workers.k) for _ in range(self.P)]
        self.workers = [Worker() for _ in range(scenario.workers.k)]
        self.index: list[torch.Tensor] = []  # each fragment's positions (P > 1), from the trainer's layers

    # -- the fragments' rhythm --------------------------------------------------------------
    def syncing(self, s: int) -> list[int]:
        """The fragments that sync at local step ``s``."""
        return [p for p, o in enumerate(self.offsets) if s > 0 and s % self.H == o]

    def _next_boundary(self, s: int) -> int:
        """The next step after ``s`` where the worker syncs or merges (rounds end at multiples of H)."""
        return min(b for b in range(s + 1, s + self.H + 1) if self.syncing(b) or self.syncing(b - self.tau))

    def _fragments(self, run: Run) -> None:
        """The fragments' positions (from the trainer's layers), found once per process: they are not checkpointed."""
        if self.P > 1 and not self.index:
            self.index = fragment_indices(run.theta.numel(), self.P, run.layer_sizes)

    def _take(self, x: torch.Tensor, p: int) -> torch.Tensor:
        return x.clone() if self.P == 1 else x.index_select(0, self.index[p])

    def _put(self, x: torch.Tensor, p: int, values: torch.Tensor) -> None:
        if self.P == 1:
            x.copy_(values)
        else:
            x.index_copy_(0, self.index[p], values)

    def _size(self, run: Run, p: int) -> int:
        return run.theta.numel() if self.P == 1 else self.index[p].numel()

    # -- workers ---------------------------------------------------------------------------
    def start(self, run: Run) -> None:
        """Every worker downloads the server's model, then trains."""
        self._fragments(run)
        for w in range(run.k):
            self.send_model(run, w, 0, None)

    def _train(self, run: Run, w: int) -> None:
        """The worker's next stretch of training, up to its next sync or merge."""
        worker = self.workers[w]
        s, r = worker.step, worker.step // self.H
        spec, jitter = self.specs.get(run, r, w)
        part = segment(spec, s - r * self.H, self._next_boundary(s) - r * self.H, run.batch_size, keep_state=True)
        fresh = not self.keep and s % self.H == 0  # reset: a fresh AdamW each round of H steps, as DiLoCo's
        assert worker.ref is not None and worker.drift is not None
        if run.train(w, worker.ref - worker.drift, part, None if fresh else worker.inner, jitter) is None:
            self._leave(run, w)  # down: it rejoins when back up (queued by run.train)

    def on_arrival(self, run: Run, job: Job, result: JobResult) -> None:
        """The worker reached a sync or a merge: upload what syncs, then merge and train on (or wait)."""
        self._fragments(run)
        worker = self.workers[job.worker]
        assert worker.drift is not None
        worker.drift += result.delta  # theta_w moved by -delta
        worker.inner = result.optimizer_state
        worker.step += job.spec.steps
        worker.last = Finished.of(job)
        if run.state.diverged:
            return
        for p in self.syncing(worker.step):
            if worker.step > worker.joined:
                self.expect((p, worker.step), job.worker)
                self.wires.upload(run, worker.last, p, worker.step, run.links.received(self._take(worker.drift, p)),
                                  self.num_bytes(run, self._size(run, p), upload=True))
        self._merge_and_go(run, job.worker)

    def _merge_and_go(self, run: Run, w: int) -> None:
        """Merge the fragments due at this step (Sec. 2.3) once all have landed, then train on."""
        worker = self.workers[w]
        due = [(p, worker.step - self.tau) for p in self.syncing(worker.step - self.tau)
               if worker.step - self.tau > worker.joined]
        if any(key not in worker.landed for key in due):
            worker.waiting = True
            return
        worker.waiting = False
        assert worker.ref is not None and worker.drift is not None and worker.last is not None
        for key in due:
            p, g = key[0], worker.landed.pop(key)
            ref, drift = self._take(worker.ref, p), self._take(worker.drift, p)
            self._put(worker.drift, p, (drift + (g - ref)).mul_(self.alpha))  # alpha (g - theta_w[p])
            self._put(worker.ref, p, g)
            run.record_transfer("merge", worker.last, p, run.state.now, 0)
        self._train(run, w)

    # -- the server ------------------------------------------------------------------------
    def members(self, key: Key) -> set[int]:
        return {w for w, worker in enumerate(self.workers) if worker.active and worker.joined < key[1]}

    def on_wake(self, run: Run) -> None:
        self._fragments(run)
        super().on_wake(run)

    def close(self, run: Run, key: Key, sync: Sync, workers: list[int], mean: torch.Tensor) -> None:
        """One outer step on the fragment, and it goes back to the members."""
        p, s = key
        members = []
        for w in workers:
            worker = self.workers[w]
            # its steps since it was last counted, or since it last restarted before s (back up, it skipped the
            # steps between its last upload and its restart: never trained, never counted)
            base = max([worker.counted] + [start for start in worker.restarts if start < s])
            members.append((sync.received[w][1], s - base))
            worker.counted = s
            worker.restarts = [start for start in worker.restarts if start > s]
        run.apply_part(None if self.P == 1 else self.index[p], self.outers[p], mean, members)
        run.evaluate()
        g = run.links.download(self._take(run.theta, p))
        for w in workers:
            if self.workers[w].active and s > self.workers[w].joined:  # back up since: it restarts from the whole model
                self.wires.download(run, sync.received[w][1], p, s, g, self.num_bytes(run, self._size(run, p), upload=False))

    def landed(self, run: Run, t: Transfer) -> None:
        worker = self.workers[t.worker]
        if t.part == WHOLE:  # the server's model (start, or back up): it trains from its step
            worker.ref, worker.drift = t.payload, torch.zeros_like(t.payload)
            self._train(run, t.worker)
            return
        worker.landed[(t.part, t.key)] = t.payload
        if worker.waiting:
            self._merge_and_go(run, t.worker)

    # -- churn -----------------------------------------------------------------------------
    def _leave(self, run: Run, w: int) -> None:
        """The worker's device is down: it leaves the syncs it has not uploaded to, and its state is gone."""
        worker = self.workers[w]
        worker.active, worker.waiting, worker.landed, worker.inner = False, False, {}, None
        self.wires.cancel(w, run.state.now)
        self.close_all_complete(run)

    def on_loss(self, run: Run, job: Job) -> None:
        assert job.lost_at is not None
        self._fragments(run)
        self._leave(run, job.worker)
        run.rejoin_when_up(job.worker, job.lost_at)

    def on_rejoin(self, run: Run, worker: int, at: Time) -> None:
        """Back up: download the server's model and start at the next round no worker has begun."""
        run.rejoin(worker, at)
        rejoining = self.workers[worker]
        start = (max(v.step for v in self.workers) // self.H + 1) * self.H
        rejoining.active, rejoining.step, rejoining.joined = True, start, start
        rejoining.restarts.append(start)  # syncs it uploaded to before going down still count from ``counted``
        rejoining.inner = None
        self.send_model(run, worker, start, rejoining.last)

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "workers": [{**{f.name: getattr(w, f.name) for f in dataclasses.fields(w) if f.name not in ("last", "landed")},
                         "last": None if w.last is None else w.last.plain(),
                         "landed": [[p, s, g] for (p, s), g in sorted(w.landed.items())]} for w in self.workers],
            "outers": [outer.state_dict() for outer in self.outers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        for worker, saved in zip(self.workers, state["workers"]):
            for name, value in saved.items():
                setattr(worker, name, value)
            worker.last = None if saved["last"] is None else Finished.from_plain(saved["last"])
            worker.landed = {(p, s): g for p, s, g in saved["landed"]}
        for outer, saved in zip(self.outers, state["outers"]):
            outer.load_state_dict(saved)
