"""Property tests of the scheduler's invariants (Algorithm 2, 4, 5) on random fleets."""
from __future__ import annotations

import math
from collections import Counter

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim import simulate
from sim.sampling import dylu_steps, is_under_sampled
from tests.helpers import scenario

speeds = st.lists(st.sampled_from([0.25, 0.5, 0.58, 0.75, 1.0, 1.51, 2.0, 3.33]), min_size=1, max_size=7)
fleets = st.builds(
    dict,
    speeds=speeds,
    H=st.integers(1, 12),
    t_max=st.integers(1, 400),
    grace=st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0, 10.0, 1e9]),
    grace_wait=st.sampled_from(["last_sync", "window"]),
    dylu=st.booleans(),
    seed=st.integers(0, 1000),
)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_events(params: dict, preset: str = "async_diloco") -> tuple[pd.DataFrame, dict]:
    sc = scenario(params["speeds"], preset=preset, H=params["H"], t_max=params["t_max"], grace=params["grace"],
                  grace_wait=params["grace_wait"], dylu=params["dylu"], seed=params["seed"])
    return simulate(sc).events, params


@SETTINGS
@given(fleets)
def test_every_job_syncs_exactly_once_or_is_discarded(params):
    ev, _ = run_events(params)
    per_job = ev.groupby("job")["event"].apply(Counter)
    for job, counts in ev.groupby("job")["event"]:
        c = Counter(counts)
        assert c["dispatch"] == 1
        if c["discard"]:
            assert c["discard"] == 1 and c["complete"] == 0 and c["sync"] + c["drop"] == 0
        else:
            assert c["complete"] == 1 and c["sync"] + c["drop"] == 1
    assert len(per_job) > 0


@SETTINGS
@given(fleets)
def test_simulated_time_never_goes_back(params):
    ev, _ = run_events(params)
    assert ev["tau"].is_monotonic_increasing


@SETTINGS
@given(fleets)
def test_t_local_adds_up_and_stops_at_budget(params):
    ev, p = run_events(params)
    synced = ev[ev["event"].isin(["sync", "drop"])]
    assert list(synced["t_local"]) == list(synced["steps"].cumsum())
    final = int(synced["t_local"].iloc[-1])
    assert final >= p["t_max"]
    assert final - int(synced["steps"].iloc[-1]) < p["t_max"]


@SETTINGS
@given(fleets)
def test_staleness_counts_server_updates_since_dispatch(params):
    ev, _ = run_events(params)
    applied_so_far = 0
    at_dispatch: dict[int, int] = {}
    for row in ev.itertuples():
        if row.event == "dispatch":
            at_dispatch[row.job] = applied_so_far
        elif row.event in ("sync", "drop"):
            assert row.staleness == applied_so_far - at_dispatch[row.job]
            applied_so_far += row.event == "sync"


@SETTINGS
@given(fleets)
def test_grace_window_workers_restart_from_the_same_model(params):
    ev, p = run_events(params)
    rows = list(ev.itertuples())
    synced_since: list = []
    window_start = None
    i = 0
    while i < len(rows):
        row = rows[i]
        if row.event == "dispatch":
            batch = [row]
            while i + 1 < len(rows) and rows[i + 1].event == "dispatch":
                i += 1
                batch.append(rows[i])
            assert len({b.dispatch_version for b in batch}) == 1, "one window, one server model"
            assert len({b.tau for b in batch}) == 1
            if synced_since:  # not the initial dispatch
                assert sorted(b.worker for b in batch) == sorted(s.worker for s in synced_since)
                last = synced_since[-1].tau
                if p["grace_wait"] == "last_sync":
                    assert batch[0].tau == last
                else:
                    assert last <= batch[0].tau <= window_start + p["grace"] + 1e-9
            synced_since, window_start = [], None
        elif row.event in ("sync", "drop"):
            if window_start is None:
                window_start = row.tau
            assert row.tau - window_start <= p["grace"]
            synced_since.append(row)
        i += 1


@SETTINGS
@given(fleets)
def test_shards_sampled_only_when_under_sampled_and_stay_balanced(params):
    ev, p = run_events(params)
    k = len(p["speeds"])
    n = [0] * k
    biggest = 0
    for row in ev[ev["event"] == "dispatch"].itertuples():
        assert is_under_sampled(row.shard, [1] * k, n)
        n[row.shard] += row.steps  # null trainer: batch size 1
        biggest = max(biggest, row.steps)
        assert max(n) - sum(n) / k <= biggest


@SETTINGS
@given(fleets)
def test_dylu_steps_and_completion_times_follow_the_profiles(params):
    ev, p = run_events(params)
    step_time = {w: s for w, s in enumerate(p["speeds"])}
    fastest = min(p["speeds"])
    dispatched = {}
    for row in ev.itertuples():
        if row.event == "dispatch":
            expected = dylu_steps(1 / step_time[row.worker], 1 / fastest, p["H"]) if p["dylu"] else p["H"]
            assert row.steps == expected
            dispatched[row.job] = row.tau
        elif row.event == "complete":
            assert math.isclose(row.tau, dispatched[row.job] + row.steps * step_time[row.worker], rel_tol=1e-12)


@SETTINGS
@given(fleets)
def test_sync_diloco_is_a_barrier(params):
    ev, _ = run_events(params, preset="diloco")
    k = len(params["speeds"])
    dispatches = ev[ev["event"] == "dispatch"]
    for _, batch in dispatches.groupby("dispatch_version"):
        assert sorted(batch["worker"]) == list(range(k)) and batch["tau"].nunique() == 1
    assert (ev.loc[ev["event"] == "sync", "staleness"] == 0).all()


@SETTINGS
@given(fleets)
def test_huge_grace_period_gives_the_synchronous_schedule(params):
    params = {**params, "grace": 1e12, "grace_wait": "last_sync"}
    a, _ = run_events(params, preset="async_diloco")
    s, _ = run_events(params, preset="diloco")
    k = len(params["speeds"])
    rounds = len(s[s["event"] == "sync"]) // k
    cols = ["event", "worker", "shard", "steps", "tau"]
    key = lambda df: df[df["event"].isin(["dispatch", "complete"])][cols].sort_values(["tau", "event", "worker"]).reset_index(drop=True)  # noqa: E731
    a_key, s_key = key(a), key(s)
    n = min(len(a_key), len(s_key))
    assert rounds >= 1
    pd.testing.assert_frame_equal(a_key.iloc[:n], s_key.iloc[:n])
