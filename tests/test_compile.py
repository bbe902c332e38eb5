"""``compute.compile``: local training through ``torch.compile`` of the LM (trainers/lm.py, sim/build.py).

Compiled kernels round differently from eager ones, so the mode is part of
the run's identity (and left out when off, so every earlier digest holds); a
compiled job agrees with the eager one to float32 rounding and repeats bit
for bit; a trainer without a compiled mode is one clear error.
"""
from __future__ import annotations

import pytest
import torch

from sim.errors import FieldError
from sim.trainer_factory import build_trainer
from tests.helpers import TINY_TOY, scenario
from trainers.base import JobSpec
from trainers.stacked import StackedJob

VERY = [0.58, 0.75, 1.51, 3.33]
ONE_LAYER_LM = {"size": "tiny", "layers": 1, "d_model": 32, "heads": 2, "seq_len": 16, "batch_size": 4, "device": "cpu"}


@pytest.fixture(autouse=True)
def lm_cache(tmp_path_factory, monkeypatch):
    """The session's one tokenizer cache (tests/test_lm.py)."""
    monkeypatch.setenv("ASYNCSIM_CACHE", str(tmp_path_factory.getbasetemp() / "asyncsim-cache"))


def with_compile(sc, on: bool = True):
    return sc.model_copy(update={"compute": sc.compute.model_copy(update={"compile": on})})


def test_compile_is_part_of_the_identity_and_off_keeps_every_digest():
    sc = scenario(VERY, preset="dn_dylu", trainer="toy", trainer_config=TINY_TOY)
    assert "compile" not in sc.resolved()["compute"]
    compiled = with_compile(sc)
    assert compiled.resolved()["compute"]["compile"] is True and compiled.digest() != sc.digest()


def test_a_trainer_without_a_compiled_mode_names_the_field():
    sc = with_compile(scenario(VERY, preset="diloco", trainer="toy", trainer_config=TINY_TOY))
    with pytest.raises(FieldError, match="compute.compile"):
        build_trainer(sc)


def test_a_compiled_lm_job_agrees_with_eager_and_repeats_bit_for_bit():
    from trainers.lm import LMTrainer

    torch.set_num_threads(1)
    eager, compiled = (LMTrainer(ONE_LAYER_LM, seed=0, num_shards=4) for _ in range(2))
    compiled.compile_model()
    theta = eager._fresh_params(0)
    spec = JobSpec(worker=1, shard=1, lrs=(1e-3,) * 5, data_offset=3)
    e, c = eager.local_train(theta, spec), compiled.local_train(theta, spec)
    assert abs(e.train_loss - c.train_loss) < 1e-5 * e.train_loss
    assert 0 < (e.delta - c.delta).norm() < 1e-3 * e.delta.norm()  # other kernels, other last bits
    assert torch.equal(compiled.local_train(theta, spec).delta, c.delta)  # deterministic run to run
    # the stacked pass compiles too, and agrees with its eager twin
    jobs = [StackedJob(theta, JobSpec(worker=w, shard=w, lrs=(1e-3,) * n, data_offset=0)) for w, n in enumerate([3, 1])]
    for s, t in zip(eager.local_train_stacked(jobs), compiled.local_train_stacked(jobs)):
        assert (s.delta - t.delta).norm() < 1e-3 * s.delta.norm()
