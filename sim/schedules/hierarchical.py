"""HALoS (Kim et al., ICML 2025, arXiv 2506.04531): the paper's asynchronous method, made hierarchical.

Workers are grouped by region. Each region has a local parameter server
(LPS) beside its workers, on fast links; one global parameter server (GPS)
sits in the network's server region. With theta_r the model of region r's
LPS and theta the GPS's::

    worker w of region r   Delta = theta_r (at dispatch) - theta_w (after its round)       Eq. 2
    LPS r, on arrival      theta_r <- LocalOuter(theta_r, Delta),  v_r <- v_r + 1         asynchronous, as Alg. 2
                           if v_r = v_r^merged + K:  push D_r = theta_r^merged - theta_r to the GPS
                           the worker trains again from theta_r, at once
    GPS, on a push         theta <- GlobalOuter(theta, D_r), then theta goes back to LPS r
    LPS r, on the model    theta_r <- alpha theta_r + (1 - alpha) theta,  theta_r^merged <- theta_r

**As the authors ran it** (their simulator, utnslab/halos). The merge is
their ``merge_model`` (src/halos/ps.py): ``local * (1 - w) + global * w``,
so their merge weight w is the *global* model's and our alpha = 1 - w (the
weight of the LPS's own model, as Streaming DiLoCo's alpha and torchft's
``fragment_update_alpha``). The help text of their ``--model_merge_weight``
(src/halos/simulation/exec_halos.py) states the reverse; the code is what
produced their results, and their default w = 1 (take the global model) only
makes sense read as the code does. Their example (examples/run_halos.sh)
uses w = 0.25, hence the preset's alpha = 0.75. The model merged back is the
GPS's as sent at its update (they clone it there), and an LPS pushes only
when its version reaches v_r^merged + K, which cannot recur while a push is
in flight: updates applied meanwhile are kept only through alpha. Workers
keep their AdamW state across rounds (their worker.py builds it once): the
preset's ``inner_state: keep``. Their DyLU rounds up,
``max(1, ceil(H v / max v))`` (common.py): the preset's
``dylu_rounding: ceil``.

Deliberate differences, each a choice of this simulator for every method:
data comes from Eq. 2's shards (theirs: one global stream in dispatch
order); the inner learning rate follows Eq. 3's per-shard counters (theirs:
the round's position in the global stream); the budget counts a worker's
steps when its LPS applies them (theirs: when a push reaches the GPS, so
our runs stop up to K updates per LPS earlier); transfers take latency plus
bytes over bandwidth (theirs: no latency); their fp16 autocast, gradient
clipping at 1.0 and weight decay on matrices only belong to the trainer and
are not modelled; H is the scenario's for every method (their example: 8 for
HALoS, 32 for the baselines). The HALoS paper's Algorithm 1 (arXiv
2506.04531) describes the same two tiers; where it is silent on a detail,
the code decides. Pushes and models cross the region matrix between the region
and the server's (``network.regions``); workers reach their LPS over their
own link and their region's path to itself. An LPS's ingress is not
modelled as shared (the GPS's neither: K updates apart, pushes rarely meet).
The GPS's model is the one evaluated and reported.

Exact reduction (tests/test_identities.py): one region, K = 1, LocalOuter =
SGD with lr 1 and alpha = 0, without communication time, is the flat
asynchronous schedule (Alg. 2, grace 0) with GlobalOuter as its outer
update: every arrival is pushed at once (D_r = Delta up to rounding), and
the worker restarts from the merged model, because a worker is dispatched
only once everything due at that instant (transfers, then arrivals) is done.
GlobalOuter must not read staleness for this (Nesterov, DN, SGD): the GPS
counts it from the model the LPS last merged, not from the worker's dispatch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sim.errors import FieldError
from sim.jobs import Job
from sim.outer.base import OuterUpdate, PseudoGradient
from sim.outer.registry import construct
from sim.scenario import Scenario
from sim.schedules.base import Run, Schedule
from sim.simtime import ZERO, Time
from trainers.base import JobResult

if TYPE_CHECKING:  # annotations only
    import torch


@dataclass
class LocalServer:
    """One region's LPS: its model, its outer update, and where it stands with the GPS."""

    workers: list[int]
    region: str | None  # where it sits; its pushes cross this region's path to the global server's
    outer: OuterUpdate
    theta: torch.Tensor | None = None  # set when the run starts (from the initial model)
    merged: torch.Tensor | None = None  # theta_r^merged: the model after the last merge
    version: int = 0  # v_r: updates applied
    merged_version: int = 0  # v_r^merged
    global_version: int = 0  # the GPS version of the model merged last (a push's staleness counts from it)
    pushing: bool = False  # a push is on its way, or the GPS's model on its way back
    dispatched: dict[int, int] = field(default_factory=dict)  # job id -> v_r when it started


@dataclass
class Transfer:
    """A push on its way to the GPS, or the GPS's model on its way back to an LPS."""

    at: Time
    kind: str  # "push" | "model"
    server: int  # the LPS
    payload: torch.Tensor
    version: int = 0  # the GPS version of a model


class Hierarchical(Schedule):
    local_servers = True

    def __init__(self, scenario: Scenario):
        super().__init__(scenario)
        hierarchy = scenario.method.hierarchy
        assert hierarchy is not None  # the scenario checks it
        self.K, self.alpha = hierarchy.K, hierarchy.alpha
        regions = [scenario.workers.device(w).region for w in range(scenario.workers.k)]
        names = list(dict.fromkeys(regions))  # in order of first appearance: LPS 0 serves worker 0
        self.lps_of = [names.index(region) for region in regions]
        self.servers = []
        for r, region in enumerate(names):
            members = [w for w, s in enumerate(self.lps_of) if s == r]
            outer = construct(hierarchy.local_outer, len(members))  # N: k means the region's workers
            if outer.needs_dispatch_theta:
                raise FieldError("method.hierarchy.local_outer", f"{hierarchy.local_outer['name']!r} needs the model "
                                "a job started from, which local servers do not keep")
            self.servers.append(LocalServer(members, region, outer))
        self.transfers: list[Transfer] = []  # in flight, in the order they were sent
        self.ready: list[int] = []  # workers whose pseudo-gradient is in, to train again at this instant
        self.now = ZERO  # when the schedule last acted

    def start(self, run: Run) -> None:
        for lps in self.servers:
            lps.theta, lps.merged = run.theta.clone(), run.theta.clone()
            self._dispatch(run, lps, lps.workers)

    def _dispatch(self, run: Run, lps: LocalServer, workers: list[int]) -> None:
        for job in run.dispatch(workers, model=lps.theta):
            lps.dispatched[job.id] = lps.version

    # -- workers and their LPS ---------------------------------------------------------------
    def server_of(self, worker: int) -> int:
        return self.lps_of[worker]

    def on_arrival(self, run: Run, job: Job, result: JobResult) -> None:
        """LPS r applies the pseudo-gradient, pushes if K updates have gathered, and the worker goes again."""
        r, self.now = self.lps_of[job.worker], run.state.now
        lps = self.servers[r]
        staleness = lps.version - lps.dispatched.pop(job.id)
        assert lps.theta is not None and lps.merged is not None
        if run.state.diverged:
            return
        applied = lps.outer.step(lps.theta, PseudoGradient(delta=result.delta, staleness=staleness))
        run.record_sync(job, staleness, applied, server=r)
        if applied:
            lps.version += 1
        if lps.version == lps.merged_version + self.K and not lps.pushing:
            lps.pushing = True
            arrives = run.state.now + run.transfer_time(lps.region, model=False)
            self.transfers.append(Transfer(arrives, "push", r, run.links.received(lps.merged - lps.theta)))
            run.server_event("push", server=r)
        self.ready.append(job.worker)

    def on_loss(self, run: Run, job: Job) -> None:
        assert job.lost_at is not None
        self.servers[self.lps_of[job.worker]].dispatched.pop(job.id)
        run.rejoin_when_up(job.worker, job.lost_at)

    def on_rejoin(self, run: Run, worker: int, at: Time) -> None:
        run.rejoin(worker, at)
        lps = self.servers[self.lps_of[worker]]
        self._dispatch(run, lps, [worker])

    # -- what happens between the tiers, and when -------------------------------------------
    def _due(self) -> Transfer | None:
        return min(self.transfers, key=lambda t: t.at, default=None)  # the first sent among equal times

    def wake_at(self, run: Run, arrival: Job | None) -> Time | None:
        """Transfers land at their time; ready workers go once nothing else is due at this instant."""
        due, now = self._due(), run.state.now
        if self.ready and not (due is not None and due.at == now):
            return None if arrival is not None and arrival.completes_at == now else now
        return None if due is None else due.at

    def on_wake(self, run: Run) -> None:
        due, self.now = self._due(), run.state.now
        if due is not None and due.at == run.state.now:
            self.transfers.remove(due)
            self._land(run, due)
            return
        ready, self.ready = self.ready, []
        for r, lps in enumerate(self.servers):
            self._dispatch(run, lps, sorted(w for w in ready if self.lps_of[w] == r))

    @property
    def busy(self) -> bool:
        """A transfer lands at this very instant: the run neither stops nor saves before it has."""
        return any(t.at == self.now for t in self.transfers)

    def _land(self, run: Run, transfer: Transfer) -> None:
        lps = self.servers[transfer.server]
        assert lps.theta is not None
        if transfer.kind == "push":  # at the GPS
            run.apply_global(transfer.payload, run.state.version - lps.global_version, server=transfer.server)
            run.evaluate()
            back = run.state.now + run.transfer_time(lps.region, model=True)
            self.transfers.append(Transfer(back, "model", transfer.server, run.links.download(run.theta),
                                           run.state.version))
            return
        lps.theta.mul_(self.alpha).add_(transfer.payload, alpha=1.0 - self.alpha)  # at the LPS: merge
        lps.merged = lps.theta.clone()
        lps.merged_version, lps.global_version, lps.pushing = lps.version, transfer.version, False
        run.server_event("merge", server=transfer.server)

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "servers": [{"theta": s.theta, "merged": s.merged, "version": s.version, "merged_version": s.merged_version,
                         "global_version": s.global_version, "pushing": s.pushing, "outer": s.outer.state_dict(),
                         "dispatched": sorted(s.dispatched.items())} for s in self.servers],
            "transfers": [{"at": t.at.plain(), "kind": t.kind, "server": t.server, "payload": t.payload,
                           "version": t.version} for t in self.transfers],
            "ready": list(self.ready),
            "now": self.now.plain(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for lps, saved in zip(self.servers, state["servers"]):
            lps.theta, lps.merged = saved["theta"], saved["merged"]
            lps.version, lps.merged_version = saved["version"], saved["merged_version"]
            lps.global_version, lps.pushing = saved["global_version"], saved["pushing"]
            lps.outer.load_state_dict(saved["outer"])
            lps.dispatched = {int(job): int(v) for job, v in saved["dispatched"]}
        self.transfers = [Transfer(Time.from_plain(t["at"]), t["kind"], t["server"], t["payload"], t["version"])
                          for t in state["transfers"]]
        self.ready = list(state["ready"])
        self.now = Time.from_plain(state["now"])
