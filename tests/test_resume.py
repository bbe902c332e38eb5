"""Checkpoint and resume: a resumed run ends with the same bytes as an uninterrupted one."""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim.build import assemble
from sim.engine import Simulation
from sim.executors import SerialExecutor
from sim.runner import simulate
from sim.runstate import Checkpoints
from sim.trainer_factory import build_trainer
from tests.helpers import TINY_TOY, SavedStates, scenario

ROOT = Path(__file__).resolve().parent.parent
VERY = [0.58, 0.75, 1.51, 3.33]


def fresh(sc, checkpoints=None):
    trainer = build_trainer(sc)
    return Simulation(assemble(sc, trainer, SerialExecutor(trainer)), checkpoints=checkpoints)


@pytest.mark.parametrize(
    "preset, kw",
    [
        ("dn_dylu", {"grace": 0.5, "jitter": 0.2}),
        ("async_delaycomp", {"grace": 1.0, "grace_wait": "window"}),
        ("async_polythres", {}),
        ("async_buffer", {"jitter": 0.3}),
        ("diloco", {}),
        ("finetune_1w", {}),
    ],
)
def test_every_checkpoint_resumes_to_the_same_hash(preset, kw):
    sc = scenario(VERY, preset=preset, trainer="toy", trainer_config=TINY_TOY, t_max=600, eval_every=50, **kw)
    expected = simulate(sc).run_hash
    saved = SavedStates()
    rec = fresh(sc, Checkpoints(saved, every=3)).run().recorder
    from sim.records import run_hash

    assert run_hash(rec.metrics_frame(), rec.events_frame()) == expected  # checkpointing changes nothing
    assert len(saved) >= 3
    for blob in saved[:: max(1, len(saved) // 4)]:
        resumed = fresh(sc)
        resumed.load_state_dict(saved.load(blob))
        r = resumed.run().recorder
        assert run_hash(r.metrics_frame(), r.events_frame()) == expected


def _hash(text: str) -> str:
    return re.search(r"run hash: ([0-9a-f]{64})", text).group(1)


# Three kills for the async default, one for each schedule that moves its own transfers: their
# in-process resume from every checkpoint is tests/test_comm_churn.py's; here a SIGKILL must only
# never leave a checkpoint that resumes to other bytes (each kill costs two interpreter starts).
@pytest.mark.parametrize("scenario_file, method, kills", [
    ("very_heterogeneous.yaml", [], 3),
    # HALoS across three regions with churn: pushes and global models in flight when killed
    ("geo_distributed.yaml", ["--method", "halos", "--set", "method.hierarchy.K=4"], 1),
    # fragments and averages on their way, workers merging mid-round, with churn
    ("geo_distributed.yaml", ["--method", "streaming_diloco", "--set", "trainer.config.hidden_layers=3"], 1),
    ("geo_distributed.yaml", ["--method", "eager_diloco"], 1),
])
def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_hash(tmp_path, scenario_file, method, kills):
    exe = [sys.executable, "-m", "sim.cli"]
    scen = str(ROOT / "scenarios" / scenario_file)
    args = ["run", scen, "-q", "--checkpoint-every", "5", "--set", "schedule.t_max=6000", "--set", "trainer.config.hidden=32",
            "--set", "trainer.config.shard_size=2000", "--set", "eval.every=500", *method]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    full = subprocess.run([*exe, *args, "--out", str(tmp_path / "full")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    expected = _hash(full.stdout)
    rng = random.Random(1234)
    resumed_any = False
    for point in range(kills):
        out = tmp_path / f"k{point}"
        ckpt = tmp_path / f".k{point}.partial" / "checkpoint.pt"
        proc = subprocess.Popen([*exe, *args, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
        deadline = time.time() + 120
        while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))  # a random point after the first checkpoint
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert not (out / "summary.json").exists() or proc.returncode == 0
        again = subprocess.run([*exe, *args, "--out", str(out), "--resume"], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        resumed_any |= "resumed from server update" in again.stdout
        assert _hash(again.stdout) == expected
        assert not ckpt.exists()  # cleaned up after the complete folder was written
    assert resumed_any


def test_sigint_saves_state_and_says_how_to_continue(tmp_path):
    exe = [sys.executable, "-m", "sim.cli"]
    scen = str(ROOT / "scenarios" / "very_heterogeneous.yaml")
    args = ["run", scen, "-q", "--checkpoint-every", "50", "--set", "schedule.t_max=30000", "--set", "trainer.config.hidden=32",
            "--set", "trainer.config.shard_size=2000", "--out", str(tmp_path / "r")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([*exe, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    ckpt = tmp_path / ".r.partial" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:  # the run is under way
        time.sleep(0.05)
    first = ckpt.stat().st_mtime_ns
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err and err.strip().count("\n") == 0
    assert ckpt.stat().st_mtime_ns != first and not (tmp_path / "r").exists()  # saved again on the signal


def test_sigterm_stops_a_multi_run_sweep_in_one_line_and_every_running_run_saves_its_state(tmp_path):
    """A session or job scheduler ends a sweep with SIGTERM to its process: the runs in the pool checkpoint too."""
    exe = [sys.executable, "-m", "sim.cli"]
    scen = str(ROOT / "scenarios" / "very_heterogeneous.yaml")
    runs = tmp_path / "runs"
    args = ["sweep", scen, "-q", "-j", "2", "--grid", "seed=0,1,2", "--runs", str(runs), "--out", str(tmp_path / "s.csv"),
            "--set", "schedule.t_max=60000", "--set", "trainer.config.hidden=32", "--set", "trainer.config.shard_size=2000"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([*exe, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    deadline = time.time() + 180
    while len(list(runs.glob(".*.partial/checkpoint.pt"))) < 2 and time.time() < deadline:  # both runs under way
        time.sleep(0.1)
    first = {p: p.stat().st_mtime_ns for p in runs.glob(".*.partial/checkpoint.pt")}
    assert len(first) == 2
    proc.send_signal(signal.SIGTERM)  # to the parent only
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "run the same command again" in err and "Traceback" not in err and err.strip().count("\n") == 0
    assert all(p.stat().st_mtime_ns != t for p, t in first.items())  # each running run saved again on the signal
    assert not [p for p in runs.iterdir() if not p.name.startswith(".")]  # no run folder half-written or made
    assert not (tmp_path / "s.csv").exists()


def test_a_checkpoint_this_version_cannot_continue_is_one_line_naming_it(tmp_path):
    """An older asyncsim's checkpoint (here: eager's state without the upload counts) or another scenario's
    is refused in one line that names the file, never with a traceback."""
    from sim.checkpoint_file import Checkpointing, read_checkpoint, write_checkpoint
    from sim.errors import UserError
    from sim.runner import simulate
    from tests.helpers import scenario

    sc = scenario([1.0, 2.0], preset="eager_diloco", t_max=100)
    path = tmp_path / "checkpoint.pt"
    simulate(sc, checkpointing=Checkpointing(path, every=1))
    state = read_checkpoint(path, sc.digest())
    del state["schedule"]["averaged"]
    write_checkpoint(path, state)
    with pytest.raises(UserError, match=r"checkpoint\.pt: this asyncsim cannot continue that checkpoint \(KeyError"):
        simulate(sc, checkpointing=Checkpointing(path, resume=True))
    simulate(sc, checkpointing=Checkpointing(path, every=1))
    other = scenario([1.0, 2.0], preset="eager_diloco", t_max=100, seed=5)
    with pytest.raises(UserError, match="another scenario's checkpoint"):
        simulate(other, checkpointing=Checkpointing(path, resume=True))
