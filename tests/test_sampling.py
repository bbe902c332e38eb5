"""Eq. 2 (shard sampling), Eq. 3 (per-shard LR) and Eq. 6 (DyLU)."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.sampling import LRSchedule, ShardSampler, dylu_steps, is_under_sampled, shard_weights


def test_eq2_weights_exact():
    # sizes 1:1:2, dispatched 10, 0, 10 -> shares 0.25, 0.25, 0.5 vs 0.5, 0, 0.5
    w = shard_weights([100, 100, 200], [10, 0, 10])
    assert w[0] == 0 and w[2] == 0 and w[1] > 0
    # balanced or nothing dispatched: fall back to the sizes
    assert list(shard_weights([1, 1, 2], [0, 0, 0])) == [1, 1, 2]
    assert list(shard_weights([5, 5], [7, 7])) == [5, 5]


@given(st.lists(st.integers(1, 50), min_size=2, max_size=8), st.integers(0, 2**32 - 1), st.integers(1, 200))
def test_sampler_only_picks_under_sampled_shards(sizes, seed, draws):
    sampler = ShardSampler(sizes, np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    for _ in range(draws):
        before = list(sampler.dispatched)
        shard = sampler.sample()
        assert is_under_sampled(shard, sizes, before)
        sampler.record(shard, int(rng.integers(1, 5)))


def test_eq3_warmup_then_cosine():
    s = LRSchedule(lr_max=1.0, lr_min=0.1, warmup=10, total=110)
    assert s(0) == 0.0 and s(5) == pytest.approx(0.5)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 2)))
    assert s(110) == pytest.approx(0.1)
    assert s(10_000) == pytest.approx(0.1)  # overrun keeps lr_min > 0
    assert s.plan(9, 3) == (s(9), s(10), s(11))
    # T <= warmup: the ratio is kept in [0, 1] instead of dividing by zero
    assert LRSchedule(1.0, 0.1, warmup=5, total=3)(7) == pytest.approx(0.1)


def test_eq6_dylu():
    assert dylu_steps(1.0, 1.0, 50) == 50
    assert dylu_steps(0.5, 1.0, 50) == 25
    assert dylu_steps(1 / 3.33, 1 / 0.58, 50) == math.floor(0.58 / 3.33 * 50)
    assert dylu_steps(0.001, 1.0, 50) == 1  # the paper's floor would give 0: clamped


@given(st.lists(st.integers(1, 10**6), min_size=1, max_size=40), st.integers(0, 2**32 - 1))
def test_fast_draw_equals_numpy_choice_bit_for_bit(sizes, seed):
    fast = ShardSampler(sizes, np.random.default_rng(seed))
    ref_rng = np.random.default_rng(seed)
    ref_n = [0] * len(sizes)
    steps = np.random.default_rng(seed + 7)
    for _ in range(30):
        w = shard_weights(sizes, ref_n)
        expected = int(ref_rng.choice(len(w), p=w / w.sum()))
        got = fast.sample()
        assert got == expected
        add = int(steps.integers(1, 1000))
        fast.record(got, add)
        ref_n[got] += add


@given(st.integers(0, 50), st.integers(1, 500), st.integers(0, 1000), st.integers(1, 60))
def test_plan_equals_the_formula_bit_for_bit(warmup, total, start, steps):
    s = LRSchedule(lr_max=3e-4, lr_min=1e-6, warmup=warmup, total=total)
    assert s.plan(start, steps) == tuple(s(t) for t in range(start, start + steps))
