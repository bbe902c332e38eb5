"""The interface every schedule implements: when workers are dispatched, and what an arrival does.

The engine owns simulated time and the jobs. It merges what happens next,
a pseudo-gradient arriving at the server or a device going down or coming
back, in (time, worker) order and hands each to the schedule, which answers
by calling back into the :class:`Run`: dispatch workers, apply updates,
evaluate. A schedule may also act on its own at a time it names
(:meth:`Schedule.wake_at`): Algorithm 5 closes its grace window that way, a
synchronous schedule starts its next round. Anything due at or before that
time is handled first.

A schedule keeps its own state (a grace window, a round's results, the
workers' carried state) and puts it in :meth:`Schedule.state_dict` as plain
data. While :attr:`Schedule.busy` it holds something a checkpoint does not
capture, or work that must finish first: the run neither saves nor stops then.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Sequence

from sim.jobs import Finished, Job, JobTable
from sim.runstate import RunState
from sim.scenario import Scenario
from sim.simtime import Time
from trainers.base import JobResult, JobSpec

if TYPE_CHECKING:  # annotations only
    import torch

    from sim.compression import Links
    from sim.outer.base import OuterUpdate


class Run(Protocol):
    """What a schedule sees of the run and may do to it (sim.engine.Simulation implements it)."""

    k: int  # workers
    state: RunState  # read it (the clock ``now``, ``diverged``...); change it through the methods below
    jobs: JobTable  # the jobs in flight, and the devices' pending rejoins
    theta: torch.Tensor  # the (central) server's model: read it, change it through the methods below
    links: Links  # what the network's encodings make of a model or a pseudo-gradient
    batch_size: int  # examples per inner step of one worker
    layer_sizes: list[int] | None  # values per layer of the flat model, if the trainer says (ReportsLayers)

    def advance(self, t: Time) -> None:
        """Move the clock to ``t`` (a decision taken at ``t``, not at an arrival)."""
        ...

    def dispatch(self, workers: Sequence[int], state: Any = None, model: torch.Tensor | None = None) -> list[Job]:
        """Start a round on each worker that is up, all from the current model, or ``model`` (Algorithm 4)."""
        ...

    def train(self, worker: int, model: torch.Tensor, spec: JobSpec, state: Any = None, jitter: float = 1.0) -> Job | None:
        """Train on ``worker`` from ``model`` now, sending nothing (None, with a rejoin queued, if it is down)."""
        ...

    def draw_spec(self, worker: int) -> tuple[JobSpec, float]:
        """The next round's spec for ``worker`` and its device's jitter factor."""
        ...

    def link_time(self, worker: int, num_bytes: int) -> Time:
        """Seconds ``num_bytes`` take over ``worker``'s path to the server (either way)."""
        ...

    def ingress_time(self, num_bytes: int) -> Time:
        """Seconds ``num_bytes`` hold the server's shared ingress link."""
        ...

    def apply_part(self, index: torch.Tensor | None, outer: OuterUpdate, mean: torch.Tensor,
                   members: Sequence[tuple[Finished, int]]) -> None:
        """One step of ``outer`` on the model's values at ``index`` (None: all of it), counting members' steps."""
        ...

    def record_transfer(self, kind: str, job: Finished, fragment: int, sent: Time, num_bytes: int) -> None:
        """Record a transfer that landed now (``upload``, ``download``) or a ``merge``."""
        ...

    def apply(self, job: Job, delta: torch.Tensor) -> None:
        """Sync one pseudo-gradient through the outer update (Algorithm 2, line 13)."""
        ...

    def apply_mean(self, jobs: Sequence[Job | Finished], mean: torch.Tensor,
                   deltas: Sequence[torch.Tensor] | None = None) -> None:
        """One outer step on the mean of ``jobs``' pseudo-gradients (Algorithm 1, lines 11-12); ``deltas``: theirs."""
        ...

    def adopt(self, job: Job, delta: torch.Tensor) -> None:
        """Take the worker's model as the server's (the 1-worker baseline)."""
        ...

    def record_sync(self, job: Job, staleness: int, applied: bool, server: int) -> None:
        """Record that region server ``server`` applied (or dropped) ``job``'s pseudo-gradient."""
        ...

    def apply_global(self, delta: torch.Tensor, staleness: int, server: int) -> None:
        """One outer step of the central server on region server ``server``'s accumulated change."""
        ...

    def server_event(self, kind: str, server: int, staleness: int = -1) -> None:
        """Record something a server did (a push, a merge)."""
        ...

    def transfer_time(self, region: str | None, model: bool) -> Time:
        """How long a region server's push (``model``: the central model back) takes across the region matrix."""
        ...

    def evaluate(self) -> None:
        """Evaluate the server model if an evaluation is due."""
        ...

    def rejoin(self, worker: int, at: Time) -> None:
        """Record that ``worker`` is back up at ``at`` (the clock moves there)."""
        ...

    def rejoin_when_up(self, worker: int, after: Time) -> None:
        """Queue ``worker``'s rejoin for when it is next up after ``after``."""
        ...


class Schedule(ABC):
    """A scheduling policy. Subclasses live one per file and register a name in sim/schedules/__init__.py."""

    #: each job runs on every device in lockstep with k x the batch and nothing is communicated (the baseline)
    lockstep: ClassVar[bool] = False
    #: workers talk to a server in their own region, which talks to the central one (HALoS); the records
    #: then say which server each event concerns (:meth:`server_of`)
    local_servers: ClassVar[bool] = False
    #: workers train while the schedule moves their transfers (:meth:`Run.train`, Streaming DiLoCo, eager
    #: updates); the records then carry each transfer (``upload``/``download`` rows, sim/records.py)
    overlaps: ClassVar[bool] = False
    #: the schedule carries its workers' inner optimizer state itself (the baseline's one process, Streaming
    #: DiLoCo's workers); for every other schedule the engine keeps it as ``method.inner_state`` says
    carries_inner_state: ClassVar[bool] = False

    def __init__(self, scenario: Scenario):
        self.sc = scenario

    @abstractmethod
    def start(self, run: Run) -> None:
        """The run begins (a resumed run does not start again)."""

    @abstractmethod
    def on_arrival(self, run: Run, job: Job, result: JobResult) -> None:
        """``job``'s pseudo-gradient reached the server (collected: the clock is at its arrival)."""

    @abstractmethod
    def on_loss(self, run: Run, job: Job) -> None:
        """``job``'s device went down before its upload left: nothing will arrive (already recorded)."""

    @abstractmethod
    def on_rejoin(self, run: Run, worker: int, at: Time) -> None:
        """``worker``, down when it should have started a round, is back up at ``at``."""

    def server_of(self, worker: int) -> int:
        """The server ``worker`` talks to: -1 for the central one, r for region r's own (``local_servers``)."""
        return -1

    def wake_at(self, run: Run, arrival: Job | None) -> Time | None:
        """When the schedule acts on its own next (None: only when something happens), given the next arrival."""
        return None

    def on_wake(self, run: Run) -> None:
        """The time named by :meth:`wake_at` has come."""
        raise NotImplementedError(f"{type(self).__name__} named a wake-up time but does not act on it")

    @property
    def busy(self) -> bool:
        """Mid-way through something the run must finish before it saves or stops (a synchronous round)."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """The policy's own state as plain data (tensors, numbers, lists), for checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""

