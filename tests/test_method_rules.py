"""Small exact checks of the method rules that mutation testing found unpinned (issue 22, reports/notes/mutants.txt)."""
from __future__ import annotations

import pytest
import torch

from sim.outer import PseudoGradient
from sim.outer.adam import Adam
from sim.outer.async_buffer import AsyncBuffer
from sim.outer.delay_comp import DelayCompensation
from sim.outer.poly import Poly, poly_weight
from sim.outer.polythres import PolyThres
from sim.outer.registry import construct
from sim.outer.sgd import SGD
from sim.outer.sgdm import SGDMomentum
from sim.outer.work import Work
from sim.sampling import is_under_sampled


def pg(*v, staleness=0):
    return PseudoGradient(torch.tensor(v, dtype=torch.float64), staleness=staleness)


@pytest.mark.parametrize("spec, expected", [
    ({"name": "adam"}, {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}),  # torch's betas and eps
    ({"name": "nesterov"}, {"lr": 0.7, "momentum": 0.9}),  # the paper's outer lr and momentum
    ({"name": "sgdm"}, {"lr": 0.7, "momentum": 0.9}),
    ({"name": "sgd"}, {"lr": 0.7}),
    ({"name": "async_buffer"}, {"lr": 0.7, "momentum": 0.9, "N": 4}),
])
def test_an_outer_update_named_alone_gets_its_documented_defaults(spec, expected):
    outer = construct(spec, k=4)
    assert {key: getattr(outer, key) for key in expected} == expected


@pytest.mark.parametrize("spec, expected", [
    ({"name": "poly"}, {"exponent": 0.5, "weight": 1.0}),  # the paper's Poly
    ({"name": "polythres"}, {"exponent": 0.5, "weight": 1.0, "threshold": 10}),
    ({"name": "delay_comp"}, {"lam": 0.5}),
])
def test_a_fix_named_alone_gets_its_documented_defaults(spec, expected):
    fix = construct(spec, k=4, base=SGD(lr=1.0))
    assert {key: getattr(fix, key) for key in expected} == expected


def test_poly_weight_defaults_to_one():
    assert poly_weight(3, 0.5) == 0.5  # (1 + 3)^-0.5


@pytest.mark.parametrize("outer", [Adam(lr=0.1), SGDMomentum(lr=0.1), AsyncBuffer(N=2), SGD(lr=0.1)])
def test_every_arrival_is_applied_not_dropped(outer):
    theta = torch.zeros(2, dtype=torch.float64)
    assert [outer.step(theta, pg(1.0, -2.0)) for _ in range(3)] == [True, True, True]
    assert set(outer.state_tensors()) <= {"m", "v", "delta_sum"}  # the names checkpoints carry


def test_adam_first_step_is_lr_times_the_sign_and_keeps_m_and_v_apart():
    a, theta = Adam(lr=0.1), torch.zeros(2, dtype=torch.float64)
    a.step(theta, pg(1.0, -2.0))  # m_hat = g, v_hat = g^2: theta = -lr g / (|g| + eps)
    assert torch.equal(theta, torch.tensor([-0.1 * 1.0 / (1.0 + 1e-8), 0.1 * 2.0 / (2.0 + 1e-8)], dtype=torch.float64))
    assert sorted(a.state_tensors()) == ["m", "v"]
    assert torch.allclose(a.state["m"], torch.tensor([0.1, -0.2], dtype=torch.float64), rtol=0, atol=1e-15)
    assert torch.allclose(a.state["v"], torch.tensor([0.001, 0.004], dtype=torch.float64), rtol=0, atol=1e-15)


def test_async_buffer_steps_every_n_arrivals_and_starts_counting_again():
    buf, theta = AsyncBuffer(lr=0.5, momentum=0.9, N=2), torch.zeros(1, dtype=torch.float64)
    seen = []
    for _ in range(4):
        buf.step(theta, pg(1.0))
        seen.append(theta.item())
    # Eq. 4 on the buffer's mean 1: m = 1, theta -= 0.5 (1 + 0.9); then m = 1.9, theta -= 0.5 (1 + 0.9 * 1.9)
    assert seen == [0.0, -0.95, -0.95, -0.95 - 0.5 * (1 + 0.9 * 1.9)]
    assert buf.count == 0 and sorted(buf.state_tensors()) == ["delta_sum", "m"]
    AsyncBuffer(N=1)  # one arrival per step is allowed
    with pytest.raises(ValueError, match="N must be >= 1, got 0"):
        AsyncBuffer(N=0)


def test_polythres_keeps_staleness_equal_to_the_threshold_and_passes_exponent_and_weight():
    fix, theta = PolyThres(SGD(lr=1.0), exponent=2.0, weight=3.0, threshold=3), torch.zeros(1, dtype=torch.float64)
    assert fix.step(theta, pg(1.0, staleness=3)) is True
    assert theta.item() == -3.0 / 16.0  # 3 (1 + 3)^-2
    assert fix.step(theta, pg(1.0, staleness=4)) is False and theta.item() == -3.0 / 16.0


def test_a_fix_inherits_what_its_base_needs_and_restores_its_nested_state():
    assert Poly(Work(SGD())).needs_work is True and Poly(Work(SGD())).needs_dispatch_theta is False
    assert Poly(DelayCompensation(SGD())).needs_dispatch_theta is True and Poly(SGD()).needs_work is False
    fix = DelayCompensation(SGDMomentum(lr=0.5), lam=0.25)
    theta = torch.zeros(1, dtype=torch.float64)
    fix.step(theta, PseudoGradient(torch.tensor([2.0], dtype=torch.float64), theta_at_dispatch=torch.tensor([1.0], dtype=torch.float64)))
    state = fix.state_dict()
    assert isinstance(state["base"], dict) and torch.equal(state["base"]["state"]["m"], torch.tensor([1.0], dtype=torch.float64))
    fresh = DelayCompensation(SGDMomentum(lr=0.5), lam=0.25)
    fresh.load_state_dict(state)
    assert isinstance(fresh.base, SGDMomentum) and torch.equal(fresh.base.state["m"], torch.tensor([1.0], dtype=torch.float64))


def test_under_sampled_before_anything_is_dispatched_and_by_exact_shares():
    assert is_under_sampled(0, [1, 3], [0, 0])
    assert is_under_sampled(0, [1, 3], [1, 3]) and is_under_sampled(1, [1, 3], [1, 3])  # exactly at share
    assert not is_under_sampled(0, [1, 3], [2, 3]) and is_under_sampled(1, [1, 3], [2, 3])
    assert not is_under_sampled(0, [1, 1], [1, 0])  # one example dispatched: shard 0 holds all of it
