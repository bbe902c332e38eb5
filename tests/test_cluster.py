"""Whole runs as Ray tasks on a real local cluster: two nodes started here, one CPU each (sim/cluster.py).

Skipped, in one line, where Ray is not installed or cannot start a cluster.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")
SWEEP = ["sweep", str(ROOT / "scenarios" / "very_heterogeneous.yaml"), "--method", "diloco,dn_dylu",
         "--set", "schedule.t_max=1600", "--set", "trainer.config.hidden=32", "-q", "--seed", "0,1,2"]
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "RAY_worker_niceness": "0", "PYTHONPATH": str(ROOT)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(RAY), *args], capture_output=True, text=True, env=ENV, timeout=180)


@pytest.fixture(scope="module")
def cluster():
    """A head node and one more node on this machine, 1 CPU each; yields (address, the second node's port)."""
    port, node_port = _free_port(), _free_port()
    head = _ray("start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                "--disable-usage-stats")
    if head.returncode != 0:
        pytest.skip(f"ray cannot start a cluster here: {(head.stderr or head.stdout).strip().splitlines()[-1:]}")
    try:
        node = _ray("start", f"--address=127.0.0.1:{port}", "--num-cpus=1", f"--node-manager-port={node_port}")
        if node.returncode != 0:
            pytest.skip(f"ray cannot add a second node here: {(node.stderr or node.stdout).strip().splitlines()[-1:]}")
        yield f"127.0.0.1:{port}", node_port
    finally:
        _ray("stop", "--force")


def _asyncsim(*args: str, runs: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim.cli", *args, "--runs", str(runs)], capture_output=True, text=True,
                          env=ENV, cwd=runs.parent, timeout=600)


def _hashes(runs: Path) -> dict[str, str]:
    """The complete runs in a store (a hidden folder is one being written, or checked before it is renamed in)."""
    return {f.name: json.loads((f / "summary.json").read_text())["run_hash"] for f in runs.iterdir()
            if not f.name.startswith(".") and (f / "summary.json").exists()}


def test_a_sweep_on_a_two_node_cluster_gives_the_local_run_hashes_even_when_a_node_dies(cluster, tmp_path):
    address, node_port = cluster
    local = _asyncsim(*SWEEP, "-j", "1", runs=tmp_path / "local")
    assert local.returncode == 0, local.stderr
    expected = _hashes(tmp_path / "local")
    assert len(expected) == 6

    # the same sweep on the cluster; the second node's raylet is killed once the first run is in, and the runs
    # it held are retried on the head node
    runs = tmp_path / "ray"
    proc = subprocess.Popen([sys.executable, "-m", "sim.cli", *SWEEP, "--executor", "ray", "--address", address,
                             "--runs", str(runs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            cwd=tmp_path)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (runs.exists() and _hashes(runs)):
        time.sleep(0.2)
    raylet = subprocess.run(["pgrep", "-f", f"raylet.*node_manager_port={node_port}"], capture_output=True, text=True)
    pids = [int(p) for p in raylet.stdout.split()]
    assert pids and proc.poll() is None, "the sweep finished before the node could be killed"
    for pid in pids:
        os.kill(pid, 9)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert _hashes(runs) == expected  # every run, byte-identical to the local ones, in the same folders
    assert not [p for p in runs.iterdir() if p.name.startswith(".")]  # nothing half-written left behind


def test_ctrl_c_cancels_the_cluster_sweep_in_one_line_and_leaves_only_complete_runs(cluster, tmp_path):
    import signal

    from sim.records import is_complete_run

    address, _ = cluster
    runs = tmp_path / "runs"
    args = [*SWEEP[:-2], "--seed", "10,11,12,13", "--executor", "ray", "--address", address, "--runs", str(runs)]
    # Ctrl-C as at a terminal: a test run started in the background (nohup, `&`) inherits an ignored SIGINT, and
    # Python then never turns it into KeyboardInterrupt
    proc = subprocess.Popen([sys.executable, "-m", "sim.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (runs.exists() and _hashes(runs)):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err and "Traceback" not in err
    left = list(runs.iterdir())
    assert left and all(is_complete_run(p) for p in left)  # finished runs kept, nothing half-written


def test_a_run_that_keeps_dying_or_comes_back_damaged_is_named_and_the_others_are_kept(tmp_path):
    """sim/cluster.py's loop with a stand-in for Ray: one task fails for good, one returns tables that do not hash
    to its summary's run hash, one returns another scenario's run; only the faithful run enters the store."""
    from types import SimpleNamespace

    from sim.cluster import _execute
    from sim.errors import UserError
    from sim.records import is_complete_run
    from sim.runner import run
    from tests.helpers import scenario

    class Died(Exception):
        pass

    specs = [SimpleNamespace(scenario=scenario([1.0, 2.0], seed=seed), folder=tmp_path / "store" / name)
             for seed, name in enumerate(["good-run", "bad-run", "damaged-run", "mixed-up-run"])]
    computed = {}
    for spec in specs:
        run(spec.scenario, out=tmp_path / "node" / spec.folder.name)
        computed[spec.scenario.seed] = {p.name: p.read_bytes() for p in (tmp_path / "node" / spec.folder.name).iterdir()}
    returned = {0: computed[0], 2: {**computed[2], "events.parquet": computed[0]["events.parquet"]}, 3: computed[0]}

    class FakeRay:
        def cluster_resources(self):
            return {"CPU": 2.0}

        def remote(self, fn):
            return SimpleNamespace(options=lambda **kw: SimpleNamespace(remote=lambda sc, store: sc["seed"]))

        def wait(self, refs, num_returns, timeout):
            return refs[:1], refs[1:]

        def get(self, ref):
            if ref == 1:
                raise Died("node lost")
            return returned[ref]

    done = []
    with pytest.raises(UserError) as info:
        _execute(FakeRay(), Died, KeyboardInterrupt, specs, None, 3, lambda s: None,
                 lambda s, reused: done.append(s.folder.name), lambda n: None)
    message = str(info.value)
    assert message.startswith("3 of 4 runs failed on the cluster (the others are kept)")
    assert "bad-run: Died after 3 retries" in message
    assert "damaged-run: metrics.parquet and events.parquet do not hash to the run hash in its summary" in message
    assert "mixed-up-run: it is the run of another scenario" in message
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["good-run"]  # nothing else, no hidden leftovers
    assert is_complete_run(specs[0].folder)
    assert sorted(done) == sorted(spec.folder.name for spec in specs)
