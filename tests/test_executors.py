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
