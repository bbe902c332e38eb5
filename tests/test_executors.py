"""Executors change speed, never bytes: serial, process and ray give one run hash."""
import importlib.util

import pytest

from sim import simulate
from tests.helpers import TINY_TOY, scenario

VERY = [0.58, 0.75, 1.51, 3.33]


def toy(preset="dn_dylu"):
    return scenario(VERY, preset=preset, trainer="toy", trainer_config=TINY_TOY, t_max=400, eval_every=100, jitter=0.1)


@pytest.mark.parametrize("preset", ["dn_dylu", "diloco", "finetune_1w", "async_delaycomp"])
def test_process_pool_gives_the_serial_hash(preset):
    sc = toy(preset)
    assert simulate(sc, executor="process", jobs=2).run_hash == simulate(sc).run_hash


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install 'asyncsim[ray]')")
def test_ray_gives_the_serial_hash():
    sc = toy()
    assert simulate(sc, executor="ray", jobs=2).run_hash == simulate(sc).run_hash


def test_unknown_executor_is_rejected():
    with pytest.raises(ValueError, match="unknown executor"):
        simulate(toy(), executor="gpu-farm")


def test_pool_processes_exit_when_their_parent_is_killed(tmp_path):
    """A killed compare must not leave orphans training on."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "sim.cli", "compare", str(root / "scenarios" / "very_heterogeneous.yaml"), "--methods",
           "diloco,dn", "--set", "schedule.t_max=50000", "--set", "trainer.config.hidden=32", "-j", "2", "--name", "o"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(root)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kids: list[str] = []
    deadline = time.time() + 60
    while len(kids) < 2 and time.time() < deadline:
        time.sleep(0.2)
        kids = [k for k in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
                if "spawn_main" in Path(f"/proc/{k}/cmdline").read_text(errors="replace")]
    assert len(kids) >= 2
    time.sleep(3)  # let them start work
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    def running(pid: str) -> bool:
        try:
            state = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z"  # a zombie has exited; only its parent's reaping is left

    deadline = time.time() + 30
    while any(running(k) for k in kids) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(running(k) for k in kids)


def test_process_executor_starts_waiting_jobs_by_priority_and_skips_cancelled_ones():
    """One process: the first job runs at once; of those waiting, the lowest priority starts next."""
    from sim.executors import ProcessExecutor
    from sim.trainer_factory import build_trainer
    from trainers.base import JobSpec

    sc = scenario([1.0], preset="async_sgd", trainer_config={"dim": 4})
    theta = build_trainer(sc).init_params()
    executor = ProcessExecutor(sc, build_trainer, jobs=1)
    finished: list[int] = []  # list.append is atomic: safe from the pool's callback thread
    try:
        futures = {}
        for worker, priority in ((0, 0.0), (1, 5.0), (2, 1.0), (3, 3.0)):
            spec = JobSpec(worker=worker, shard=0, lrs=(0.1,) * 3, data_offset=0)
            futures[worker] = executor.submit(theta, spec, priority=priority)
        assert futures[3].cancel()  # still waiting: never computed
        for worker, future in futures.items():
            if worker != 3:
                future.add_done_callback(lambda f, w=worker: finished.append(w))
        for worker in (0, 1, 2):
            assert futures[worker].result(timeout=120).delta.shape == theta.shape
    finally:
        executor.close()
    assert finished == [0, 2, 1]
