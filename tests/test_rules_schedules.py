"""Exact checks of the round-based and asynchronous schedules' rules that mutation testing found unpinned (issue 22).

Each test names the rule it pins: Algorithm 1's round restarting when the
first device is back after every device was down; Algorithm 5's two readings
of when a grace window's workers restart; the per-job diagnostics of a
synchronous round; the 1-worker baseline's one process; and schedule state
that checkpoints before anything has happened.
"""
from __future__ import annotations

from sim.runner import simulate
from sim.schedules.asynchronous import Asynchronous
from sim.schedules.synchronous import Synchronous
from tests.helpers import TINY_TOY, scenario


def _dispatches(events, worker: int) -> list[float]:
    return events[(events["event"] == "dispatch") & (events["worker"] == worker)]["tau"].tolist()


def test_a_synchronous_round_lost_to_an_outage_of_every_device_restarts_when_the_first_is_back():
    """Both devices go down at 3 s in the first round (both jobs lost). Worker 0 is back at 12 and starts the next
    round alone; worker 1, back at 14, joins the round after (17 s), from the model that round's step produced."""
    sc = scenario([1.0, 1.0], preset="diloco", trainer_config={"dim": 4}, H=5, t_max=40,
                  device_extra=[{"availability": {"down": [[3.0, 12.0]]}}, {"availability": {"down": [[3.0, 14.0]]}}])
    ev = simulate(sc).events
    assert ev[ev["event"] == "lost"]["tau"].tolist() == [3.0, 3.0]
    assert _dispatches(ev, 0)[:3] == [0.0, 12.0, 17.0]
    assert _dispatches(ev, 1)[:2] == [0.0, 17.0]
    round_two = ev[(ev["event"] == "sync") & (ev["tau"] == 17.0)]
    assert round_two["worker"].tolist() == [0]  # one outer step on worker 0's pseudo-gradient alone
    joined = ev[(ev["event"] == "dispatch") & (ev["tau"] == 17.0)]
    assert joined["dispatch_version"].tolist() == [1, 1]


def test_a_restored_synchronous_schedule_is_between_rounds():
    """Checkpoints are taken between rounds only; a schedule rebuilt from one is not mid-round (nothing pending)."""
    schedule = Synchronous(scenario([1.0, 2.0], preset="diloco"))
    schedule.load_state_dict({"due": True})
    assert not schedule.busy and schedule.pending == 0 and schedule.due


def test_grace_wait_window_restarts_at_the_windows_end_and_last_sync_at_its_last_sync():
    """Algorithm 5 with tau_grace = 2: worker 0 arrives at 5 (tau_sync), worker 1 at 6 (in the window), worker 2 at 15
    (outside). ``last_sync`` restarts workers 0 and 1 at 6; ``window`` at tau_sync + tau_grace = 7."""
    def restarts(grace_wait: str) -> tuple[list[float], list[float]]:
        ev = simulate(scenario([1.0, 1.2, 3.0], preset="async_sgd", H=5, t_max=40, grace=2.0, grace_wait=grace_wait)).events
        return _dispatches(ev, 0)[:2], _dispatches(ev, 1)[:2]

    assert restarts("last_sync") == ([0.0, 6.0], [0.0, 6.0])
    assert restarts("window") == ([0.0, 7.0], [0.0, 7.0])


def test_a_schedule_with_no_window_open_checkpoints_and_restores_it_closed():
    sc = scenario([1.0, 2.0], preset="async_diloco", grace=1.0)
    fresh, restored = Asynchronous(sc), Asynchronous(sc)
    restored.opened, restored.completed = object(), [1]  # whatever it held is replaced
    restored.load_state_dict(fresh.state_dict())
    assert restored.opened is None and restored.completed == []


def test_a_synchronous_rounds_diagnostics_are_each_jobs_own():
    """``delta_norm`` and ``cosine`` describe each worker's pseudo-gradient, not the round's mean (which would give
    every job of a round the same norm and a cosine of 1)."""
    sc = scenario([1.0, 1.5, 2.0], preset="diloco", trainer="toy", trainer_config=TINY_TOY, H=4, t_max=48,
                  eval_diagnostics=True)
    syncs = simulate(sc).events.query("event == 'sync'")
    for _, one_round in syncs.groupby("server_version"):
        assert one_round["delta_norm"].nunique() == len(one_round) == 3
        assert (one_round["cosine"] < 1 - 1e-6).all()


def test_the_one_worker_baseline_trains_on_worker_0():
    """finetune_1w is one process over the k devices in lockstep: its jobs are worker 0's (the records, the trace)."""
    ev = simulate(scenario([1.0, 2.0, 3.0], preset="finetune_1w", trainer_config={"dim": 4}, H=5, t_max=60)).events
    assert len(ev) > 0 and set(ev["worker"]) == {0}
