"""HALoS (sim/schedules/hierarchical.py): scenario checks, what crosses regions, the trace's server tracks.

Its exact reduction to flat async is in test_identities.py; its invariants under communication and churn
and its resume are in test_comm_churn.py and test_resume.py.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest

from sim import simulate
from sim.compression import wire_bytes
from sim.errors import ScenarioError
from sim.report import time_to_target, time_to_target_markdown
from sim.trace import trace_events
from sim.traffic import run_traffic
from tests.helpers import scenario

DIM = 1000
REGIONS = ["home", "home", "away", "away"]
NETWORK = {"server_region": "home", "regions": [{"between": ["home", "away"], "latency_ms": 50, "bandwidth_gbps": 0.01}]}


def geo(preset: str, **kw):
    extra = [{"region": r, "bandwidth_gbps": 1.0} for r in REGIONS]
    return scenario([1.0, 1.3, 0.9, 2.0], preset=preset, trainer_config={"dim": DIM}, H=5, t_max=400,
                    device_extra=extra, network=NETWORK, **kw)


def test_hierarchy_belongs_to_halos_only_and_is_checked():
    with pytest.raises(ScenarioError, match=r"'method\.hierarchy': only schedule 'halos'"):
        scenario([1.0], preset="dn", method={"hierarchy": {"K": 4}})
    with pytest.raises(ScenarioError, match=r"method\.hierarchy\.alpha"):
        scenario([1.0], preset="halos", method={"hierarchy": {"alpha": 1.5}})
    with pytest.raises(ScenarioError, match=r"method\.hierarchy\.local_outer\.lr"):
        scenario([1.0], preset="halos", method={"hierarchy": {"local_outer": {"lr": -1}}})
    sc = scenario([1.0], preset="halos", method={"hierarchy": {"K": 4, "local_outer": {"lr": 0.5}}})
    assert sc.method.hierarchy.K == 4 and sc.method.hierarchy.local_outer["lr"] == 0.5
    assert sc.method.hierarchy.local_outer["N"] == 16  # the preset's other values stay
    assert "hierarchy" not in scenario([1.0], preset="dn").resolved()["method"]  # older digests hold


def test_only_pushes_and_global_models_cross_regions_and_the_bytes_add_up():
    halos = simulate(geo("halos", method={"hierarchy": {"K": 2}}))
    flat = simulate(geo("dn_dylu"))
    ev = halos.events
    per_model = wire_bytes(DIM, "fp32")
    far = {int(s) for s in ev.loc[(ev["job"] >= 0) & ev["worker"].isin([2, 3]), "server"]}
    assert far == {1}  # LPS 1 serves the "away" workers
    crossings = ((ev["event"].isin(["push", "global"])) & (ev["server"] == 1)).sum()
    traffic = run_traffic(ev, halos.scenario, DIM)
    assert traffic["gb_inter_region"] == pytest.approx(crossings * per_model / 1e9)
    jobs = ev[ev["job"] >= 0]
    pushes_and_models = (ev["event"].isin(["push", "global"])).sum()
    assert traffic["gb_sent"] == pytest.approx(
        ((jobs["event"] == "dispatch").sum() + (jobs["event"] == "complete").sum() + pushes_and_models) * per_model / 1e9)
    fev = flat.events
    away_rounds = fev["worker"].isin([2, 3]) & fev["event"].isin(["dispatch", "complete"])
    assert run_traffic(fev, flat.scenario, DIM)["gb_inter_region"] == pytest.approx(away_rounds.sum() * per_model / 1e9)
    # the point of the hierarchy: far fewer bytes between regions for the same local work
    assert traffic["gb_inter_region"] < run_traffic(fev, flat.scenario, DIM)["gb_inter_region"] / 2
    assert run_traffic(ev, geo("finetune_1w"), DIM)["gb_sent"] == 0.0  # the baseline sends nothing


def test_each_round_trip_takes_the_region_path_both_ways():
    ev = simulate(geo("halos", method={"hierarchy": {"K": 2}})).events
    path = NETWORK["regions"][0]  # home <-> away
    trip = path["latency_ms"] / 1e3 + wire_bytes(DIM, "fp32") * 8 / (path["bandwidth_gbps"] * 1e9)  # each way
    for server, one_way in ((0, 0.0), (1, trip)):
        mine = ev[(ev["server"] == server) & (ev["worker"] < 0)]
        push, glob, merge = (mine.loc[mine["event"] == k, "tau"].to_numpy() for k in ("push", "global", "merge"))
        n = len(merge)
        assert n >= 2
        assert (glob[:n] - push[:n]) == pytest.approx([one_way] * n)
        assert (merge - glob[:n]) == pytest.approx([one_way] * n)


def test_trace_has_a_track_per_local_server_and_one_for_the_global_server(tmp_path):
    ev = simulate(geo("halos", method={"hierarchy": {"K": 2}})).events
    names = {e["args"]["name"] for e in trace_events(ev) if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {"global server (GPS)", "LPS 0", "LPS 1", "worker 0", "worker 3"} <= names and "worker -1" not in names
    spans = [e for e in trace_events(ev) if e["ph"] == "X" and e["name"] in ("push to GPS", "global model back")]
    assert spans and all(e["tid"] == 2 for e in spans if e["dur"] > 0)  # only LPS 1's trips take time
    json.dumps(trace_events(ev))  # serialisable


def test_time_to_target_is_the_first_eval_at_or_below_the_worst_final():
    metrics = pd.DataFrame({
        "scenario": "s", "sweep": "", "method": ["a"] * 3 + ["b"] * 3, "seed": 0,
        "tau": [0.0, 10.0, 20.0, 0.0, 5.0, 8.0], "loss": [3.0, 2.0, 1.5, 3.0, 2.5, 2.0],
    })
    table = pd.DataFrame({"scenario": "s", "sweep": "", "method": ["a", "b"], "mean": [1.5, 2.0]})
    times = time_to_target(metrics, table, "loss", None).set_index("method")
    assert times.loc["a", "seconds"] == 10.0 and times.loc["b", "seconds"] == 8.0  # target 2.0, b's final
    given = time_to_target(metrics, table, "loss", 1.8).set_index("method")
    assert given.loc["a", "seconds"] == 20.0 and pd.isna(given.loc["b", "seconds"])
    assert "not reached (0/1)" in time_to_target_markdown(given.reset_index(), ["a", "b"])


def test_a_comparison_of_two_scenarios_with_a_swept_axis_keeps_every_column():
    from sim.report import column_labels, table_markdown

    table = pd.DataFrame({"scenario": ["a", "a", "b", "b"], "sweep": ["1", "2", "1", "2"], "method": "m",
                          "mean": [1.0, 2.0, 3.0, 4.0], "std": 0.0, "n": 1, "diverged": 0, "stalled": 0})
    assert list(column_labels(table, "K")) == ["a K=1", "a K=2", "b K=1", "b K=2"]
    assert "| m | 1.0000 | 2.0000 | 3.0000 | 4.0000 |" in table_markdown(table, "loss", "K")
    one = table[table.scenario == "a"]
    assert list(column_labels(one, "K")) == ["K=1", "K=2"] and list(column_labels(one)) == ["1", "2"]
    plain = table.assign(sweep="")
    assert list(column_labels(plain)) == ["a", "a", "b", "b"]


def test_round_trips_pair_each_push_with_its_global_update_and_merge_and_keep_one_still_on_its_way():
    from sim.records import server_round_trips

    ev = pd.DataFrame({"event": ["push", "global", "merge", "push", "push", "global"], "worker": -1,
                       "server": [0, 0, 0, 0, 1, 1], "tau": [1.0, 2.0, 3.0, 4.0, 1.5, 2.5]})
    trips = server_round_trips(ev).fillna(-1.0)  # -1: still on its way when the run ended
    assert trips.to_dict("list") == {"server": [0, 0, 1], "push": [1.0, 4.0, 1.5], "applied": [2.0, -1.0, 2.5],
                                     "merge": [3.0, -1.0, -1.0]}
    spans = trace_events(ev.assign(job=-1, shard=-1, steps=0, dispatch_version=-1, staleness=-1, t_local=0,
                                   server_version=0, train_loss=float("nan")))
    assert sum(e["name"] == "push to GPS" for e in spans) == 2  # the push still on its way draws nothing


def test_the_halos_preset_is_the_authors_example():
    """utnslab/halos examples/run_halos.sh: merge weight 0.25 on the global model (alpha 0.75 on the LPS's own),
    K 32, workers keep their AdamW, DyLU rounds up; the flat presets keep the paper's floor and reset."""
    sc = scenario([1.0, 1.3, 0.9, 2.0], preset="halos")
    assert (sc.method.hierarchy.alpha, sc.method.hierarchy.K) == (0.75, 32)
    assert (sc.method.inner_state, sc.method.dylu_rounding) == ("keep", "ceil")
    flat = scenario([1.0, 1.3, 0.9, 2.0], preset="dn_dylu")
    assert (flat.method.inner_state, flat.method.dylu_rounding) == ("reset", "floor")


@pytest.mark.parametrize("rounding", ["floor", "ceil"])
def test_dylu_rounds_each_workers_steps_as_asked(rounding):
    """Eq. 6 with floor, the authors' simulator with ceil (its common.py): max(1, round(H v / max v)) per worker."""
    import math

    speeds = [0.58, 0.75, 1.51, 3.33]  # seconds per step: v = 1 / s
    run = simulate(scenario(speeds, preset="dn_dylu", H=50, t_max=600, method={"dylu_rounding": rounding}))
    steps = run.events[run.events["event"] == "dispatch"].groupby("worker")["steps"].unique()
    rule = math.ceil if rounding == "ceil" else math.floor
    for w, s in enumerate(speeds):
        assert list(steps[w]) == [max(1, rule((1 / s) / (1 / min(speeds)) * 50))]
    assert math.ceil(0.58 / 3.33 * 50) != math.floor(0.58 / 3.33 * 50)  # the fleet tells the two apart
