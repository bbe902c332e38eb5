"""Exact checks of Streaming DiLoCo's and eager/delayed DiLoCo's rules that mutation testing found unpinned (issue 22).

Most checks read the event log of a run of the null trainer (its pseudo-gradient is a cheap deterministic function
of the job), on small fleets with communication that takes time: which step each fragment syncs and merges at, how
each transfer is sized, what the records name, when a worker waits, and what a worker whose device went down does
when it is back up. The last ones resume a run from every checkpoint it saved.
"""
from __future__ import annotations

import functools
from collections import defaultdict

import pytest
import torch

from sim import simulate
from sim.build import assemble
from sim.engine import Simulation
from sim.executors import SerialExecutor
from sim.records import run_hash
from sim.runstate import Checkpoints
from sim.trainer_factory import build_trainer
from tests.helpers import SavedStates, scenario

SLOW_LINK = {"bandwidth_gbps": 0.0001, "latency_ms": 10.0}  # 100 kbit/s: a 40-byte fragment takes 13.2 ms
INGRESS = {"server_bandwidth_gbps": 0.001}
NESTEROV_N_K = {"name": "delayed_nesterov", "lr": 0.7, "momentum": 0.9, "N": "k", "c": 0.0}


def _rows(events, kind, worker=None):
    rows = events[events["event"] == kind]
    return rows if worker is None else rows[rows["worker"] == worker]


def _streaming_steps(events, H):
    """Each job's worker's local step when it ends, from the event log: steps add up job by job; a worker back up
    starts at the next round no worker has begun, ((the largest step any worker has finished) // H + 1) H."""
    step, end = defaultdict(int), {}
    for row in events.itertuples():
        if row.event == "dispatch":
            end[row.job] = step[row.worker] + row.steps
        elif row.event == "complete":
            step[row.worker] = end[row.job]
        elif row.event == "rejoin":
            step[row.worker] = (max(step.values()) // H + 1) * H
    return end


def _eager_rounds(events, k):
    """Each job's round, from the event log: a worker's rounds follow each other; a worker back up joins the round
    after the latest one any worker has started (Kale et al.'s replicas, sim/schedules/overlapped.py)."""
    current, following, rounds = [0] * k, [0] * k, {}
    for row in events.itertuples():
        if row.event == "dispatch":
            rounds[row.job] = current[row.worker] = following[row.worker]
            following[row.worker] += 1
        elif row.event == "rejoin":
            current[row.worker] = following[row.worker] = max(current) + 1
    return rounds


def _closes(events):
    """The syncs, one list of job ids per outer step of the server (sync rows share the version they were applied at)."""
    return [list(group["job"]) for _, group in _rows(events, "sync").groupby("server_version", sort=True)]


# -- Streaming DiLoCo: the fragments' rhythm --------------------------------------------------------------------


def test_streaming_syncs_fragment_p_at_floor_offsets_and_cuts_every_job_at_its_syncs_and_merges():
    """P = 3 fragments over H = 5 steps (not a multiple of P), tau = 2: fragment p syncs at the local steps
    s > 0 with s mod H = floor((p + 1) H / P) mod H = 1, 3, 0, and merges tau steps later. A worker's jobs end
    exactly at those syncs and merges, no sooner (nothing at step tau of the first round: step 0 syncs nothing)."""
    P, H, tau, offsets = 3, 5, 2, [1, 3, 0]
    sc = scenario([1.0, 1.3, 2.1], preset="streaming_diloco", trainer_config={"dim": 30}, H=H, t_max=120,
                  device_extra=SLOW_LINK, network=INGRESS, method={"streaming": {"fragments": P, "overlap": tau}})
    ev = simulate(sc).events
    end = _streaming_steps(ev, H)
    for w in range(3):
        done = [end[j] for j in _rows(ev, "complete", w)["job"]]
        syncs = [(offsets.index(s % H), s) for s in range(1, done[-1] + 1) if s % H in offsets]
        assert done == sorted({s for _, s in syncs} | {s + tau for _, s in syncs if s + tau <= done[-1]})
        uploads = [(p, end[j]) for p, j in zip(_rows(ev, "upload", w)["fragment"], _rows(ev, "upload", w)["job"])]
        merges = [(p, end[j]) for p, j in zip(_rows(ev, "merge", w)["fragment"], _rows(ev, "merge", w)["job"])]
        assert len(uploads) >= 3 * P and uploads == syncs[: len(uploads)]
        assert len(merges) >= 3 * P and merges == [(p, s + tau) for p, s in syncs][: len(merges)]
    assert set(_rows(ev, "merge")["bytes"]) == {0}  # a merge sends nothing
    assert set(_rows(ev, "upload")["bytes"]) == {40}  # 10 values of fp32


def test_streaming_fragment_0_syncs_at_step_1_when_H_over_P_rounds_down_to_1():
    """H = 3, P = 2: the offsets are floor(3 / 2) = 1 and 0, so fragment 0's first sync is at local step 1."""
    sc = scenario([1.0, 1.5], preset="streaming_diloco", trainer_config={"dim": 8}, H=3, t_max=30,
                  device_extra=SLOW_LINK, network=INGRESS, method={"streaming": {"fragments": 2, "overlap": 1}})
    ev = simulate(sc).events
    end = _streaming_steps(ev, 3)
    for w in range(2):
        up = _rows(ev, "upload", w)
        assert [(p, end[j]) for p, j in zip(up["fragment"], up["job"])][:4] == [(0, 1), (1, 3), (0, 4), (1, 6)]


# -- transfers: sizes and what the records name ------------------------------------------------------------------


def test_each_transfer_is_sized_in_its_direction_encoding_with_the_scenario_block():
    """Uploads in network.dtype (int8, one 1-byte scale per block_size = 8 values), downloads in network.model_dtype
    (bf16): Streaming DiLoCo's fragments (50 of 100 values) and eager's whole pseudo-gradients and averages."""
    network = {"dtype": "int8", "model_dtype": "bf16", "block_size": 8}
    streaming = simulate(scenario([1.0, 1.5], preset="streaming_diloco", trainer_config={"dim": 100}, H=4, t_max=40,
                                  device_extra=SLOW_LINK, network=network)).events
    assert set(_rows(streaming, "upload")["bytes"]) == {50 + 7}  # 50 int8 values, ceil(50 / 8) scales
    downloads = _rows(streaming, "download")
    assert set(downloads[downloads["fragment"] == -1]["bytes"]) == {200}  # the model: 100 bf16 values
    assert set(downloads[downloads["fragment"] >= 0]["bytes"]) == {100}  # a fragment: 50 bf16 values
    for preset in ("eager_diloco", "delayed_diloco"):
        eager = simulate(scenario([1.0, 1.5], preset=preset, trainer_config={"dim": 100}, H=4, t_max=40,
                                  device_extra=SLOW_LINK, network=network)).events
        assert set(_rows(eager, "upload")["bytes"]) == {100 + 13}  # 100 int8 values, ceil(100 / 8) scales
        assert set(_rows(eager, "download")["bytes"]) == {200}  # the model, then each round's average


def test_the_first_model_download_names_no_job_and_the_averages_are_fragment_minus_2():
    """The model each worker downloads before its first job is recorded for job -1 (shard -1, no steps) sent at
    time 0 at server version 0; eager's averages come back as fragment -2 (-1: the whole model)."""
    for preset in ("streaming_diloco", "eager_diloco"):
        ev = simulate(scenario([1.0, 1.5, 2.0], preset=preset, trainer_config={"dim": 8}, H=4, t_max=40,
                               device_extra=SLOW_LINK, network=INGRESS)).events
        first = ev[(ev["event"] == "download") & (ev["fragment"] == -1)]
        assert list(first["worker"]) == [0, 1, 2]
        assert set(first["job"]) == {-1} and set(first["shard"]) == {-1} and set(first["steps"]) == {0}
        assert set(first["dispatch_version"]) == {0} and set(first["sent"]) == {0.0}
        later = _rows(ev, "download")
        later = later[later["fragment"] != -1]
        assert len(later) >= 6
        assert set(later["fragment"]) == ({-2} if preset == "eager_diloco" else {0, 1})


# -- jitter: each round's factor, drawn as DiLoCo draws it --------------------------------------------------------


def test_streaming_and_eager_jobs_take_their_drawn_jitter_as_diloco_does():
    """With device jitter, Streaming DiLoCo as DiLoCo (P = 1, tau = 0, alpha = 0, reset) and one-worker eager /
    delayed DiLoCo end their rounds at DiLoCo's (jittered) times, exactly."""
    def completions(preset, speeds, jitter=0.3, **kw):
        ev = simulate(scenario(speeds, preset=preset, trainer_config={"dim": 8}, H=5, t_max=60, jitter=jitter,
                               **kw)).events
        return list(zip(_rows(ev, "complete")["worker"], _rows(ev, "complete")["tau"]))

    very = [0.58, 0.75, 1.51, 3.33]
    diloco = completions("diloco", very)
    assert diloco != completions("diloco", very, jitter=0.0)  # the jitter moved the ends
    as_diloco = {"streaming": {"fragments": 1, "overlap": 0, "alpha": 0.0, "inner_state": "reset"}}
    assert completions("streaming_diloco", very, method=as_diloco) == diloco
    one = completions("diloco", [0.58])
    for preset in ("eager_diloco", "delayed_diloco"):
        assert completions(preset, [0.58]) == one


# -- eager / delayed: a replica waits for the average it owes -------------------------------------------------------


def test_a_replica_waiting_for_the_average_it_owes_starts_its_next_round_the_moment_it_lands():
    """Links slower than a round (a 2 s round trip each way, 3 s rounds): after round t a replica needs round t - 1's
    average; it starts round t + 1 at the later of its round's end and that average's landing, exactly."""
    for preset in ("eager_diloco", "delayed_diloco"):
        ev = simulate(scenario([1.0, 1.2, 1.4], preset=preset, trainer_config={"dim": 100}, H=3, t_max=90,
                               device_extra={"bandwidth_gbps": 0.0001, "latency_ms": 2000.0}, network={})).events
        rounds = _eager_rounds(ev, 3)
        waited = 0
        for w in range(3):
            job = {rounds[j]: j for j in _rows(ev, "dispatch", w)["job"]}  # round -> worker w's job
            started = dict(zip(_rows(ev, "dispatch", w)["job"], _rows(ev, "dispatch", w)["tau"]))
            ended = dict(zip(_rows(ev, "complete", w)["job"], _rows(ev, "complete", w)["tau"]))
            averages = _rows(ev, "download", w)
            averages = averages[averages["fragment"] == -2]  # each named for worker w's job of its round
            landed = {rounds[j]: tau for j, tau in zip(averages["job"], averages["tau"])}
            assert len(job) >= 4
            for t in range(1, len(job) - 1):
                assert started[job[t + 1]] == max(ended[job[t]], landed[t - 1]), (preset, w, t)
                waited += landed[t - 1] > ended[job[t]]
        assert waited >= 6  # the rule was exercised: replicas did wait for their average


# -- churn: a worker whose device goes down, and comes back ----------------------------------------------------------


def _streaming_churn(outer=None):
    """Worker 0 (twice as fast) uploads fragment 0 at step 3, loses its next job at 2.0 s and is back up at 2.6 s,
    before that sync closes (at 3.03 s, when the others' uploads are in): its download then lands mid-job."""
    extra = [{**SLOW_LINK, "availability": {"down": [[2.0, 2.6]]}}, SLOW_LINK, SLOW_LINK]
    method = {"streaming": {"fragments": 2, "overlap": 2}, **({"outer": outer} if outer else {})}
    return scenario([0.5, 1.0, 1.0], preset="streaming_diloco", trainer_config={"dim": 30}, H=6, t_max=90,
                    device_extra=extra, network={}, method=method)


def _eager_churn(preset="eager_diloco", outer=None):
    """Worker 0 (twice as fast, 1 s of latency) finishes round 0 at 2.5 s, loses round 1 at 3.0 s while its round-0
    upload is still on its way (it arrives at 3.52 s, after the others'), and is back up at 8.0 s."""
    extra = [{"bandwidth_gbps": 0.0001, "latency_ms": 1000.0, "availability": {"down": [[3.0, 8.0]]}}, SLOW_LINK, SLOW_LINK]
    return scenario([0.5, 1.0, 1.0], preset=preset, trainer_config={"dim": 30}, H=3, t_max=90, device_extra=extra,
                    network={}, method={"outer": outer} if outer else None)


def _streaming_departures():
    """Worker 0 (1.5 s of latency) goes down at 3.8 s with both its uploads still on their way: step 2's arrives last
    and closes that sync at 4.014 s, step 4's keeps worker 1's waiting until 5.519 s. Worker 2 goes down at 4.01 s,
    worker 1 at 5.52 s; all come back. The checkpoint after the 4.014 s close is followed by an arrival (and a sync
    waiting for a worker that has left), the one after the 5.519 s close by a loss."""
    extra = [{"bandwidth_gbps": 0.0001, "latency_ms": 1500.0, "availability": {"down": [[3.8, 9.0]]}},
             {**SLOW_LINK, "availability": {"down": [[5.52, 7.0]]}}, {**SLOW_LINK, "availability": {"down": [[4.01, 6.0]]}}]
    return scenario([0.5, 1.0, 1.0], preset="streaming_diloco", trainer_config={"dim": 30}, H=4, t_max=60,
                    device_extra=extra, network={}, method={"streaming": {"fragments": 2, "overlap": 3}})


def _one_job_at_a_time(events, k):
    for w in range(k):
        kinds = [e for e in events[events["worker"] == w]["event"] if e in ("dispatch", "complete", "lost")]
        assert kinds[0::2] == ["dispatch"] * len(kinds[0::2]), (w, kinds)
        assert set(kinds[1::2]) <= {"complete", "lost"}, (w, kinds)


def _model_download_after_rejoin(events, w):
    back = events[(events["event"] == "rejoin") & (events["worker"] == w)].index[0]
    after = events[(events.index > back) & (events["worker"] == w)]
    return events.loc[back], after.iloc[0]


def test_a_streaming_worker_back_up_downloads_the_model_and_joins_the_next_round_no_worker_has_begun():
    """Back up, worker 0 is sent the server's model (named for its last finished job) and starts at the next round no
    worker has begun, step 6, with a fresh model: the fragment of the step-3 sync it had uploaded to lands during its
    first job and is not merged (that would start a second job). Each close then syncs one fragment at one step."""
    ev = simulate(_streaming_churn()).events
    assert list(_rows(ev, "lost")["worker"]) == [0] and list(_rows(ev, "rejoin")["worker"]) == [0]
    rejoin, download = _model_download_after_rejoin(ev, 0)
    assert rejoin["tau"] == 2.6
    last = _rows(ev[ev.index < rejoin.name], "complete", 0)["job"].iloc[-1]
    assert (download["event"], download["fragment"], download["sent"], download["job"]) == ("download", -1, 2.6, last)
    after = ev[(ev.index >= rejoin.name) & (ev["worker"] == 0)]
    # the step-3 sync it uploaded to closes after it is back: merged, but its fragment is not sent back to it (it
    # restarted from the whole model)
    assert list(zip(after["event"], after["fragment"]))[:5] == [("rejoin", -1), ("download", -1), ("dispatch", -1),
                                                               ("sync", -1), ("complete", -1)]
    synced = _rows(ev, "sync")
    # t_local counts each member's 3 steps per fragment sync once, the rejoined worker's too: never backwards
    assert synced["t_local"].tolist() == [3 * (i + 1) for i in range(len(synced))]
    _one_job_at_a_time(ev, 3)
    end = _streaming_steps(ev, 6)  # worker 0 is back at step (3 // 6 + 1) 6 = 6
    fragment = dict(zip(_rows(ev, "upload")["job"], _rows(ev, "upload")["fragment"]))
    closes = _closes(ev)
    keys = [sorted({(fragment[j], end[j]) for j in jobs}) for jobs in closes]
    assert keys[:6] == [[(0, 3)], [(1, 6)], [(0, 9)], [(1, 12)], [(0, 15)], [(1, 18)]]  # one fragment, one step each
    workers = [sorted(ev.loc[ev["job"].isin(jobs) & (ev["event"] == "sync"), "worker"]) for jobs in closes]
    # step 3 waits for worker 0's upload, sent before it went down; back at step 6, it takes part from step 9 on
    assert workers[:6] == [[0, 1, 2], [1, 2], [0, 1, 2], [0, 1, 2], [0, 1, 2], [0, 1, 2]]


def test_an_eager_worker_back_up_downloads_the_model_and_joins_the_round_after_the_latest_begun():
    """Eager and delayed DiLoCo: the round worker 0 uploaded to before its device went down waits for that upload;
    the rounds it misses close without it; back up, it is sent the server's model (named for its last finished job)
    and joins the round after the latest one any worker has begun."""
    for preset in ("eager_diloco", "delayed_diloco"):
        ev = simulate(_eager_churn(preset)).events
        assert list(_rows(ev, "lost")["worker"]) == [0] and list(_rows(ev, "rejoin")["worker"]) == [0]
        rejoin, download = _model_download_after_rejoin(ev, 0)
        assert rejoin["tau"] == 8.0
        last = _rows(ev[ev.index < rejoin.name], "complete", 0)["job"].iloc[-1]
        assert (download["event"], download["fragment"], download["sent"], download["job"]) == ("download", -1, 8.0, last)
        _one_job_at_a_time(ev, 3)
        rounds = _eager_rounds(ev, 3)
        closes = _closes(ev)
        assert [sorted({rounds[j] for j in jobs}) for jobs in closes][:6] == [[0], [1], [2], [3], [4], [5]]
        workers = [sorted(ev.loc[ev["job"].isin(jobs) & (ev["event"] == "sync"), "worker"]) for jobs in closes]
        # round 0 waits for worker 0's upload, sent before its device went down; rounds 1 and 2 close without it;
        # back up at 8 s while the others train round 2, it joins round 3
        assert workers[:5] == [[0, 1, 2], [1, 2], [1, 2], [0, 1, 2], [0, 1, 2]]
        worker0_upload = _rows(ev, "upload", 0)["tau"].iloc[0]
        assert set(ev.loc[ev["job"].isin(closes[0]) & (ev["event"] == "sync"), "tau"]) == {worker0_upload}
        assert worker0_upload > _rows(ev, "lost")["tau"].iloc[0]


def test_the_outer_updates_of_fragments_and_replicas_read_N_k_as_the_number_of_workers():
    """``N: k`` in the outer update's settings is the fleet's size for Streaming DiLoCo's per-fragment outer updates
    and for eager's per-replica ones, also the fresh one a replica back up starts with."""
    for build in (_streaming_churn, _eager_churn):
        named, counted = simulate(build(outer=NESTEROV_N_K)), simulate(build(outer={**NESTEROV_N_K, "N": 3}))
        assert torch.equal(named.params, counted.params)
        assert named.events.equals(counted.events)
        assert "rejoin" in set(named.events["event"])


def test_averages_landing_at_one_instant_land_in_the_order_they_were_sent():
    """No link time: worker 1 (slow) goes down at 5 s while worker 0 waits for round 0's average, having uploaded
    rounds 0 and 1. Both rounds close at once without worker 1; their averages land at 5 s in round order, and worker 0
    starts round 2 as soon as round 0's is in."""
    extra = [{}, {"availability": {"down": [[5.0, 100.0]]}}]
    ev = simulate(scenario([1.0, 3.0], preset="eager_diloco", trainer_config={"dim": 8}, H=2, t_max=12,
                           device_extra=extra)).events
    rounds = _eager_rounds(ev, 2)
    at5 = ev[(ev["tau"] == 5.0) & (ev["worker"] == 0)]
    assert list(at5["event"]) == ["sync", "sync", "download", "dispatch", "download"]
    assert [rounds[j] for j in at5["job"]] == [0, 1, 0, 2, 1]


# -- resume: from every checkpoint ----------------------------------------------------------------------------------


def _fresh(sc, checkpoints=None):
    trainer = build_trainer(sc)
    return Simulation(assemble(sc, trainer, SerialExecutor(trainer)), checkpoints=checkpoints)


@pytest.mark.parametrize("build", [_streaming_churn, _streaming_departures, functools.partial(_eager_churn, "eager_diloco"),
                                   functools.partial(_eager_churn, "delayed_diloco")],
                         ids=["streaming_back_before_its_sync_closes", "streaming_uploads_from_workers_that_left",
                              "eager_diloco_churn", "delayed_diloco_churn"])
def test_streaming_and_eager_runs_resume_from_every_checkpoint_to_the_same_hash(build):
    """A checkpoint after every server update (transfers on their way, workers waiting, a worker down or just back,
    an upload still travelling from a worker that has left): each one resumed in a fresh simulation ends with the
    uninterrupted run's hash."""
    sc = build()
    expected = simulate(sc).run_hash
    saved = SavedStates()
    rec = _fresh(sc, Checkpoints(saved, every=1)).run().recorder
    assert run_hash(rec.metrics_frame(), rec.events_frame()) == expected
    assert len(saved) >= 10
    for blob in saved:
        resumed = _fresh(sc)
        resumed.load_state_dict(saved.load(blob))
        r = resumed.run().recorder
        assert run_hash(r.metrics_frame(), r.events_frame()) == expected


def test_an_eager_worker_back_up_before_its_round_closes_is_not_sent_that_rounds_average():
    """Worker 0 uploads round 0 (1 s of latency: it lands at 3.52 s), is down over [3.0, 3.2) and back before the
    round closes. It restarts from the server's whole model, so round 0's average (fragment -2) is not sent to it
    before its first round after the rejoin ends: only the whole model (fragment -1) is."""
    extra = [{"bandwidth_gbps": 0.0001, "latency_ms": 1000.0, "availability": {"down": [[3.0, 3.2]]}}, SLOW_LINK,
             SLOW_LINK]
    ev = simulate(scenario([0.5, 1.0, 1.0], preset="eager_diloco", trainer_config={"dim": 30}, H=3, t_max=60,
                           device_extra=extra, network={})).events
    w0 = ev[ev["worker"] == 0]
    rejoin = w0[w0["event"] == "rejoin"].index[0]
    after = w0[w0.index > rejoin]
    first_end = after[after["event"] == "complete"].index[0]
    assert after.loc[rejoin:first_end].query("event == 'download'")["fragment"].tolist() == [-1]
    assert 3.52 in set(w0.loc[w0["event"] == "sync", "tau"].round(2))  # its round-0 upload still merged
