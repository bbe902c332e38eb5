"""What Streaming DiLoCo and eager updates share: workers that train while the schedule moves their transfers.

Both keep each worker's own model, so their jobs only train
(:meth:`Run.train`) and the schedule sends what they produce over
:class:`~sim.schedules.wires.Wires`. The server gathers each sync's uploads
(keyed by (fragment, step or round)) and closes it once every member's
upload is in, averaging in worker order; a rounds' specs are drawn for
everyone at once (:class:`~sim.schedules.roundspecs.RoundSpecs`).
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch

from sim.compression import wire_bytes
from sim.jobs import Finished, Job
from sim.scenario import Scenario
from sim.schedules.base import Run, Schedule
from sim.schedules.roundspecs import RoundSpecs
from sim.schedules.wires import Sync, Transfer, Wires
from sim.simtime import Time
from trainers.base import JobSpec

Key = tuple[int, int]  # a sync: (fragment, or -1 for the whole vector; the step or round it belongs to)
WHOLE = -1  # a transfer of the whole vector (a model to a worker, a round's pseudo-gradient)


class Overlapping(Schedule):
    overlaps = True

    def __init__(self, scenario: Scenario):
        super().__init__(scenario)
        self.wires = Wires(scenario.workers.k)
        self.syncs: dict[Key, Sync] = {}
        self.specs = RoundSpecs()

    @abstractmethod
    def members(self, key: Key) -> set[int]:
        """The workers whose upload sync ``key`` waits for."""

    @abstractmethod
    def close(self, run: Run, key: Key, sync: Sync, workers: list[int], mean: torch.Tensor) -> None:
        """Every member's upload is in: apply ``mean`` (of ``workers``' uploads, in worker order)."""

    @abstractmethod
    def landed(self, run: Run, transfer: Transfer) -> None:
        """A download reached its worker."""

    # -- the server gathers ----------------------------------------------------------------
    def expect(self, key: Key, worker: int) -> None:
        """``worker``'s upload for ``key`` is on its way."""
        self.syncs.setdefault(key, Sync()).sending.add(worker)

    def close_if_complete(self, run: Run, key: Key) -> None:
        sync = self.syncs.get(key)
        if sync is None or sync.sending or not sync.received or not self.members(key) <= set(sync.received):
            return
        del self.syncs[key]
        if run.state.diverged:
            return
        workers = sorted(sync.received)
        self.close(run, key, sync, workers, torch.stack([sync.received[w][0] for w in workers]).sum(dim=0) / len(workers))

    def close_all_complete(self, run: Run) -> None:
        """A worker left: the syncs that waited only for it close now."""
        for key in sorted(self.syncs):
            self.close_if_complete(run, key)

    # -- transfers -------------------------------------------------------------------------
    def num_bytes(self, run: Run, n: int, upload: bool) -> int:
        links = run.links
        return wire_bytes(n, links.upload_format if upload else links.download_format, links.block)

    def send_model(self, run: Run, w: int, key: int, last: Finished | None) -> None:
        """The whole server model to worker ``w`` (at the start, or back up); it lands after its downlink."""
        now = run.state.now
        job = last or Finished(-1, w, JobSpec(w, -1, (), 0), run.state.version, now, now)
        self.wires.download(run, job, WHOLE, key, run.links.download(run.theta),
                            self.num_bytes(run, run.theta.numel(), upload=False))

    def wake_at(self, run: Run, arrival: Job | None) -> Time | None:
        return self.wires.next_at()

    def on_wake(self, run: Run) -> None:
        transfer = self.wires.due(run.state.now)
        assert transfer is not None
        if transfer.stage == "reach":
            self.wires.enter_ingress(run, transfer)
        elif transfer.stage == "arrive":
            run.record_transfer("upload", transfer.job, transfer.part, transfer.sent, transfer.num_bytes)
            sync = self.syncs.get((transfer.part, transfer.key))
            if sync is None:  # it closed without this worker (its device went down and it left)
                return
            sync.sending.discard(transfer.worker)
            sync.received[transfer.worker] = (transfer.payload, transfer.job)
            self.close_if_complete(run, (transfer.part, transfer.key))
        else:
            run.record_transfer("download", transfer.job, transfer.part, transfer.sent, transfer.num_bytes)
            self.landed(run, transfer)

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"syncs": [[p, s, sync.plain()] for (p, s), sync in sorted(self.syncs.items())],
                "specs": self.specs.state_dict(), "wires": self.wires.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.syncs = {(p, s): Sync.from_plain(sync) for p, s, sync in state["syncs"]}
        self.specs.load_state_dict(state["specs"])
        self.wires.load_state_dict(state["wires"])
