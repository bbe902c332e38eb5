"""asyncsim live: the toy run by real Ray worker actors on the real clock, against its simulation (sim/live/).

One local Ray for the module. Skipped in one line where Ray is not installed.
"""
from __future__ import annotations

import json
import os
import sys

import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from sim.live.against import compare
from sim.scenario import scenario_from_dict

ray = pytest.importorskip("ray")

#: two devices whose rounds never end within 0.4 simulated s of each other but at exact ties (every 92 s),
#: so at time scale 0.1 distinct arrivals are >= 40 ms apart on the real clock
TWO_WORKERS = {
    "name": "live_toy", "seed": 0,
    "trainer": {"name": "toy", "config": {"hidden": 32}},
    "workers": {"devices": [{"name": "a", "seconds_per_step": 1.0}, {"name": "b", "seconds_per_step": 2.3}]},
    "method": "async_diloco",
    "schedule": {"H": 4, "t_max": 48, "grace_period": 0.0},
    "lr": {"max": 2.0e-4, "min": 2.0e-6, "warmup": 0},
    "eval": {"every": 16},
}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _scenario(**overrides):
    return scenario_from_dict(TWO_WORKERS).with_overrides(overrides) if overrides else scenario_from_dict(TWO_WORKERS)


def test_two_actors_give_the_simulation_bit_for_bit_when_every_arrival_is_in_order(tmp_path):
    from sim.live.session import live
    from sim.runner import simulate

    result = live(_scenario(), 0.1, out=tmp_path / "live", against=True)
    simulated = simulate(_scenario())
    c = result.against
    assert c["first_divergence"] is None and c["in_order_share"] == 1.0, c
    assert c["identical_model"] is True
    assert torch.equal(result.theta, simulated.params)
    assert list(result.events.columns) == list(simulated.events.columns)
    assert list(result.metrics.columns) == list(simulated.metrics.columns)
    assert abs(c["finish_error"]) < 0.05  # the padding keeps the clock: within 5% of the simulated finish
    folder = tmp_path / "live"
    assert {"events.csv", "metrics.csv", "summary.json", "live.csv", "against.json"} <= {p.name for p in folder.iterdir()}
    log = pd.read_csv(folder / "live.csv")
    assert len(log) == (result.events["event"] == "complete").sum()
    assert (log["real_sent"] >= log["real_computed"]).all()
    assert json.loads((folder / "summary.json").read_text())["live"]["time_scale"] == 0.1


def test_a_worker_killed_mid_job_is_churn_and_the_run_completes(tmp_path):
    from sim.live.session import live

    # a budget that outlasts Ray's notice of the death, even on a loaded machine
    result = live(_scenario(**{"schedule.t_max": 160}), 0.05, out=tmp_path / "killed", kills=[(1, 1)])
    events = result.events
    lost = events[events["event"] == "lost"]
    # the fault, and any job sent while Ray restarts that actor, are lost rounds of worker 1 and nobody else's
    assert len(lost) >= 1 and set(lost["worker"]) == {1}
    assert result.summary["status"] == "finished" and result.summary["live"]["faults"] == len(lost)
    assert result.summary["final"]["t_local"] >= 160
    # the worker rejoins at once and is given a new job, which its restarted actor trains
    after = events[(events["event"] == "dispatch") & (events["worker"] == 1)]
    assert (after["job"] > lost["job"].iloc[0]).any()
    assert (result.log["fault"].fillna("") != "").sum() == len(lost)


def _cli(*args: str):
    from sim.cli import app

    return CliRunner().invoke(app, list(args))


def _one_error_line(output: str) -> bool:
    """One ``error:`` line and no traceback (a status line before it is the command's progress)."""
    return sum(line.startswith("error:") for line in output.splitlines()) == 1 and "Traceback" not in output


def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(TWO_WORKERS))
    for args, expected in [
        (["-t", "0"], "--time-scale"),
        (["-t", "-1"], "--time-scale"),
        (["-t", "0.1", "--method", "streaming_diloco"], "cannot run live"),
        (["-t", "0.1", "--kill", "x"], "--kill"),
    ]:
        r = _cli("live", str(path), *args)
        assert r.exit_code == 2, (args, r.output)
        assert expected in r.output and _one_error_line(r.output), (args, r.output)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    r = _cli("live", str(path), "-t", "0.1")
    assert r.exit_code == 2 and "needs Ray" in r.output and _one_error_line(r.output)


def test_compare_counts_the_first_divergence_and_the_time_errors():
    def events(rows):
        frame = pd.DataFrame(rows, columns=["event", "job", "worker", "dispatch_version", "tau"])
        return frame.assign(shard=frame["worker"], steps=4)

    sim = events([("dispatch", 0, 0, 0, 0.0), ("dispatch", 1, 1, 0, 0.0), ("complete", 0, 0, 0, 1.0),
                  ("complete", 1, 1, 0, 2.0), ("complete", 2, 0, 1, 3.0)])
    live = events([("dispatch", 0, 0, 0, 0.0), ("dispatch", 1, 1, 0, 0.0), ("complete", 0, 0, 0, 1.1),
                   ("complete", 1, 1, 0, 1.9), ("complete", 2, 0, 2, 3.2)])  # the last started from another model
    c = compare(sim, live, {"loss": 1.0}, {"loss": 1.5}, 10.0, 11.0)
    assert c["first_divergence"] == 2 and c["matched_prefix"] == 2
    assert c["in_order_share"] == pytest.approx(2 / 3)
    assert c["same_jobs_share"] == pytest.approx(2 / 3)  # job 2 ran from another model
    assert c["event_error_abs_max_s"] == pytest.approx(0.1)
    assert c["event_error_mean_s"] == pytest.approx(0.0)  # +0.1 and -0.1 on the arrivals, 0 on the dispatches
    assert c["finish_error"] == pytest.approx(0.1)
    assert c["final_loss_live"] - c["final_loss_sim"] == pytest.approx(0.5)


def test_calibrate_writes_a_profile_a_scenario_can_use(tmp_path, monkeypatch):
    import sim.live.calibrate

    monkeypatch.setattr(sim.live.calibrate, "LIVE_PROBES", 1)  # one live probe (3 by default), to keep CI short
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(TWO_WORKERS))
    profile = tmp_path / "me.yaml"
    r = _cli("calibrate", str(path), "--out", str(profile), "-k", "3", "--steps", "2", "--repeats", "2",
             "--live-jobs", "3")
    assert r.exit_code == 0, r.output
    text = profile.read_text()
    description = yaml.safe_load(text)["description"]
    assert text.startswith("# made by asyncsim calibrate") and "un-padded live runs of 3 actors" in description
    assert "means over a run's jobs)" in description  # one probe: no median of runs to name
    sc = scenario_from_dict({**TWO_WORKERS, "workers": {"fleet": str(profile)}})
    assert sc.workers.k == 3 and sc.workers.device(0).seconds_per_step > 0
    assert sc.workers.device(0).job_overhead_ms is not None and sc.workers.device(0).job_overhead_ms >= 0
    from sim.outputs import made_by_asyncsim

    assert made_by_asyncsim(profile)  # so calibrate may replace its own profile, and nothing else
    mine = tmp_path / "mine.yaml"
    mine.write_text("devices: []\n")
    r = _cli("calibrate", str(path), "--out", str(mine))
    assert r.exit_code == 2 and "--force" in r.output and mine.read_text() == "devices: []\n"


def test_a_live_runs_costs_are_each_jobs_compute_per_step_and_its_cycle_less_compute():
    """calibrate --live-jobs: per step, all compute over all steps; per job, the mean of (next dispatch of the same
    worker - this dispatch) - compute, a worker's last job (no next dispatch) and lost jobs left out. Means, because
    a run's time to finish is a sum of cycles; a log read back from live.csv (empty fault = missing) gives the same."""
    from sim.live.calibrate import live_costs

    log = pd.DataFrame({
        "worker": [0, 0, 0, 1, 1, 1], "steps": [10, 10, 10, 5, 5, 5],
        "real_dispatched": [0.0, 0.030, 0.061, 0.0, 0.020, 0.041],
        "compute_s": [0.020, 0.020, 0.022, 0.011, 0.010, 0.011], "fault": ["", "", "", "", "", ""]})
    per_step, overhead = live_costs(log)
    assert per_step == pytest.approx(0.094 / 45)  # 94 ms of compute over 45 steps
    assert overhead == pytest.approx(0.01025)  # cycles less compute: 10, 11 (worker 0), 9, 11 ms (worker 1)
    log.loc[5, "real_dispatched"] = 0.069  # one slow cycle (49 ms less 10 of compute) counts in full
    assert live_costs(log)[1] == pytest.approx((10 + 11 + 9 + 39) / 4 * 1e-3)
    read_back = log.assign(fault=[None] * 6)
    assert live_costs(read_back) == pytest.approx(live_costs(log))


def test_calibrate_keeps_the_probe_with_the_median_step_time_whole():
    """One slow spell of the host makes one probe slow: the median probe is kept, its two numbers together."""
    from sim.live.calibrate import median_probe

    assert median_probe([(0.00182, 0.0138), (0.00130, 0.0102), (0.00138, 0.0104)]) == (0.00138, 0.0104)
    assert median_probe([(0.0013, 0.011)]) == (0.0013, 0.011)


def test_an_interrupted_live_run_says_so_in_one_line_and_writes_nothing(tmp_path):
    """SIGTERM (and Ctrl-C, the same handler) once the workers train: exit 130, one line, no folder."""
    import signal
    import subprocess
    import time

    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({**TWO_WORKERS, "schedule": {**TWO_WORKERS["schedule"], "t_max": 100000}}))
    out = tmp_path / "never"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "sim.cli", "live", str(path), "-t", "0.05", "--no-against",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen = []
        for line in proc.stderr:  # the run says when its clock starts: the workers are training from then on
            seen.append(line)
            if "the live clock starts" in line:
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        stdout, rest = proc.communicate(timeout=60)
        stderr = "".join(seen) + rest
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert _one_error_line(stderr) and "interrupted" in stderr, stderr
    assert not out.exists()


class _SlowReportFleet:
    """Runs each job in the driver and reports worker 0's result ``late`` real seconds after it was sent
    (1 ms after worker 1's, inside the tie window), as a loaded machine's Ray may."""

    name = "slow-report"

    def __init__(self, trainer, late: float, overshoot: float = 0.001):
        self.trainer, self.late, self.overshoot, self.pending = trainer, late, overshoot, []

    def submit(self, theta, spec, state=None, priority=0.0):
        from sim.live.fleet import LiveFuture

        return LiveFuture(theta, spec, state)

    def launch(self, worker, future, deadline):
        import time

        started = time.time()
        future.value = self.trainer.local_train(future.theta, future.spec, future.state)
        sent = max(deadline, time.time()) + (self.overshoot if worker == 0 else 0.0)
        future.ref = object()
        future.timing.update(launched=started, started=started, computed=time.time(), deadline=deadline, sent=sent)
        future.theta = future.state = None
        self.pending.append((sent + (self.late if worker == 0 else 0.0), future))

    def wait(self, timeout):
        import time

        for attempt in (0, 1):
            now = time.time()
            ready = [f for t, f in self.pending if t <= now]
            if ready or attempt or not self.pending or timeout == 0:
                self.pending = [(t, f) for t, f in self.pending if t > now]
                return ready
            nxt = min(t for t, _ in self.pending) - now
            time.sleep(max(0.0, nxt if timeout is None else min(timeout, nxt)))
        return []


def _tied_pair_live_run(late: float, overshoot: float, tie_window: float, speeds: tuple[float, float] = (1.0, 1.0)):
    """Two devices (identical ones end every round together), live through :class:`_SlowReportFleet`: the live
    engine's tie counts and its comparison with the simulation."""
    from sim.build import assemble
    from sim.live.against import compare
    from sim.live.clock import RealClock
    from sim.live.engine import LiveSimulation
    from sim.runner import simulate
    from sim.trainer_factory import build_trainer

    scenario = scenario_from_dict({**TWO_WORKERS, "workers": {"devices": [
        {"name": "a", "seconds_per_step": speeds[0]}, {"name": "b", "seconds_per_step": speeds[1]}]}, "schedule": {
        "H": 4, "t_max": 32, "grace_period": 0.0}})
    torch.set_num_threads(scenario.compute.threads)
    trainer = build_trainer(scenario)
    fleet = _SlowReportFleet(trainer, late=late, overshoot=overshoot)
    sim = LiveSimulation(assemble(scenario, trainer, fleet), fleet, RealClock(0.05), tie_window=tie_window)
    outcome = sim.run()
    simulated = simulate(scenario)
    c = compare(simulated.events, outcome.recorder.events_frame(), simulated.summary["final"], {},
                simulated.summary["simulated_seconds"], outcome.simulated_seconds, simulated.params, outcome.theta)
    return sim.ties, c


def test_a_tie_whose_second_result_reaches_the_server_late_is_still_one_arrival_time_in_worker_order():
    """Two identical devices end every round together. Worker 0's result leaves 1 ms after worker 1's (inside the
    5 ms window) but reaches the server 30 ms later: the server waits for it (its deadline has passed) and applies
    the tie in worker order, as the simulation does, instead of applying worker 1's result alone first."""
    ties, c = _tied_pair_live_run(late=0.03, overshoot=0.001, tie_window=0.005)
    assert c["first_divergence"] is None and c["in_order_share"] == 1.0, c
    assert c["identical_model"] is True
    assert ties["batches"] >= 1 and ties["reordered"] >= 1  # worker 1's stamp came first (every on-time round)


def test_results_due_at_the_same_deadline_are_one_tie_however_far_apart_their_stamps():
    """Worker 0's actor overslept its deadline by 8 ms, four times the 2 ms window (a loaded VM's sleep): the two
    results were due at the same real instant, an exact tie of the simulation, so the server still applies them
    as one arrival in worker order, and the live run stays the simulation's, bit for bit."""
    ties, c = _tied_pair_live_run(late=0.0, overshoot=0.008, tie_window=0.002)
    assert c["first_divergence"] is None and c["in_order_share"] == 1.0, c
    assert c["identical_model"] is True
    # worker 1's stamp came 8 ms before worker 0's in every round whose two results were on time (a loaded
    # machine may make one an overrun, which arrives at its stamp)
    assert ties["reordered"] >= 1


def test_a_near_tie_keeps_the_simulated_order_inside_the_tie_window():
    """Worker 1's device is 0.01% faster, so the simulation applies its result a few microseconds (real) before
    worker 0's every round. Worker 0's actor oversleeps by 1 ms, inside the 2 ms window: taken by their stamps the
    two would be one tie, applied in worker order (0 first), against the simulation. An on-time result arrives
    when it was planned to, so the order and the model stay the simulation's."""
    ties, c = _tied_pair_live_run(late=0.0, overshoot=0.001, tie_window=0.002, speeds=(1.0001, 1.0))
    assert c["first_divergence"] is None and c["in_order_share"] == 1.0, c
    assert c["identical_model"] is True
    assert ties["batches"] == 0  # near, but never a tie


def test_an_actors_oversleep_does_not_drift_its_workers_later_arrivals():
    """Worker 0's actor sends every result 8 ms (0.16 simulated s at S = 0.05) after its deadline. The oversleep is
    the emulator's, not the device's: every dispatch and arrival keeps its simulated time exactly, and the run
    finishes when the simulation does."""
    ties, c = _tied_pair_live_run(late=0.0, overshoot=0.008, tie_window=0.002, speeds=(1.0, 2.3))
    assert c["first_divergence"] is None and c["identical_model"] is True, c
    assert c["event_error_abs_max_s"] == 0.0 and c["finish_error"] == 0.0, c


def test_the_order_diverges_where_the_servers_record_does_even_with_the_same_arrivals_and_versions():
    """HALoS's region servers sync without moving the central version: two arrivals the live server took as a
    tie send worker 1 off after worker 2's sync there, before it in the simulation, with the same versions on
    record. The comparison must call that a divergence (else "order matched" would not mean "same inputs")."""
    def events(rows):
        return pd.DataFrame(rows, columns=["event", "worker", "job", "server", "dispatch_version", "tau"])

    sim = events([("complete", 1, 13, 0, 0, 48.0), ("sync", 1, 13, 0, 0, 48.0), ("dispatch", 1, 17, 0, 0, 48.0),
                  ("complete", 2, 14, 0, 0, 48.3), ("sync", 2, 14, 0, 0, 48.3), ("dispatch", 2, 18, 0, 0, 48.3)])
    tied = events([("complete", 1, 13, 0, 0, 48.4), ("sync", 1, 13, 0, 0, 48.4), ("complete", 2, 14, 0, 0, 48.4),
                   ("sync", 2, 14, 0, 0, 48.4), ("dispatch", 1, 17, 0, 0, 48.4), ("dispatch", 2, 18, 0, 0, 48.4)])
    c = compare(sim, tied, {}, {}, 1.0, 1.0)
    assert c["in_order_share"] == 1.0  # the arrivals alone look in order
    assert c["first_divergence"] == 1  # the second arrival met another server state
    assert compare(sim, sim.copy(), {}, {}, 1.0, 1.0)["first_divergence"] is None
