"""Each outer update against a step computed by hand on small vectors."""
import pytest
import torch

from sim.outer import OUTER_UPDATES, PseudoGradient, resolve
from sim.outer.adam import Adam
from sim.outer.async_buffer import AsyncBuffer
from sim.outer.delay_comp import DelayCompensation
from sim.outer.delayed_nesterov import DelayedNesterov
from sim.outer.nesterov import Nesterov
from sim.outer.poly import Poly
from sim.outer.polythres import PolyThres
from sim.outer.sgd import SGD
from sim.outer.sgdm import SGDMomentum

T = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731


def pg(*v, staleness=0, theta0=None):
    return PseudoGradient(delta=T(*v), staleness=staleness, theta_at_dispatch=theta0)


def test_sgd():
    theta = T(1.0, 2.0)
    SGD(lr=0.5).step(theta, pg(0.2, -0.4))
    assert torch.equal(theta, T(0.9, 2.2))


def test_sgd_momentum_is_heavy_ball():
    theta, opt = T(1.0), SGDMomentum(lr=0.1, momentum=0.5)
    opt.step(theta, pg(1.0))  # m = 1, theta = 1 - 0.1
    opt.step(theta, pg(1.0))  # m = 1.5, theta = 0.9 - 0.15
    assert theta.item() == pytest.approx(0.75, abs=1e-15)


def test_nesterov_matches_eq4_and_torch():
    beta, lr = 0.9, 0.7
    theta, opt = T(1.0, -1.0), Nesterov(lr=lr, momentum=beta)
    grads = [T(0.3, 0.1), T(-0.2, 0.5), T(0.05, 0.05)]
    m = torch.zeros(2, dtype=torch.float64)
    expected = T(1.0, -1.0)
    for g in grads:
        expected = expected - lr * (beta**2 * m + (1 + beta) * g)  # Eq. 4 as printed
        m = beta * m + g
        opt.step(theta, PseudoGradient(delta=g))
    assert torch.allclose(theta, expected, atol=1e-15)
    # and torch's own SGD(nesterov=True) agrees
    p = torch.nn.Parameter(T(1.0, -1.0))
    ref = torch.optim.SGD([p], lr=lr, momentum=beta, nesterov=True)
    for g in grads:
        p.grad = g.clone()
        ref.step()
    assert torch.allclose(theta, p.detach(), atol=1e-15)


def test_sequential_nesterov_matches_eq5():
    """k=4 identical pseudo-gradients applied in sequence (the paper's Eq. 5)."""
    beta, lr = 0.8, 0.3
    g, m0 = T(0.5, -0.25), T(0.1, 0.2)
    opt = Nesterov(lr=lr, momentum=beta)
    opt.buffer("m", m0).copy_(m0)
    theta = T(1.0, 1.0)
    for _ in range(4):
        opt.step(theta, PseudoGradient(delta=g))
    m_expected = beta**4 * m0 + (1 + beta + beta**2 + beta**3) * g
    theta_expected = T(1.0, 1.0) - lr * (
        (4 + 4 * beta + 3 * beta**2 + 2 * beta**3 + beta**4) * g + beta**2 * (1 + beta + beta**2 + beta**3) * m0
    )
    assert torch.allclose(opt.state["m"], m_expected, atol=1e-14)
    assert torch.allclose(theta, theta_expected, atol=1e-14)


def test_adam_matches_torch():
    theta, opt = T(1.0, -2.0), Adam(lr=0.01, beta1=0.9, beta2=0.99, eps=1e-8)
    p = torch.nn.Parameter(T(1.0, -2.0))
    ref = torch.optim.Adam([p], lr=0.01, betas=(0.9, 0.99), eps=1e-8)
    for g in (T(0.3, -0.1), T(0.2, 0.4), T(-0.5, 0.0)):
        opt.step(theta, PseudoGradient(delta=g))
        p.grad = g.clone()
        ref.step()
    assert torch.allclose(theta, p.detach(), atol=1e-14)


def test_delayed_nesterov_algorithm3_by_hand():
    lr, beta, N, c = 0.5, 0.9, 2, 0.25
    theta, opt = T(1.0), DelayedNesterov(lr=lr, momentum=beta, N=N, c=c)
    opt.step(theta, pg(0.2))  # t=0: no momentum update; theta -= lr*(c*beta*0 + 0.2/2)
    assert theta.item() == pytest.approx(1 - 0.5 * 0.1)
    opt.step(theta, pg(0.4))  # t=1: m = 0 + (0.6)/2 = 0.3; theta -= lr*((1-cN+c)*beta*m + 0.4/2)
    after2 = 1 - 0.05 - 0.5 * ((1 - 0.5 + 0.25) * 0.9 * 0.3 + 0.2)
    assert theta.item() == pytest.approx(after2, abs=1e-15)
    assert opt.state["m"].item() == pytest.approx(0.3)
    opt.step(theta, pg(0.1))  # t=2: theta -= lr*(c*beta*m + 0.1/2), momentum held
    assert theta.item() == pytest.approx(after2 - 0.5 * (0.25 * 0.9 * 0.3 + 0.05), abs=1e-15)
    assert opt.state["m"].item() == pytest.approx(0.3)


def test_delayed_nesterov_with_n_equal_k_is_one_nesterov_step_on_the_mean():
    grads = [T(0.3, -0.2), T(0.1, 0.4), T(-0.05, 0.2), T(0.2, 0.0)]
    dn_theta, dn = T(1.0, 2.0), DelayedNesterov(lr=0.7, momentum=0.9, N=4, c=0.0)
    nv_theta, nv = T(1.0, 2.0), Nesterov(lr=0.7, momentum=0.9)
    for _round in range(3):
        for g in grads:
            dn.step(dn_theta, PseudoGradient(delta=g))
        nv.step(nv_theta, PseudoGradient(delta=sum(grads) / 4))
        assert torch.allclose(dn_theta, nv_theta, atol=1e-14)


def test_delayed_nesterov_rejects_c_outside_algorithm3_range():
    with pytest.raises(ValueError, match=r"\[0, 1/N\]"):
        DelayedNesterov(N=16, c=0.1)


def test_async_buffer_moves_only_every_n():
    theta, opt = T(1.0), AsyncBuffer(lr=0.5, momentum=0.9, N=3)
    opt.step(theta, pg(0.3))
    opt.step(theta, pg(0.6))
    assert theta.item() == 1.0
    opt.step(theta, pg(0.9))  # mean 0.6; m = 0.6; theta -= 0.5*(0.6 + 0.9*0.6)
    assert theta.item() == pytest.approx(1 - 0.5 * (0.6 + 0.54), abs=1e-15)


def test_poly_weights_by_staleness():
    theta = T(1.0)
    Poly(SGD(lr=1.0), exponent=0.5).step(theta, pg(0.6, staleness=3))  # (1+3)^-0.5 = 0.5
    assert theta.item() == pytest.approx(0.7, abs=1e-15)
    theta = T(1.0)
    Poly(SGD(lr=1.0), exponent=0.0, weight=0.25).step(theta, pg(0.8, staleness=7))  # constant soup weight
    assert theta.item() == pytest.approx(0.8, abs=1e-15)


def test_polythres_drops_stale_updates():
    theta, opt = T(1.0), PolyThres(SGD(lr=1.0), exponent=0.5, threshold=10)
    assert opt.step(theta, pg(0.5, staleness=11)) is False
    assert theta.item() == 1.0
    assert opt.step(theta, pg(0.5, staleness=0)) is True
    assert theta.item() == pytest.approx(0.5)


def test_delay_compensation_taylor_term():
    theta, theta0 = T(1.0, 2.0), T(0.5, 2.5)
    opt = DelayCompensation(SGD(lr=1.0), lam=2.0)
    assert opt.needs_dispatch_theta
    g = T(0.1, -0.2)
    opt.step(theta, PseudoGradient(delta=g, staleness=2, theta_at_dispatch=theta0))
    corrected = g + 2.0 * g * g * (T(1.0, 2.0) - theta0)
    assert torch.allclose(theta, T(1.0, 2.0) - corrected, atol=1e-15)


def test_registry_names_and_import_paths():
    assert set(OUTER_UPDATES) >= {"sgd", "sgdm", "nesterov", "adam", "delayed_nesterov", "async_buffer", "poly", "polythres", "delay_comp"}
    assert resolve("sim.outer.sgd:SGD") is SGD
    with pytest.raises(ValueError, match="unknown outer update"):
        resolve("nope")
    with pytest.raises(ValueError, match="not a subclass"):
        resolve("math:sqrt")


def test_work_weight_scales_each_arrival_by_its_share_of_the_work():
    """sim/outer/work.py: g <- (s / H) g, or (k s / sum_w s_w) g; a base update sees the scaled pseudo-gradient."""
    import torch

    from sim.outer.base import OuterUpdate, PseudoGradient, Work as Steps
    from sim.outer.work import Work

    class Seen(OuterUpdate):
        def __init__(self):
            self.seen = []

        def step(self, theta, grad):
            self.seen.append(grad.delta.clone())
            return True

    g = torch.tensor([1.0, -2.0], dtype=torch.float64)
    for reference, expected in (("H", 8 / 50), ("fleet", 4 * 8 / (50 + 38 + 19 + 8))):
        base = Seen()
        Work(base, reference=reference).step(torch.zeros(2, dtype=torch.float64),
                                             PseudoGradient(delta=g, work=Steps(8, 50, 50 + 38 + 19 + 8, 4)))
        assert torch.equal(base.seen[0], g * expected)
    assert Work(Seen()).needs_work and not Seen().needs_work


def test_work_weight_with_equal_step_counts_is_the_unweighted_run_bit_for_bit():
    """The identity: without DyLU every round has H steps, both weights are exactly 1 (float64, heterogeneous)."""
    import torch

    from sim import simulate
    from tests.helpers import TINY_TOY, scenario

    f64 = {**TINY_TOY, "dtype": "float64"}
    very = [0.58, 0.75, 1.51, 3.33]
    plain = simulate(scenario(very, preset="dn", trainer="toy", trainer_config=f64, H=5, t_max=120)).params
    for reference in ("H", "fleet"):
        weighted = simulate(scenario(very, preset="dn", trainer="toy", trainer_config=f64, H=5, t_max=120,
                                     method={"fix": {"name": "work", "reference": reference}})).params
        assert torch.equal(weighted, plain)
    dylu = simulate(scenario(very, preset="dn_dylu", trainer="toy", trainer_config=f64, H=5, t_max=120)).params
    dylu_weighted = simulate(scenario(very, preset="dn_dylu", trainer="toy", trainer_config=f64, H=5, t_max=120,
                                      method={"fix": {"name": "work"}})).params
    assert not torch.equal(dylu, dylu_weighted)  # the check can fail: with DyLU the weights differ from 1
