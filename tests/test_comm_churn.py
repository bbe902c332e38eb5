"""Communication time (sim/network.py) and device churn (sim/churn.py) in the engine."""
from __future__ import annotations

import io
import math
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim import simulate
from sim.build import assemble
from sim.churn import Availability, Timeline
from sim.compression import wire_bytes
from sim.engine import Simulation
from sim.executors import SerialExecutor
from sim.network import fifo_arrivals, transfer_seconds
from sim.records import run_hash
from sim.runstate import Checkpoints
from sim.scenario import OVERLAPPING, ScenarioError
from sim.simtime import Time
from sim.trainer_factory import build_trainer
from tests.helpers import TINY_TOY, scenario

DIM = 250_000  # null trainer parameters: 1 MB in fp32


def complete_times(events, worker=None):
    ev = events[events["event"] == "complete"]
    if worker is not None:
        ev = ev[ev["worker"] == worker]
    return ev["tau"].to_numpy()


@pytest.mark.parametrize("dtype, grad_bytes", [("fp32", 4 * DIM), ("bf16", 2 * DIM), ("int8", wire_bytes(DIM, "int8")),
                                               ("fp4", wire_bytes(DIM, "fp4"))])
def test_round_time_is_download_plus_training_plus_upload_in_closed_form(dtype, grad_bytes):
    """One worker: every round takes L + M/B (download) + H s (train) + L + G/B (upload) + G/B_server."""
    s, H, gbps, latency_ms, server_gbps = 0.5, 10, 0.8, 40.0, 4.0
    sc = scenario([s], preset="async_sgd", trainer_config={"dim": DIM}, H=H, t_max=H * 6,
                  device_extra={"bandwidth_gbps": gbps, "latency_ms": latency_ms},
                  network={"dtype": dtype, "server_bandwidth_gbps": server_gbps})
    model_bytes = 4 * DIM
    expected_round = (latency_ms / 1e3 + model_bytes * 8 / (gbps * 1e9)) + H * s \
        + (latency_ms / 1e3 + grad_bytes * 8 / (gbps * 1e9)) + grad_bytes * 8 / (server_gbps * 1e9)
    times = complete_times(simulate(sc).events)
    assert len(times) == 6
    np.testing.assert_allclose(np.diff(np.concatenate([[0.0], times])), expected_round, rtol=1e-12)


def test_server_link_is_a_fifo_bottleneck_when_uploads_overlap():
    """Four equal workers reach the server together: arrivals are S apart, in worker order."""
    sc = scenario([1.0] * 4, preset="async_sgd", trainer_config={"dim": DIM}, H=10, t_max=40,
                  network={"server_bandwidth_gbps": 0.1})
    S = 4 * DIM * 8 / 0.1e9  # 0.08 s per upload through the server's link
    ev = simulate(sc).events
    done = ev[ev["event"] == "complete"]
    np.testing.assert_allclose(done["tau"].to_numpy(), 10.0 + S * np.arange(1, 5), rtol=1e-12)
    assert done["worker"].tolist() == [0, 1, 2, 3]


def test_fifo_arrivals_closed_form():
    assert fifo_arrivals([(5.0, 1), (1.0, 0), (1.0, 2)], 2.0, 0.0) == [7.0, 3.0, 5.0]
    assert fifo_arrivals([(1.0, 0)], 2.0, 10.0) == [12.0]  # the link is still busy until 10
    assert transfer_seconds(1e9, 8.0, 0.05) == pytest.approx(1.05)
    assert transfer_seconds(1e9, math.inf, 0.05) == 0.05


def test_region_matrix_adds_latency_and_narrows_bandwidth():
    net = {"server_region": "us", "regions": [{"between": ["eu", "us"], "latency_ms": 100, "bandwidth_gbps": 0.5}]}
    sc = scenario([1.0, 1.0], preset="async_sgd", trainer_config={"dim": DIM}, H=5, t_max=10,
                  device_extra=[{"region": "us", "bandwidth_gbps": 8}, {"region": "eu", "bandwidth_gbps": 8, "latency_ms": 10}],
                  network=net)
    ev = simulate(sc).events
    us, eu = complete_times(ev, 0)[0], complete_times(ev, 1)[0]
    assert us == pytest.approx(5.0 + 2 * 4 * DIM * 8 / 8e9, rel=1e-12)
    assert eu == pytest.approx(5.0 + 2 * (0.110 + 4 * DIM * 8 / 0.5e9), rel=1e-12)


@pytest.mark.parametrize("preset", ["dn_dylu", "diloco", "async_buffer", "finetune_1w"])
def test_zero_communication_gives_the_no_communication_hash(preset):
    base = dict(preset=preset, trainer="toy", trainer_config=TINY_TOY, t_max=240, eval_every=60, jitter=0.1, grace=0.3)
    plain = simulate(scenario([0.58, 0.75, 1.51, 3.33], **base))
    free = simulate(scenario([0.58, 0.75, 1.51, 3.33], **base, device_extra={"bandwidth_gbps": math.inf, "latency_ms": 0.0},
                             network={"dtype": "fp32", "server_bandwidth_gbps": math.inf}))
    assert free.run_hash == plain.run_hash


@pytest.mark.parametrize("dtype", ["bf16", "int8", "fp4"])
def test_compression_changes_the_values_not_the_clock_when_links_are_free(dtype):
    """A compressed upload is not free: the same schedule, other pseudo-gradients, other losses."""
    base = dict(preset="dn_dylu", trainer="toy", trainer_config=TINY_TOY, t_max=240, eval_every=60, grace=0.3)
    free = dict(device_extra={"bandwidth_gbps": math.inf, "latency_ms": 0.0})
    exact = simulate(scenario([0.58, 0.75, 1.51, 3.33], **base, **free, network={"dtype": "fp32"}))
    lossy = simulate(scenario([0.58, 0.75, 1.51, 3.33], **base, **free, network={"dtype": dtype, "model_dtype": dtype}))
    assert lossy.run_hash != exact.run_hash
    assert lossy.events["tau"].tolist() == exact.events["tau"].tolist()
    assert lossy.metrics["loss"].tolist() != exact.metrics["loss"].tolist()
    assert np.isfinite(lossy.metrics["loss"]).all()


def test_the_server_receives_exactly_the_decoded_pseudo_gradient():
    """One worker, outer SGD lr 1: the server's move is the int8 round trip of the worker's pseudo-gradient."""
    import torch

    from sim.compression import roundtrip

    sc = scenario([1.0], preset="async_sgd", trainer_config={"dim": DIM}, H=5, t_max=5, method={"outer": {"name": "sgd", "lr": 1.0}},
                  network={"dtype": "int8", "block_size": 8})
    plain = scenario([1.0], preset="async_sgd", trainer_config={"dim": DIM}, H=5, t_max=5, method={"outer": {"name": "sgd", "lr": 1.0}})
    theta0 = simulate(plain).params.clone()  # after one exact update
    lossy = simulate(sc).params
    from sim.trainer_factory import build_trainer

    start = build_trainer(plain).init_params()
    delta = start - theta0
    assert torch.equal(lossy, start - roundtrip(delta, "int8", 8))  # float64 run: decoded in float64, applied exactly
    assert not torch.equal(lossy, theta0)


def test_communication_slows_rounds_but_not_the_learning_per_update_of_sync_diloco():
    """Sync DiLoCo waits for every upload: the same updates, later in simulated time."""
    base = dict(preset="diloco", trainer="toy", trainer_config=TINY_TOY, t_max=240, eval_every=60)
    plain = simulate(scenario([0.58, 0.75, 1.51, 3.33], **base))
    slow = simulate(scenario([0.58, 0.75, 1.51, 3.33], **base, device_extra={"bandwidth_gbps": 0.01, "latency_ms": 200},
                             network={"server_bandwidth_gbps": 0.05}))
    assert slow.metrics["loss"].tolist() == plain.metrics["loss"].tolist()
    assert slow.metrics["tau"].iloc[-1] > plain.metrics["tau"].iloc[-1]


# -- churn -----------------------------------------------------------------------------------


def test_timeline_is_lazy_and_independent_of_how_far_it_is_queried():
    spec = Availability(mean_up_s=10, mean_down_s=3)
    a, b = Timeline(spec, np.random.default_rng(7)), Timeline(spec, np.random.default_rng(7))
    a.down_interval(Time.of(1000.0))
    for t in np.linspace(0, 1000, 97):
        b.down_interval(Time.of(float(t)))
    n = min(len(a.starts), len(b.starts))
    assert a.starts[:n] == b.starts[:n] and a.ends[:n] == b.ends[:n]
    trace = Timeline(Availability(down=((5, 8), (20, 21))), np.random.default_rng(0))
    t = Time.of
    assert trace.up_at(t(6)) == t(8) and trace.up_at(t(8)) == t(8) and trace.up_at(t(100)) == t(100)
    assert trace.fails_before(t(0), t(5)) is None and trace.fails_before(t(0), t(5.5)) == t(5)
    assert trace.fails_before(t(9), t(30)) == t(20)


def test_a_job_lost_to_a_trace_rejoins_with_the_current_model():
    """Worker 1 is down over [3, 12): its first job is lost at 3 and it restarts at 12 from the server's model."""
    sc = scenario([1.0, 1.0], preset="async_sgd", trainer_config={"dim": 4}, H=5, t_max=60,
                  device_extra=[{}, {"availability": {"down": [[3.0, 12.0]]}}])
    ev = simulate(sc).events
    w1 = ev[ev["worker"] == 1]
    assert w1["event"].tolist()[:3] == ["dispatch", "lost", "rejoin"]
    lost, rejoin, restart = w1.iloc[1], w1.iloc[2], w1.iloc[3]
    assert lost["tau"] == 3.0 and rejoin["tau"] == 12.0
    assert restart["event"] == "dispatch" and restart["tau"] == 12.0
    assert restart["dispatch_version"] == rejoin["server_version"]  # the model current at 12
    synced = ev[ev["event"] == "sync"]
    assert lost["job"] not in set(synced["job"])


def test_availability_needs_both_means_or_a_trace():
    with pytest.raises(ScenarioError, match="availability"):
        scenario([1.0], device_extra={"availability": {"mean_up_s": 10}})
    with pytest.raises(ScenarioError, match="sorted"):
        scenario([1.0], device_extra={"availability": {"down": [[5, 3]]}})


def test_trace_file_is_read_relative_to_the_scenario(tmp_path):
    from sim.scenario import load_scenario

    (tmp_path / "down.csv").write_text("down_at,up_at\n3,12\n40,41\n", encoding="utf-8")
    (tmp_path / "s.yaml").write_text(
        "trainer: {name: 'null'}\nworkers: {devices: [{seconds_per_step: 1}, {seconds_per_step: 1, availability: {trace: down.csv}}]}\n"
        "method: async_sgd\nschedule: {H: 5, t_max: 50}\nlr: {max: 0.1, min: 0.01}\neval: {every: 10}\n", encoding="utf-8")
    sc = load_scenario(tmp_path / "s.yaml")
    assert sc.workers.devices[1].availability.down == ((3.0, 12.0), (40.0, 41.0))
    (tmp_path / "down.csv").write_text("3,twelve\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"workers\.devices\.1\.availability\.trace"):
        load_scenario(tmp_path / "s.yaml")


churn_fleets = st.builds(
    dict,
    speeds=st.lists(st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.33]), min_size=1, max_size=5),
    up=st.tuples(st.sampled_from([0.5, 2.0, 10.0, 50.0]),  # the first device always churns
                 *[st.one_of(st.none(), st.sampled_from([0.5, 2.0, 10.0, 50.0]))] * 4),
    down=st.sampled_from([0.3, 1.0, 5.0, 20.0]),
    H=st.integers(1, 10),
    t_max=st.integers(1, 300),
    grace=st.sampled_from([0.0, 0.5, 3.0, 1e9]),
    grace_wait=st.sampled_from(["last_sync", "window"]),
    preset=st.sampled_from(["async_diloco", "dn_dylu", "async_buffer", "diloco", "finetune_1w", "halos",
                            "streaming_diloco", "eager_diloco", "delayed_diloco"]),
    comm=st.booleans(),
    seed=st.integers(0, 1000),
)


CHURN_DIM, CHURN_GBPS, CHURN_LATENCY_MS = 1000, 0.5, 30.0  # the property test's model size and links


#: HALoS in the property test: two regions, a slow path between them, a push every 2 local updates
HALOS_REGIONS = ("near", "far")
HALOS_PATHS = [{"between": ["near", "far"], "latency_ms": 80.0, "bandwidth_gbps": 0.05}]
HALOS_SMALL_K = {"hierarchy": {"K": 2}}


def churn_scenario(p):
    extra = [{"availability": {"mean_up_s": up, "mean_down_s": p["down"]}} if up else {} for up in p["up"][: len(p["speeds"])]]
    if p["comm"]:
        extra = [{**x, "bandwidth_gbps": CHURN_GBPS, "latency_ms": CHURN_LATENCY_MS} for x in extra]
    network = {"server_bandwidth_gbps": 0.2} if p["comm"] else None
    halos = p["preset"] == "halos"
    if halos:  # workers alternate between two regions; the global server is in the first
        extra = [{**x, "region": HALOS_REGIONS[w % 2]} for w, x in enumerate(extra)]
        network = {**(network or {}), "server_region": "near", "regions": HALOS_PATHS}
    H = max(p["H"], 2) if p["preset"] == "streaming_diloco" else p["H"]  # two fragments, a step of overlap
    return scenario(p["speeds"], preset=p["preset"], H=H, t_max=p["t_max"], grace=p["grace"], grace_wait=p["grace_wait"],
                    seed=p["seed"], device_extra=extra, trainer_config={"dim": CHURN_DIM}, network=network,
                    method=HALOS_SMALL_K if halos else None)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(churn_fleets)
def test_with_churn_every_job_syncs_once_or_is_lost_or_discarded_and_time_moves_forward(p):
    sc = churn_scenario(p)
    result = simulate(sc)
    ev = result.events
    assert ev["tau"].is_monotonic_increasing
    overlaps = sc.method.schedule in OVERLAPPING
    for job, kinds in ev[ev["job"] >= 0].groupby("job")["event"]:
        c = Counter(kinds)
        assert c["dispatch"] == 1
        if overlaps:  # a job only trains: it completes, or is lost or discarded; it feeds at most one sync
            assert sorted((c["complete"], c["lost"], c["discard"])) == [0, 0, 1], (job, c)
            assert c["sync"] <= c["complete"] and c["upload"] <= c["complete"], (job, c)
            continue
        ends = (c["sync"] + c["drop"], c["lost"], c["discard"])
        assert sorted(ends) == [0, 0, 1], (job, c)
        assert c["complete"] == ends[0]
    # a worker never holds two jobs, and is never given one while down
    single = sc.method.schedule == "single"
    planner = Simulation(assemble(sc, build_trainer(sc), SerialExecutor(build_trainer(sc)))).planner
    busy: dict[int, bool] = {}
    for row in ev.itertuples():
        if row.event == "dispatch":
            assert not busy.get(row.worker), "two jobs on one worker"
            busy[row.worker] = True
            # every device it runs on is up then (single: all of them). Each device is asked on its own: the
            # recorded float time may fall a hair before an exact instant, and the lockstep search for the next
            # instant with every device up can run very far on a churny fleet.
            devices = range(sc.workers.k) if single else [row.worker]
            timelines = [tl for w in devices if (tl := planner.availability[w]) is not None]
            at = Time.of(row.tau)
            assert all(tl.up_at(at).seconds - row.tau <= 1e-9 for tl in timelines), "dispatched to a device that is down"
        elif row.event in ("complete", "lost", "discard"):
            busy[row.worker] = False
    if sc.method.schedule == "halos":  # each local server: push, global update, merge, in turn, one at a time
        for server, kinds in ev[ev["worker"] < 0].groupby("server")["event"]:
            cycle = ["push", "global", "merge"]
            assert list(kinds) == (cycle * len(kinds))[: len(kinds)], (server, list(kinds))
    if overlaps:
        _check_transfers(sc, ev)
        if sc.method.schedule == "streaming":  # t_local counts the members' steps up to each sync: at most what trained
            assert ev["t_local"].iloc[-1] <= ev.loc[ev["event"] == "complete", "steps"].sum()
            return
    # t_local counts exactly the synced steps
    synced = ev[ev["event"] == "sync"]
    per_step = sc.workers.k if single else 1
    assert ev["t_local"].iloc[-1] == synced["steps"].sum() * per_step
    lost = ev[ev["event"] == "lost"]
    dispatched = ev[ev["event"] == "dispatch"].set_index("job")
    assert (lost["tau"].to_numpy() >= dispatched.loc[lost["job"], "tau"].to_numpy()).all()
    # lost before its upload left the worker (training end + the worker's own upload time)
    upload_s = transfer_seconds(4 * CHURN_DIM, CHURN_GBPS, CHURN_LATENCY_MS / 1e3) if p["comm"] and not single else 0.0
    assert (lost["tau"].to_numpy() < dispatched.loc[lost["job"], "upload_start"].to_numpy() + upload_s).all()


def _check_transfers(sc, ev):
    """Streaming / eager: each link carries one transfer at a time, in order; a merge follows its download."""
    for kind in ("upload", "download"):
        rows = ev[ev["event"] == kind]
        assert (rows["sent"] <= rows["tau"]).all()
        for _, own in rows.groupby("worker"):
            assert own["sent"].is_monotonic_increasing
            if kind == "download":  # the downlink is free again only when the last one landed
                assert (own["sent"].to_numpy()[1:] >= own["tau"].to_numpy()[:-1]).all()
    # a worker back up is sent the server's model at once: what was on its way when it went down is lost and no
    # longer holds its downlink
    for row in ev[ev["event"] == "rejoin"].itertuples():
        first = ev[(ev.index > row.Index) & (ev["worker"] == row.worker) & (ev["event"] == "download")].head(1)
        assert first.empty or abs(first["sent"].iloc[0] - row.tau) <= 1e-9, (row.worker, row.tau, first["sent"].iloc[0])
    if sc.method.schedule == "streaming":
        n = CHURN_DIM
        halves = {0: n // 2, 1: n - n // 2}  # the null trainer has no layers: two contiguous halves
        up = ev[ev["event"] == "upload"]
        assert all(b == 4 * halves[f] for f, b in zip(up["fragment"], up["bytes"]))
        for row in ev[ev["event"] == "merge"].itertuples():
            landed = ev[(ev["event"] == "download") & (ev["worker"] == row.worker) & (ev["fragment"] == row.fragment)
                        & (ev["tau"] <= row.tau)]
            assert len(landed), "merged a fragment that had not landed"


@pytest.mark.parametrize("preset", ["dn_dylu", "diloco", "finetune_1w", "halos", "streaming_diloco", "eager_diloco"])
def test_resume_with_communication_and_churn_gives_the_same_hash(preset):
    extra = [{"bandwidth_gbps": 0.05, "latency_ms": 50, "availability": {"mean_up_s": 40, "mean_down_s": 8},
              "region": HALOS_REGIONS[w % 2]} for w in range(4)]
    network = {"dtype": "bf16", "server_bandwidth_gbps": 0.1, "server_region": "near", "regions": HALOS_PATHS}
    sc = scenario([0.58, 0.75, 1.51, 3.33], preset=preset, trainer="toy", trainer_config=TINY_TOY, t_max=400, eval_every=50,
                  grace=0.5, jitter=0.2, device_extra=extra, network=network,
                  method=HALOS_SMALL_K if preset == "halos" else None)
    expected = simulate(sc).run_hash
    saved: list[bytes] = []

    def fresh(checkpoints=None):
        trainer = build_trainer(sc)
        return Simulation(assemble(sc, trainer, SerialExecutor(trainer)), checkpoints=checkpoints)

    def keep(state: dict) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        saved.append(buf.getvalue())

    rec = fresh(Checkpoints(keep, every=2)).run().recorder
    assert run_hash(rec.metrics_frame(), rec.events_frame()) == expected
    assert "lost" in rec.events["event"] and len(saved) >= 3
    if preset in ("halos", "streaming_diloco"):  # transfers were on their way at some of the checkpoints
        assert rec.events["event"].count("merge") >= 3
    for blob in saved[:: max(1, len(saved) // 4)]:
        resumed = fresh()
        resumed.load_state_dict(torch.load(io.BytesIO(blob), weights_only=False))
        r = resumed.run().recorder
        assert run_hash(r.metrics_frame(), r.events_frame()) == expected


def test_time_per_worker_adds_up_to_the_run_and_splits_comm_from_training():
    from sim.report import worker_time_budget

    # one worker, async: never idle; each round is training H*s plus its communication
    s, H = 0.5, 10
    sc = scenario([s], preset="async_sgd", trainer_config={"dim": DIM}, H=H, t_max=H * 4,
                  device_extra={"bandwidth_gbps": 0.8, "latency_ms": 40.0}, network={"server_bandwidth_gbps": 4.0})
    ev = simulate(sc).events
    b = worker_time_budget(ev).iloc[0]
    end = ev["tau"].max()
    assert b["training_s"] == pytest.approx(4 * H * s) and b["jobs"] == 4
    assert b["comm_s"] == pytest.approx(end - 4 * H * s) and b["idle_s"] == pytest.approx(0.0, abs=1e-9)
    # sync DiLoCo, step times 1 and 2, no communication: the fast worker waits half of every round
    ev = simulate(scenario([1.0, 2.0], preset="diloco", trainer_config={"dim": 4}, H=5, t_max=40)).events
    b = worker_time_budget(ev, ["fast", "slow"]).set_index("device")
    assert b.loc["fast", "idle_s"] == pytest.approx(b.loc["fast", "training_s"])
    assert b.loc["slow", "idle_s"] == pytest.approx(0.0, abs=1e-9) and b.loc["slow", "comm_s"] == 0.0


def test_geo_distributed_scenario_runs_with_communication_and_churn():
    from pathlib import Path

    from sim.report import worker_time_budget
    from sim.scenario import load_scenario

    path = Path(__file__).resolve().parent.parent / "scenarios" / "geo_distributed.yaml"
    sc = load_scenario(path, overrides={"schedule.t_max": 2400, "trainer.config.hidden": 32, "trainer.config.dim": 32})
    assert sc.network is not None and {d.region for d in sc.workers.devices} == {"us-east", "eu-west", "ap-south"}
    result = simulate(sc)
    budget = worker_time_budget(result.events, [d.name for d in sc.workers.devices])
    assert (budget["comm_s"] > 0).all() and len(budget) == 8
    # remote regions pay more communication per synced job than the server's own region
    budget["region"] = [sc.workers.device(w).region for w in budget["worker"]]
    per_job = (budget["comm_s"] / budget["jobs"]).groupby(budget["region"])
    assert per_job.min()["ap-south"] > per_job.max()["eu-west"] > per_job.max()["us-east"] == per_job.max()[sc.network.server_region]


def test_trace_draws_download_training_upload_and_lost_rounds_separately():
    from sim.trace import trace_events

    sc = scenario([1.0, 1.0], preset="async_sgd", trainer_config={"dim": DIM}, H=5, t_max=60,
                  device_extra=[{"bandwidth_gbps": 0.5}, {"bandwidth_gbps": 0.5, "availability": {"down": [[3.0, 12.0]]}}],
                  network={})
    events = trace_events(simulate(sc).events)
    spans = [e for e in events if e["ph"] == "X"]
    cats = Counter(e["cat"] for e in spans)
    assert cats["comm"] == 2 * cats["train"] and cats["lost"] == 1
    assert any(e.get("cat") == "churn" and e["tid"] == 1 for e in events)  # the rejoin instant on worker 1's track
    for e in spans:
        assert e["dur"] > 0 and {"ph", "ts", "pid", "tid"} <= e.keys()


clock_fleets = st.builds(
    dict,
    speeds=st.lists(st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.33]), min_size=1, max_size=4),
    latency_ms=st.lists(st.sampled_from([0.0, 5.0, 80.0]), min_size=4, max_size=4),
    gbps=st.lists(st.sampled_from([0.001, 0.01, 1.0]), min_size=4, max_size=4),
    ingress=st.sampled_from([0.002, 1.0]),
    jitter=st.sampled_from([0.0, 0.3]),
    preset=st.sampled_from(["streaming_diloco", "eager_diloco", "delayed_diloco", "diloco"]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clock_fleets)
def test_the_model_does_not_depend_on_the_clock(p):
    """Devices, links, jitter and the server's ingress change when things happen, never what is trained.

    Streaming DiLoCo merges at fixed steps, eager and delayed updates wait for the average they owe, and a
    round's specs are drawn for every worker at once: the final model is the one of equal, instant devices.
    """
    k = len(p["speeds"])
    links = [{"latency_ms": lat, "bandwidth_gbps": g} for lat, g in zip(p["latency_ms"], p["gbps"])][:k]
    common = dict(preset=p["preset"], trainer="toy", trainer_config=TINY_TOY, H=4, t_max=4 * k * 5)
    timed = simulate(scenario(p["speeds"], jitter=p["jitter"], device_extra=links,
                              network={"server_bandwidth_gbps": p["ingress"]}, **common))
    instant = simulate(scenario([1.0] * k, **common))
    assert torch.equal(timed.params, instant.params)
    assert list(timed.metrics["t_local"]) == list(instant.metrics["t_local"])


def test_a_devices_job_overhead_adds_to_every_job_and_nothing_else():
    """Device.job_overhead_ms: each job takes steps x step time + the overhead (a lone async worker's arrivals
    are then k x that apart); left out, the fleet, its digest and its run are as before."""
    from sim.runner import simulate
    from sim.scenario import scenario_from_dict

    def scenario(**device):
        return scenario_from_dict({"method": "async_diloco", "trainer": {"name": "null"},
                                   "workers": {"devices": [{"seconds_per_step": 0.5, **device}]},
                                   "schedule": {"H": 4, "t_max": 12}, "lr": {"max": 0.1, "min": 0.01},
                                   "eval": {"every": 12}})

    plain, slow = scenario(), scenario(job_overhead_ms=250.0)
    assert "job_overhead_ms" not in plain.resolved()["workers"]["devices"][0]
    assert plain.digest() != slow.digest()
    arrivals = simulate(slow).events.query("event == 'complete'")["tau"].tolist()
    assert arrivals == pytest.approx([2.25, 4.5, 6.75])  # 4 x 0.5 s + 0.25 s per job
    assert simulate(plain).events.query("event == 'complete'")["tau"].tolist() == pytest.approx([2.0, 4.0, 6.0])
