"""FLOP-rated device profiles and DyLU with speeds learnt online (the paper's footnote 3)."""
import math

import pytest

from sim import simulate
from sim.profiles import Device
from sim.sampling import dylu_steps
from sim.scenario import ScenarioError, scenario_from_dict
from tests.helpers import scenario

VERY = [0.58, 0.75, 1.51, 3.33]


def test_flop_rated_devices_time_steps_from_the_model():
    d = Device(name="x", peak_tflops=100, utilization=0.5)
    assert d.step_time(6e12) == pytest.approx(6e12 / (100e12 * 0.5))
    with pytest.raises(ValueError, match="flops_per_step"):
        d.step_time(None)
    with pytest.raises(ValueError, match="exactly one"):
        Device(peak_tflops=100, seconds_per_step=1.0)


def test_a_flop_rated_fleet_runs_and_completion_times_follow_the_formula():
    sc = scenario_from_dict({
        "name": "flops", "trainer": {"name": "null", "config": {"dim": 1000, "batch_size": 8}},
        "workers": {"devices": [{"peak_tflops": 312, "utilization": 0.4}, {"peak_tflops": 121, "utilization": 0.4}]},
        "method": "async_diloco", "schedule": {"H": 10, "t_max": 100}, "lr": {"max": 0.01, "min": 0.001},
        "eval": {"every": 50},
    })
    ev = simulate(sc).events
    first = ev[(ev["event"] == "complete") & (ev["worker"] == 1)].iloc[0]
    assert first["tau"] == pytest.approx(10 * 6 * 1000 * 8 / (121e12 * 0.4))


def test_online_dylu_learns_the_oracle_step_counts():
    online = simulate(scenario(VERY, preset="dn_dylu", t_max=3000, method={"dylu_speeds": "online"})).events
    d = online[online["event"] == "dispatch"]
    assert (d.iloc[:4]["steps"] == 10).all()  # nothing known yet: every worker runs H
    for w, step_time in enumerate(VERY):
        oracle = dylu_steps(1 / step_time, 1 / min(VERY), 10)
        assert d[d["worker"] == w]["steps"].iloc[-1] == oracle


def test_online_dylu_with_jitter_stays_close_to_the_oracle():
    kw = dict(preset="dn_dylu", t_max=4000, jitter=0.2)
    oracle = simulate(scenario(VERY, **kw)).events
    online = simulate(scenario(VERY, method={"dylu_speeds": "online"}, **kw)).events
    mean = lambda ev: ev[ev["event"] == "dispatch"].groupby("worker")["steps"].mean()  # noqa: E731
    assert (abs(mean(online) - mean(oracle)) <= 2).all()
    assert math.isclose(online["tau"].max(), oracle["tau"].max(), rel_tol=0.25)


def test_unknown_dylu_mode_is_rejected():
    with pytest.raises(ScenarioError, match="dylu_speeds"):
        scenario(VERY, method={"dylu_speeds": "psychic"})
