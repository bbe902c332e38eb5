"""``compute.stack``: jobs in flight trained together as one stacked pass (trainers/stacked.py, sim/executors.py).

Stacked and serial arithmetic agree to float rounding (float64: 1e-10), the
stacked mode is its own identity and deterministic run to run, a job's bits
do not depend on its stack mates (which is what lets a resumed run end with
the same bytes), and every serial run keeps its digest.
"""
from __future__ import annotations

import importlib.util

import pytest
import torch

from sim.build import assemble
from sim.engine import Simulation
from sim.executors import StackedExecutor, make_executor
from sim.records import run_hash
from sim.runner import simulate
from sim.runstate import Checkpoints
from sim.trainer_factory import build_trainer
from tests.helpers import TINY_TOY, SavedStates, scenario
from trainers.base import JobSpec
from trainers.stacked import StackedJob
from trainers.toy import ToyTrainer

VERY = [0.58, 0.75, 1.51, 3.33]
F64 = {**TINY_TOY, "dtype": "float64"}
MICRO_LM = {"size": "tiny", "layers": 1, "d_model": 64, "heads": 2, "seq_len": 32, "batch_size": 4, "device": "cpu"}


@pytest.fixture(autouse=True)
def lm_cache(tmp_path_factory, monkeypatch):
    """The session's one tokenizer cache (tests/test_lm.py)."""
    monkeypatch.setenv("ASYNCSIM_CACHE", str(tmp_path_factory.getbasetemp() / "asyncsim-cache"))


def toy_run(preset: str, stack: int, **kw):
    sc = scenario(VERY, preset=preset, trainer="toy", trainer_config=F64, H=6, t_max=240, **kw)
    return simulate(sc.model_copy(update={"compute": sc.compute.model_copy(update={"stack": stack})}))


@pytest.mark.parametrize("preset, kw", [("diloco", {}), ("async_diloco", {}), ("dn_dylu", {"grace": 0.5}),
                                         ("diloco", {"method": {"inner_state": "keep"}})])
def test_a_stacked_run_agrees_with_the_serial_run_in_float64(preset, kw):
    serial, stacked = toy_run(preset, 1, **kw), toy_run(preset, 4, **kw)
    assert torch.allclose(stacked.params, serial.params, rtol=0, atol=1e-10), (stacked.params - serial.params).abs().max()
    columns = ["event", "worker", "job", "tau", "staleness"]  # the same schedule: same jobs at the same times
    assert serial.events[columns].equals(stacked.events[columns])
    assert stacked.run_hash == toy_run(preset, 4, **kw).run_hash  # deterministic run to run


def test_the_stack_is_part_of_the_identity_and_a_serial_run_keeps_its_digest():
    sc = scenario(VERY, preset="dn_dylu", trainer="toy", trainer_config=TINY_TOY)
    assert "stack" not in sc.resolved()["compute"]  # stack 1 is left out: every earlier digest holds
    stacked = sc.model_copy(update={"compute": sc.compute.model_copy(update={"stack": 4})})
    assert stacked.resolved()["compute"]["stack"] == 4 and stacked.digest() != sc.digest()


def _jobs(theta: torch.Tensor, steps: list[int], keep: bool = False) -> list[StackedJob]:
    return [StackedJob(theta + 0.01 * w, JobSpec(worker=w, shard=w % 4, lrs=tuple(1e-2 / (1 + s) for s in range(n)),
                                                 data_offset=4 * w, keep_optimizer_state=keep))
            for w, n in enumerate(steps)]


def test_a_stack_is_a_function_of_the_waiting_jobs_alone():
    """A job's bits may depend on its place in a stack (a batched kernel's path can follow its operands' alignment),
    so the executor stacks the waiting jobs in worker order, whatever order they were submitted in."""
    trainer = ToyTrainer({**TINY_TOY, "dim": 13, "hidden": 7}, seed=0, num_shards=4)  # odd sizes
    jobs = _jobs(trainer.init_params(), [5, 3, 5, 1, 4])
    results = []
    for order in ([0, 1, 2, 3, 4], [3, 0, 4, 2, 1]):
        executor = StackedExecutor(trainer, stack=8)
        futures = {j: executor.submit(jobs[j].theta, jobs[j].spec) for j in order}
        results.append([futures[j].result().delta for j in range(5)])
    assert all(torch.equal(a, b) for a, b in zip(*results))
    direct = trainer.local_train_stacked(jobs)
    assert all(torch.equal(a, b.delta) for a, b in zip(results[0], direct))


def test_a_carried_inner_state_continues_as_the_serial_adamw_does():
    trainer = ToyTrainer(F64, seed=0, num_shards=4)
    first = _jobs(trainer.init_params(), [4, 2], keep=True)
    serial = [trainer.local_train(j.theta, j.spec) for j in first]
    stacked = trainer.local_train_stacked(first)
    for s, t in zip(serial, stacked):
        assert s.optimizer_state["state"].keys() == t.optimizer_state["state"].keys()
        for a, b in zip(s.optimizer_state["state"].values(), t.optimizer_state["state"].values()):
            assert float(a["step"]) == float(b["step"])
            assert torch.allclose(a["exp_avg_sq"], b["exp_avg_sq"], rtol=1e-12, atol=1e-20)
    second = [StackedJob(j.theta, JobSpec(worker=j.spec.worker, shard=j.spec.shard, lrs=(1e-2,) * 3, data_offset=40),
                         s.optimizer_state) for j, s in zip(first, serial)]
    for job, t in zip(second, trainer.local_train_stacked(second)):
        s = trainer.local_train(job.theta, job.spec, job.state)
        assert torch.allclose(s.delta, t.delta, rtol=0, atol=1e-12)


@pytest.mark.parametrize("micro_batch", [None, 7])  # 7 over 3 jobs: chunks of 2, 2 sequences per job
def test_the_lm_stacked_forward_agrees_with_the_module(micro_batch):
    from trainers.lm import LMTrainer

    torch.set_num_threads(1)
    trainer = LMTrainer({**MICRO_LM, "micro_batch_size": micro_batch}, seed=0, num_shards=4)
    theta = trainer._fresh_params(0)
    jobs = [StackedJob(theta, JobSpec(worker=w, shard=w, lrs=(1e-3,) * n, data_offset=0)) for w, n in enumerate([3, 1, 2])]
    together = trainer.local_train_stacked(jobs)
    for job, t in zip(jobs, together):
        s = trainer.local_train(job.theta, job.spec)
        assert abs(s.train_loss - t.train_loss) < 1e-5 * s.train_loss
        assert (s.delta - t.delta).norm() < 1e-3 * s.delta.norm()  # float32, Adam's first steps: a sign-like update


def test_a_resumed_stacked_run_ends_with_the_same_bytes():
    """Odd layer sizes, so a job's bits do depend on its place in a stack: the checkpoint's kept results matter."""
    odd = {**TINY_TOY, "dim": 13, "hidden": 7}
    sc = scenario(VERY, preset="dn_dylu", trainer="toy", trainer_config=odd, t_max=300, grace=0.5)
    sc = sc.model_copy(update={"compute": sc.compute.model_copy(update={"stack": 3})})
    expected = simulate(sc).run_hash
    saved = SavedStates()

    def fresh(checkpoints=None) -> Simulation:
        trainer = build_trainer(sc)
        return Simulation(assemble(sc, trainer, make_executor("serial", sc, trainer)), checkpoints=checkpoints)

    fresh(Checkpoints(saved, every=4)).run()
    assert len(saved) >= 3
    kept = [job for blob in saved for job in saved.load(blob, weights_only=True)["jobs"]["jobs"]]
    assert any("result" in job for job in kept) and not all("result" in job for job in kept)
    for blob in saved[1::2]:
        resumed = fresh()
        resumed.load_state_dict(saved.load(blob))
        r = resumed.run().recorder
        assert run_hash(r.metrics_frame(), r.events_frame()) == expected


def test_jobs_trained_in_a_stack_and_then_cancelled_count_as_discarded():
    trainer = ToyTrainer(TINY_TOY, seed=0, num_shards=4)
    executor = StackedExecutor(trainer, stack=8)
    theta = trainer.init_params()
    futures = [executor.submit(job.theta, job.spec) for job in _jobs(theta, [4, 3, 2])]
    futures[0].result()  # trains all three together
    assert executor.passes == 1 and executor.trained_steps == 9
    futures[2].cancel()
    waiting = executor.submit(theta, _jobs(theta, [5])[0].spec)
    waiting.cancel()  # never trained
    assert executor.discarded_steps == 2 and executor.trained_steps == 9


def test_stacks_trained_in_a_process_pool_give_the_serial_stacked_hash():
    """Two stacks of two jobs train side by side, one per process: the same stacks, so the same bits."""
    sc = scenario(VERY, preset="dn_dylu", trainer="toy", trainer_config={**TINY_TOY, "dim": 13, "hidden": 7},
                  t_max=160, grace=0.5)
    sc = sc.model_copy(update={"compute": sc.compute.model_copy(update={"stack": 2})})
    assert simulate(sc, executor="process", jobs=2).run_hash == simulate(sc).run_hash


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install 'asyncsim[ray]')")
def test_stacks_trained_as_ray_tasks_give_the_serial_stacked_hash():
    sc = scenario(VERY, preset="dn_dylu", trainer="toy", trainer_config={**TINY_TOY, "dim": 13, "hidden": 7},
                  t_max=160, grace=0.5)
    sc = sc.model_copy(update={"compute": sc.compute.model_copy(update={"stack": 2})})
    executor = make_executor("ray", sc, build_trainer(sc), jobs=2)
    try:
        assert isinstance(executor, StackedExecutor) and executor.name == "ray"
    finally:
        executor.close()
    assert simulate(sc, executor="ray", jobs=2).run_hash == simulate(sc).run_hash


def test_the_generic_vmapped_losses_match_the_toys_own_stacked_forward():
    """``vmapped_losses`` is how a user's trainer gets ``local_train_stacked`` without writing a stacked forward."""
    import torch.nn.functional as F

    from trainers.stacked import vmapped_losses
    from trainers.toy import stacked_mlp_losses

    trainer = ToyTrainer(F64, seed=0, num_shards=4)
    model = trainer._model
    params = {name: torch.stack([p.detach() + 0.01 * i for i in range(3)]) for name, p in model.named_parameters()}
    x, y = trainer._train_x[:24].view(3, 8, -1).to(torch.float64), trainer._train_y[:24].view(3, 8)
    generic = vmapped_losses(model, F.cross_entropy)(params, x, y)
    assert torch.allclose(generic, stacked_mlp_losses(model)(params, x, y), rtol=1e-12, atol=0)
