"""Exact simulated time (sim/simtime.py): rounds that end together mathematically are synced together."""
from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim import simulate
from sim.simtime import Time, later
from tests.helpers import scenario

#: a decimal step time unit: 1 to 4 significant digits, 0.0001 s to 9.999 s
units = st.builds(lambda digits, places: Decimal(digits).scaleb(-places), st.integers(1, 9999), st.integers(3, 4))
tied_fleets = st.builds(
    dict,
    unit=units,
    multiples=st.lists(st.integers(1, 9), min_size=2, max_size=5),  # step time of worker i: multiples[i] x unit
    H=st.integers(1, 12),
    coincidences=st.integers(1, 3),
    grace_wait=st.sampled_from(["last_sync", "window"]),
    dylu=st.booleans(),  # Eq. 6 sizes rounds so that devices finish together
    seed=st.integers(0, 1000),
)


def closed_windows(events, exact_end) -> list[list[tuple[int, Fraction]]]:
    """The grace windows of an async run that closed: (worker, exact arrival) synced before a dispatch batch."""
    out, current = [], []
    for row in events.itertuples():
        if row.event == "sync":
            current.append((row.worker, exact_end[row.job]))
        elif row.event == "dispatch" and current:
            out.append(current)
            current = []
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tied_fleets)
def test_rounds_that_end_together_are_synced_in_one_grace_group(p):
    """Worker i's rounds end at sums of steps x m_i x unit: decimals, equal wherever the math says.

    With a zero grace period every window holds the arrivals of one instant,
    all of them: a tie is never split into two windows (in floats, 3 x 7 x
    2.824 s and 7 x 3 x 2.824 s end 5e-13 s apart and were).
    """
    unit, m, H = Fraction(p["unit"]), p["multiples"], p["H"]
    lcm = math.lcm(*m)
    budget = p["coincidences"] * H * sum(lcm // x for x in m) + 1  # just past the n-th common end
    sc = scenario([float(p["unit"] * x) for x in m], preset="async_sgd", H=H, t_max=budget, grace=0.0,
                  grace_wait=p["grace_wait"], dylu=p["dylu"], seed=p["seed"])
    ev = simulate(sc).events
    trained: dict[int, Fraction] = {}
    exact_end: dict[int, Fraction] = {}
    for row in ev[ev["event"] == "dispatch"].itertuples():  # each worker trains back to back: no idle time
        trained[row.worker] = exact_end[row.job] = trained.get(row.worker, Fraction(0)) + row.steps * m[row.worker] * unit
    found = closed_windows(ev, exact_end)
    assert found, "no window closed"
    for window in found:
        assert len({t for _, t in window}) == 1, f"one instant per window (zero grace): {window}"
        assert [w for w, _ in window] == sorted(w for w, _ in window), "ties break by worker id"
    instants = [window[0][1] for window in found]
    assert len(instants) == len(set(instants)), "an exact tie was split into two windows"
    if not p["dylu"]:
        assert any(len(window) == len(m) for window in found), "all workers met at the common end"


def test_equal_sums_and_products_of_decimals_are_equal_times():
    a, b = Time.of(2.824), Time.of(0.353)
    seven_rounds = Time(0, 0.0)
    for _ in range(7):
        seven_rounds = seven_rounds + a * 3
    assert seven_rounds == a * 21 == b * (8 * 21)
    assert seven_rounds.seconds != (a * 21).seconds  # the floats disagree; the ticks do not
    assert later(a * 21, seven_rounds) is not seven_rounds  # the clock does not move between them
    assert Time.of(0.1) + Time.of(0.2) == Time.of(0.3) and 0.1 + 0.2 != 0.3
