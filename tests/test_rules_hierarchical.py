"""exact checks of HALoS's rules that mutation testing found unpinned (issue 22)

sim/schedules/hierarchical.py, on a null-trainer fleet (float64, microseconds a job) of three regions: two
workers beside the global server ("home") and two in each of two far regions, so pushes and global models
are on their way most of the time, and each far region's push overlaps the other's.
"""
from __future__ import annotations

import io

import pytest
import torch

from sim import simulate
from sim.build import assemble
from sim.compression import wire_bytes
from sim.engine import Simulation
from sim.errors import FieldError, RunInterrupted
from sim.executors import SerialExecutor
from sim.outer.base import OuterUpdate, PseudoGradient
from sim.records import run_hash
from sim.runstate import Checkpoints
from sim.trainer_factory import build_trainer
from tests.helpers import scenario

DIM = 8
SPEEDS = [1.0, 1.3, 0.9, 1.7, 1.1, 2.0]
REGIONS = ["home", "home", "east", "east", "west", "west"]  # LPS 0, 1, 2 in order of first appearance
PATHS = [{"between": ["home", "east"], "latency_ms": 1500, "bandwidth_gbps": 1.0},
         {"between": ["home", "west"], "latency_ms": 2300, "bandwidth_gbps": 1.0}]
NETWORK = {"server_region": "home", "regions": PATHS}


class DropStale(OuterUpdate):
    """A user's local outer update (named by import path): SGD with lr 1 that drops what is staler than ``threshold``."""

    def __init__(self, threshold: int = 0):
        self.threshold = threshold

    def step(self, theta: torch.Tensor, grad: PseudoGradient) -> bool:
        if grad.staleness > self.threshold:
            return False
        theta.sub_(grad.delta)
        return True


class NeedsDispatchModel(DropStale):
    """A user's outer update that would read the model each job started from (as delay compensation does)."""

    needs_dispatch_theta = True


def user_outer(cls: type) -> str:
    return f"{__name__}:{cls.__name__}"


def halos(*, K: int = 2, alpha: float = 0.6, local_outer: dict | None = None, t_max: int = 150, regions=REGIONS,
          speeds=SPEEDS, network=NETWORK, device_extra=None, trainer_config=None):
    hierarchy = {"K": K, "alpha": alpha, **({"local_outer": local_outer} if local_outer else {})}
    extra = [{"region": r, **(device_extra or [{}] * len(regions))[w]} for w, r in enumerate(regions)]
    return scenario(speeds, preset="halos", trainer_config={"dim": DIM, **(trainer_config or {})}, H=3, t_max=t_max,
                    device_extra=extra, network=network, method={"hierarchy": hierarchy})


def fresh(sc, checkpoints=None) -> Simulation:
    trainer = build_trainer(sc)
    return Simulation(assemble(sc, trainer, SerialExecutor(trainer)), checkpoints=checkpoints)


def hash_of(sim: Simulation) -> str:
    return run_hash(sim.recorder.metrics_frame(), sim.recorder.events_frame())


def saved_to(blobs: list[bytes]):
    def keep(state: dict) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        blobs.append(buf.getvalue())
    return keep


def load(blob: bytes) -> dict:
    return torch.load(io.BytesIO(blob), weights_only=True)  # plain data: a checkpoint never unpickles objects


# -- __init__ ------------------------------------------------------------------------------------


def test_a_local_outer_that_needs_the_model_a_job_started_from_is_refused_naming_the_field():
    name = user_outer(NeedsDispatchModel)
    sc = halos(local_outer={"name": name})
    with pytest.raises(FieldError) as caught:
        simulate(sc)
    assert str(caught.value) == (f"field 'method.hierarchy.local_outer': {name!r} needs the model a job started from, "
                                 "which local servers do not keep")


def test_local_outer_N_k_is_the_number_of_workers_of_the_region_not_of_the_fleet():
    """Three regions of two workers: ``N: k`` is N = 2 at every LPS (the fleet's k is 6)."""
    def params(N):
        return simulate(halos(local_outer={"name": "delayed_nesterov", "lr": 0.8, "N": N})).params

    as_k = params("k")
    assert torch.equal(as_k, params(2))
    assert not torch.equal(as_k, params(6))


# -- on_arrival ------------------------------------------------------------------------------------


def _lps_updates_since_dispatch(ev):
    """For each job its LPS synced: the LPS's applied updates between the job's dispatch and its sync (or drop)."""
    counts, seen, expected = {}, {}, {}
    for row in ev.itertuples():
        if row.event == "dispatch":
            seen[row.job] = counts.get(row.server, 0)
        elif row.event in ("sync", "drop"):
            expected[row.job] = counts.get(row.server, 0) - seen[row.job]
            counts[row.server] = counts.get(row.server, 0) + (row.event == "sync")
    return expected


def test_a_syncs_staleness_counts_its_region_servers_updates_since_the_job_was_dispatched():
    ev = simulate(halos()).events
    expected = _lps_updates_since_dispatch(ev)
    synced = ev[ev["event"] == "sync"]
    assert dict(zip(synced["job"], synced["staleness"])) == expected
    assert synced["staleness"].max() >= 2 and (synced["dispatch_version"] > 0).any()  # the check can fail


def test_the_local_outer_is_given_that_staleness_and_a_drop_is_recorded_and_not_counted_as_an_update():
    ev = simulate(halos(local_outer={"name": user_outer(DropStale), "threshold": 0})).events
    expected = _lps_updates_since_dispatch(ev)
    ends = ev[ev["event"].isin(["sync", "drop"])]
    assert dict(zip(ends["job"], ends["staleness"])) == expected
    assert (ends.loc[ends["event"] == "drop", "staleness"] > 0).all()
    assert (ends.loc[ends["event"] == "sync", "staleness"] == 0).all()
    assert (ends["event"] == "drop").sum() >= 10 and (ends["event"] == "sync").sum() >= 10


def test_an_lps_pushes_once_per_merge_even_when_updates_it_drops_leave_its_version_at_the_push():
    """v_r = v_r^merged + K holds again after a drop: no second push while the first (or its model) travels."""
    ev = simulate(halos(local_outer={"name": user_outer(DropStale), "threshold": 0})).events
    dropped_at_push = 0
    for server in range(3):
        mine = ev[ev["server"] == server]
        tiers = mine.loc[mine["worker"] < 0, "event"].tolist()
        assert tiers == (["push", "global", "merge"] * len(tiers))[: len(tiers)], (server, tiers)
        travelling = False
        for kind in mine["event"]:
            travelling = (travelling or kind == "push") and kind != "merge"
            dropped_at_push += travelling and kind == "drop"
    assert dropped_at_push >= 3  # the check can fail


def test_a_push_and_the_global_model_each_cross_the_path_with_their_own_encoding():
    """network.dtype int8 for what an LPS pushes, model_dtype fp32 for the model coming back: other sizes, other times."""
    ev = simulate(halos(network={**NETWORK, "dtype": "int8", "model_dtype": "fp32"},
                        trainer_config={"dim": 4096})).events
    for server, path in ((1, PATHS[0]), (2, PATHS[1])):
        mine = ev[(ev["server"] == server) & (ev["worker"] < 0)]
        push, glob, merge = (mine.loc[mine["event"] == k, "tau"].to_numpy() for k in ("push", "global", "merge"))
        up = path["latency_ms"] / 1e3 + wire_bytes(4096, "int8") * 8 / (path["bandwidth_gbps"] * 1e9)
        down = path["latency_ms"] / 1e3 + wire_bytes(4096, "fp32") * 8 / (path["bandwidth_gbps"] * 1e9)
        n = len(merge)
        assert n >= 2 and wire_bytes(4096, "int8") < wire_bytes(4096, "fp32") / 3
        assert (glob[:n] - push[:n]) == pytest.approx([up] * n, rel=1e-9)
        assert (merge - glob[:n]) == pytest.approx([down] * n, rel=1e-9)


# -- the global server ------------------------------------------------------------------------------


def test_a_global_updates_staleness_counts_from_the_gps_version_its_region_merged_last():
    """GPS staleness = GPS updates before this one - the version of the model the pushing LPS merged last (0 at first)."""
    ev = simulate(halos()).events
    merged_version = {0: 0, 1: 0, 2: 0}
    in_flight: dict[int, int] = {}
    checked = 0
    for row in ev[ev["worker"] < 0].itertuples():
        if row.event == "global":
            assert row.staleness == row.server_version - 1 - merged_version[row.server], row
            in_flight[row.server] = row.server_version  # the model sent back is the GPS's after this update
            checked += row.staleness > 0 and merged_version[row.server] > 0
        elif row.event == "merge":
            merged_version[row.server] = in_flight.pop(row.server)
    assert checked >= 5  # the check can fail


# -- when things happen at one instant -------------------------------------------------------------


def test_a_worker_trains_again_at_once_even_while_its_regions_push_or_model_travels():
    ev = simulate(halos()).events
    rows = list(ev.itertuples())
    travelling, waited_on_nothing = {0: False, 1: False, 2: False}, 0
    for i, row in enumerate(rows):
        if row.worker < 0:
            travelling[row.server] = row.event != "merge"
        elif row.event == "sync":
            nxt = next((r for r in rows[i + 1:] if r.worker == row.worker), None)
            if nxt is None:  # the budget is spent: the run ends at this instant
                assert row.tau == rows[-1].tau
                continue
            assert (nxt.event, nxt.tau) == ("dispatch", row.tau), (row, nxt)
            waited_on_nothing += travelling[row.server]
    assert waited_on_nothing >= 10  # the check can fail: transfers were on their way


def test_every_arrival_of_an_instant_is_applied_before_any_worker_goes_again():
    """Two equal workers in the server's region arrive together every round: both syncs (and the push, global
    update and merge they bring), then both dispatches, from the same merged model."""
    ev = simulate(halos(speeds=[1.0, 1.0, 0.9, 1.7, 1.1, 2.0], t_max=60)).events
    together = ev[(ev["tau"] == 3.0) & (ev["server"] == 0)]
    assert together["event"].tolist() == ["complete", "sync", "complete", "sync", "push", "global", "merge",
                                          "dispatch", "dispatch"]
    for tau, at in ev[ev["server"] == 0].groupby("tau"):
        kinds = at["event"].tolist()
        if "dispatch" in kinds and tau > 0:
            first = kinds.index("dispatch")
            assert set(kinds[first:]) == {"dispatch"}, (tau, kinds)


# -- churn -----------------------------------------------------------------------------------------


def test_a_worker_back_up_is_recorded_as_itself_and_restarts_at_once_at_its_own_region_server():
    extra = [{}, {}, {"availability": {"down": [[2.0, 9.0]]}}, {}, {}, {}]
    ev = simulate(halos(device_extra=extra, t_max=60)).events
    back = ev[ev["event"] == "rejoin"]
    assert back["worker"].tolist() == [2] and back["tau"].tolist() == [9.0]
    after = ev[(ev.index > back.index[0]) & (ev["worker"] == 2)].iloc[0]
    assert (after["event"], after["tau"], after["server"]) == ("dispatch", 9.0, 1)


# -- checkpoints -----------------------------------------------------------------------------------


def test_every_checkpoint_resumes_to_the_same_hash_and_model_with_pushes_and_models_on_their_way():
    sc = halos(K=2, alpha=0.6, t_max=120)
    expected = simulate(sc)
    blobs: list[bytes] = []
    sim = fresh(sc, Checkpoints(saved_to(blobs), every=1))
    sim.run()
    assert hash_of(sim) == expected.run_hash
    kinds = [sorted(t["kind"] for t in load(b)["schedule"]["transfers"]) for b in blobs]
    assert sum("push" in k for k in kinds) >= 3 and sum("model" in k for k in kinds) >= 3  # the check can fail
    assert sum(len(k) >= 2 for k in kinds) >= 3
    for blob in blobs:
        resumed = fresh(sc)
        resumed.load_state_dict(load(blob))
        outcome = resumed.run()
        assert hash_of(resumed) == expected.run_hash
        assert torch.equal(outcome.theta, expected.params)


def test_a_run_stopped_before_its_first_event_or_right_after_resuming_saves_a_state_that_resumes():
    """SIGINT at once saves the state, also before anything happened and at the first safe point of a resumed run."""
    sc = halos(t_max=60)
    expected = simulate(sc).run_hash
    blobs: list[bytes] = []
    sim = fresh(sc, Checkpoints(saved_to(blobs)))
    sim.request_stop()
    with pytest.raises(RunInterrupted):
        sim.run()
    assert len(blobs) == 1 and load(blobs[0])["schedule"]["now"][1] == 0.0
    # resume, run past a few global updates, then stop at once after resuming from there
    later: list[bytes] = []
    run = fresh(sc, Checkpoints(saved_to(later), every=3))
    run.load_state_dict(load(blobs[0]))
    run.run()
    assert hash_of(run) == expected and len(later) >= 2
    state = load(later[1])
    assert state["schedule"]["transfers"]  # a model on its way back
    stopped: list[bytes] = []
    again = fresh(sc, Checkpoints(saved_to(stopped)))
    again.load_state_dict(state)
    again.request_stop()
    with pytest.raises(RunInterrupted):
        again.run()
    assert len(stopped) == 1
    last = fresh(sc)
    last.load_state_dict(load(stopped[0]))
    last.run()
    assert hash_of(last) == expected
