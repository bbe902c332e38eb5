"""Streaming DiLoCo and eager / delayed outer steps: fragments, scenario checks, transfers in records and plots.

Their exact reductions are in test_identities.py; their invariants under communication and churn, the
model's independence of the clock, and resume are in test_comm_churn.py and test_resume.py.
"""
from __future__ import annotations

import pytest
import torch

from sim import simulate
from sim.compression import wire_bytes
from sim.errors import ScenarioError, UserError
from sim.fragments import fragment_indices
from sim.trace import DOWNLINK_TID, UPLINK_TID, trace_events
from sim.traffic import peak_rates, run_traffic
from tests.helpers import TINY_TOY, scenario

DIM = 1000
LINKS = {"bandwidth_gbps": 0.01, "latency_ms": 20.0}
SERVER = {"server_bandwidth_gbps": 0.05}


def test_fragments_stride_over_layers_and_partition_the_model():
    sizes = [3, 5, 2, 4, 6]
    parts = fragment_indices(20, 2, sizes)
    assert parts[0].tolist() == [0, 1, 2, 8, 9, 14, 15, 16, 17, 18, 19]  # layers 0, 2, 4
    assert parts[1].tolist() == [3, 4, 5, 6, 7, 10, 11, 12, 13]  # layers 1, 3
    together = torch.cat(parts).sort().values
    assert torch.equal(together, torch.arange(20))
    slices = fragment_indices(10, 3, None)  # no layers: contiguous, nearly equal
    assert [p.tolist() for p in slices] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    with pytest.raises(UserError, match="only 5 layers"):
        fragment_indices(20, 6, sizes)


def test_the_toy_reports_its_layers_in_flat_order():
    from sim.trainer_factory import build_trainer

    sc = scenario([1.0], preset="streaming_diloco", trainer="toy", trainer_config={**TINY_TOY, "hidden_layers": 2})
    trainer = build_trainer(sc)
    assert len(trainer.layer_sizes()) == 3 and sum(trainer.layer_sizes()) == trainer.init_params().numel()


def test_streaming_settings_are_checked_in_one_line():
    with pytest.raises(ScenarioError, match=r"'method\.streaming\.fragments': 3 fragments cannot sync apart within H = 2"):
        scenario([1.0], preset="streaming_diloco", H=2, method={"streaming": {"fragments": 3}})
    with pytest.raises(ScenarioError, match=r"'method\.streaming\.overlap'.*at most H - 1"):
        scenario([1.0], preset="streaming_diloco", H=4, method={"streaming": {"overlap": 4}})
    with pytest.raises(ScenarioError, match=r"'method\.streaming': only schedule 'streaming'"):
        scenario([1.0], preset="diloco", method={"streaming": {"fragments": 2}})
    with pytest.raises(ScenarioError, match=r"'method\.dylu'"):
        scenario([1.0], preset="streaming_diloco", dylu=True)
    with pytest.raises(ScenarioError, match=r"'method\.fix'"):
        scenario([1.0], preset="eager_diloco", method={"fix": "poly"})
    sc = scenario([1.0], preset="streaming_diloco", method={"streaming": {"alpha": 0.0}})
    assert sc.method.streaming.alpha == 0.0 and sc.method.streaming.fragments == 2  # the preset's other fields
    assert "streaming" not in scenario([1.0], preset="diloco").resolved()["method"]  # older digests hold


def _run(preset: str, **method):
    return simulate(scenario([1.0, 1.4, 0.8, 2.0], preset=preset, trainer_config={"dim": DIM}, H=6, t_max=240,
                             device_extra=LINKS, network=SERVER, method=method or None))


def test_streaming_uploads_one_fragment_at_a_time_and_counts_every_byte():
    st, dl = _run("streaming_diloco"), _run("diloco")
    up = st.events[st.events["event"] == "upload"]
    assert set(up["bytes"]) == {wire_bytes(DIM // 2, "fp32")}  # half the model per sync
    assert set(up["fragment"]) == {0, 1}
    traffic = run_traffic(st.events, st.scenario, DIM)
    rows = st.events[st.events["event"].isin(["upload", "download"])]
    assert traffic["gb_sent"] == rows["bytes"].sum() / 1e9
    peaks, diloco_peaks = peak_rates(st.events, st.scenario, DIM), peak_rates(dl.events, dl.scenario, DIM)
    assert peaks["largest_upload_mb"] == wire_bytes(DIM // 2, "fp32") / 1e6  # a fragment, half the model
    assert diloco_peaks["largest_upload_mb"] == wire_bytes(DIM, "fp32") / 1e6
    assert 0 < peaks["peak_worker_gbps"] <= peaks["peak_server_gbps"]


def test_streaming_trains_while_its_fragments_travel():
    st = _run("streaming_diloco")
    ev = st.events
    uploads = ev[ev["event"] == "upload"]
    # workers start training again while their upload is still on its way to the server: overlap
    dispatch = ev[ev["event"] == "dispatch"]
    overlapped = any(((dispatch["worker"] == u.worker) & (dispatch["tau"] >= u.sent) & (dispatch["tau"] < u.tau)).any()
                     for u in uploads.itertuples())
    assert overlapped
    assert len(uploads) > 0
    merges = ev[ev["event"] == "merge"]
    assert len(merges) and set(merges["fragment"]) == {0, 1}


def test_trace_has_a_link_track_per_worker_for_overlapping_schedules():
    for preset in ("streaming_diloco", "eager_diloco"):
        trace = trace_events(_run(preset).events)
        names = {e["args"]["name"] for e in trace if e["ph"] == "M" and e["name"] == "thread_name"}
        assert "worker 0 uplink" in names and "worker 3 downlink" in names
        spans = [e for e in trace if e["ph"] == "X" and e["tid"] >= UPLINK_TID]
        assert any(e["tid"] >= DOWNLINK_TID for e in spans) and any(e["tid"] < DOWNLINK_TID for e in spans)
        assert all(e["dur"] > 0 for e in spans)


def test_timeline_draws_transfers_under_training(tmp_path):
    from sim.report import plot_timeline

    ev = _run("eager_diloco").events.assign(method="eager_diloco")
    plot_timeline(ev, tmp_path / "t.png", ["eager_diloco"], {})
    assert (tmp_path / "t.png").stat().st_size > 10_000


def test_eager_hides_communication_that_diloco_waits_for():
    eager, delayed, diloco = _run("eager_diloco"), _run("delayed_diloco"), _run("diloco")
    assert eager.summary["simulated_seconds"] < diloco.summary["simulated_seconds"]
    assert eager.summary["simulated_seconds"] == delayed.summary["simulated_seconds"]  # the same clock
    assert list(eager.metrics["t_local"]) == list(diloco.metrics["t_local"])


def test_streaming_sends_its_fragments_through_the_upload_encoding():
    """Quantised outer gradients (Sec. 2.4): each fragment is encoded on its own, block scales included."""
    fp4 = simulate(scenario([1.0, 1.4, 0.8, 2.0], preset="streaming_diloco", trainer_config={"dim": DIM}, H=6, t_max=240,
                            device_extra=LINKS, network={**SERVER, "dtype": "fp4"}))
    up = fp4.events[fp4.events["event"] == "upload"]
    assert set(up["bytes"]) == {wire_bytes(DIM // 2, "fp4")}
    assert not torch.equal(fp4.params, _run("streaming_diloco").params)  # the values changed on the way


def test_a_download_lost_with_its_worker_frees_the_downlink():
    """Worker 0 goes down at 3 s while a download planned to land at 10 s is on its way: the download is dropped,
    and the model sent when it is back up at 4 s leaves at once (the lost transfer no longer holds the link)."""
    from types import SimpleNamespace

    from sim.jobs import Finished
    from sim.schedules.wires import Wires
    from sim.simtime import Time
    from trainers.base import JobSpec

    run = SimpleNamespace(state=SimpleNamespace(now=Time.of(0.0)), link_time=lambda w, n: Time.of(n / 100))
    job = Finished(-1, 0, JobSpec(0, -1, (), 0), 0, Time.of(0.0), Time.of(0.0))
    wires = Wires(2)
    wires.download(run, job, -1, 0, torch.zeros(1), 1000)  # lands at 10 s
    wires.download(run, Finished(-1, 1, JobSpec(1, -1, (), 0), 0, Time.of(0.0), Time.of(0.0)), -1, 0, torch.zeros(1), 1000)
    run.state.now = Time.of(3.0)
    wires.cancel(0, run.state.now)
    assert [t.worker for _, t in wires.queue] == [1]  # worker 1's download is untouched
    run.state.now = Time.of(4.0)
    wires.download(run, job, -1, 1, torch.zeros(1), 1000)
    back = next(t for _, t in wires.queue if t.worker == 0)
    assert (back.sent, back.at) == (Time.of(4.0), Time.of(4.0) + run.link_time(0, 1000))
