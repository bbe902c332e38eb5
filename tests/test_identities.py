"""The paper's exact identities, checked in float64 where they hold to ~1e-13."""
import torch

from sim import simulate
from tests.helpers import TINY_TOY, scenario

F64 = {**TINY_TOY, "dtype": "float64"}


def run_params(speeds, preset, **kw):
    sc = scenario(speeds, preset=preset, trainer="toy", trainer_config=F64, H=5, t_max=4 * 5 * 6, **kw)
    result = simulate(sc)
    return result.params, result


def test_dn_with_n_equal_k_matches_sync_diloco_on_homogeneous_devices():
    """Footnote 5: DN(N=k, c=0) with homogeneous workers reduces to DiLoCo."""
    homogeneous = [1.0, 1.0, 1.0, 1.0]
    dn, dn_run = run_params(homogeneous, "dn")
    diloco, diloco_run = run_params(homogeneous, "diloco")
    assert torch.allclose(dn, diloco, rtol=0, atol=1e-12), (dn - diloco).abs().max()
    assert not torch.equal(dn, run_params(homogeneous, "async_diloco")[0])  # the check can fail
    # both saw the same work at the same simulated times
    assert dn_run.summary["simulated_seconds"] == diloco_run.summary["simulated_seconds"]


def test_dn_with_huge_grace_matches_diloco_on_heterogeneous_devices():
    very = [0.58, 0.75, 1.51, 3.33]
    dn, _ = run_params(very, "dn", grace=1e9)
    diloco, _ = run_params(very, "diloco")
    assert torch.allclose(dn, diloco, rtol=0, atol=1e-12)


def test_async_diloco_differs_from_sync_even_when_homogeneous():
    """Sequential Nesterov (Eq. 5) is not one Nesterov step on the mean (Fig. 7's point)."""
    homogeneous = [1.0, 1.0, 1.0, 1.0]
    a, _ = run_params(homogeneous, "async_diloco")
    d, _ = run_params(homogeneous, "diloco")
    assert (a - d).abs().max() > 1e-6


HALOS_AS_FLAT = {"hierarchy": {"K": 1, "alpha": 0.0, "local_outer": {"name": "sgd", "lr": 1.0}}}


def test_halos_with_one_region_k1_passthrough_lps_and_alpha0_is_flat_async():
    """sim/schedules/hierarchical.py: one region, K = 1, LPS = SGD lr 1, alpha = 0 is Alg. 2 with the GPS's outer.

    Checked for both outer updates the GPS may use without reading staleness, with DyLU and without, with the
    paper's inner state and rounding (reset, floor) and with the HALoS authors' (keep, ceil) on both sides.
    """
    very = [0.58, 0.75, 1.51, 3.33]
    for outer, flat_preset, dylu, worker in [
        ({"name": "delayed_nesterov", "lr": 0.7, "momentum": 0.9, "N": "k", "c": 0.0}, "dn_dylu", True,
         {"inner_state": "reset", "dylu_rounding": "floor"}),
        ({"name": "delayed_nesterov", "lr": 0.7, "momentum": 0.9, "N": "k", "c": 0.0}, "dn_dylu", True,
         {"inner_state": "keep", "dylu_rounding": "ceil"}),
        ({"name": "nesterov", "lr": 0.7, "momentum": 0.9}, "async_diloco", False, {"inner_state": "reset"}),
    ]:
        halos, halos_run = run_params(very, "halos", dylu=dylu, method={**HALOS_AS_FLAT, "outer": outer, **worker})
        flat, flat_run = run_params(very, flat_preset, dylu=dylu, method=worker)
        assert torch.allclose(halos, flat, rtol=0, atol=1e-12), (halos - flat).abs().max()
        h, f = halos_run.metrics, flat_run.metrics
        assert list(h["t_local"]) == list(f["t_local"]) and list(h["tau"]) == list(f["tau"])
        assert (h["loss"] - f["loss"]).abs().max() < 1e-12
        ev = halos_run.events
        assert (ev["event"] == "global").sum() == (flat_run.events["event"] == "sync").sum()  # every arrival pushed
    # the check can fail: with alpha = 0.25 the LPS keeps some of its own model
    mixed = {"hierarchy": {**HALOS_AS_FLAT["hierarchy"], "alpha": 0.25}, "outer": outer, **worker}
    assert not torch.allclose(run_params(very, "halos", dylu=False, method=mixed)[0], flat, rtol=0, atol=1e-6)


AS_DILOCO = {"streaming": {"fragments": 1, "overlap": 0, "alpha": 0.0, "inner_state": "reset"}}
LINKS = [{"latency_ms": 5.0, "bandwidth_gbps": 0.01}, {"latency_ms": 30.0, "bandwidth_gbps": 0.002},
         {"latency_ms": 1.0, "bandwidth_gbps": 0.05}, {"latency_ms": 80.0, "bandwidth_gbps": 0.001}]
INGRESS = {"server_bandwidth_gbps": 0.004}


def _same_metrics(a, b):
    """The same evaluations at the same simulated times, after the same work."""
    ma, mb = a.metrics, b.metrics
    assert list(ma["t_local"]) == list(mb["t_local"]) and list(ma["server_updates"]) == list(mb["server_updates"])
    assert list(ma["tau"]) == list(mb["tau"])
    assert (ma["loss"] - mb["loss"]).abs().max() < 1e-12


def test_streaming_with_one_fragment_no_overlap_and_alpha0_is_diloco():
    """sim/schedules/streaming.py: P = 1, tau = 0, alpha = 0, inner state reset each round is Algorithm 1.

    Without a network, and with slow heterogeneous links and a shared ingress (the sync waits for the last
    upload, everyone takes the server's model): the same params and the same clock.
    """
    very = [0.58, 0.75, 1.51, 3.33]
    for extra, network in [(None, None), (LINKS, INGRESS)]:
        st, st_run = run_params(very, "streaming_diloco", method=AS_DILOCO, device_extra=extra, network=network)
        dl, dl_run = run_params(very, "diloco", device_extra=extra, network=network)
        assert torch.allclose(st, dl, rtol=0, atol=1e-12), (st - dl).abs().max()
        _same_metrics(st_run, dl_run)
        if network is not None:  # the links really took time
            assert st_run.summary["simulated_seconds"] > run_params(very, "diloco")[1].summary["simulated_seconds"]
    # the check can fail: two fragments, one step of overlap and alpha 0.5 train a different model
    other, _ = run_params(very, "streaming_diloco")
    assert (other - dl).abs().max() > 1e-6


def test_streaming_with_one_worker_and_a_pass_through_server_is_the_single_worker_run():
    """k = 1, any P, tau = 0, alpha = 0, outer SGD lr 1, inner state kept: the server just copies the worker.

    The worker then trains without interruption, its AdamW state carried across every sync: the lockstep
    1-worker baseline (finetune_1w) with k = 1, whose model is the worker's. For P = 1 the final models
    agree; for P = 2 the server's other fragment lags by up to H / P steps, so only P = 1 is compared.
    """
    method = {"streaming": {"fragments": 1, "overlap": 0, "alpha": 0.0, "inner_state": "keep"},
              "outer": {"name": "sgd", "lr": 1.0}}
    st, st_run = run_params([1.0], "streaming_diloco", method=method)
    single, single_run = run_params([1.0], "finetune_1w")
    assert torch.allclose(st, single, rtol=0, atol=1e-12), (st - single).abs().max()
    _same_metrics(st_run, single_run)
    reset, _ = run_params([1.0], "streaming_diloco", method={**method, "streaming": {**method["streaming"],
                                                                                          "inner_state": "reset"}})
    assert (reset - single).abs().max() > 1e-6  # the check can fail: a fresh AdamW every round is another run


def test_eager_with_one_worker_is_diloco():
    """sim/schedules/overlapped.py: with k = 1 the average is the worker's own share, so eager takes DiLoCo's steps.

    Without communication time it is DiLoCo, clock and all; with slow links only the clock differs (eager
    never waits for its average): the same params.
    """
    eager, eager_run = run_params([1.0], "eager_diloco")
    diloco, diloco_run = run_params([1.0], "diloco")
    assert torch.equal(eager, diloco)
    _same_metrics(eager_run, diloco_run)
    slow, slow_run = run_params([1.0], "eager_diloco", device_extra=LINKS[:1], network=INGRESS)
    waited, waited_run = run_params([1.0], "diloco", device_extra=LINKS[:1], network=INGRESS)
    assert torch.equal(slow, waited)
    assert slow_run.summary["simulated_seconds"] < waited_run.summary["simulated_seconds"]
    # the check can fail: with four workers the stand-in is not the average
    assert (run_params([1.0] * 4, "eager_diloco")[0] - run_params([1.0] * 4, "diloco")[0]).abs().max() > 1e-6


def _recorded_rounds(preset, speeds, **kw):
    """Run ``preset`` and return each worker's rounds as (model it started from, pseudo-gradient), in order."""
    from sim.build import assemble
    from sim.engine import Simulation
    from sim.executors import LazyFuture, SerialExecutor
    from sim.trainer_factory import build_trainer

    sc = scenario(speeds, preset=preset, trainer="toy", trainer_config=F64, H=5, t_max=4 * 5 * 8, **kw)
    trainer = build_trainer(sc)
    rounds = {w: [] for w in range(len(speeds))}

    def train(theta, spec, state):
        result = trainer.local_train(theta, spec, state)
        rounds[spec.worker].append((theta.clone(), result.delta.clone()))
        return result

    class Recording(SerialExecutor):
        def submit(self, theta, spec, state=None, priority=0.0):
            return LazyFuture(train, theta, spec, state)

    Simulation(assemble(sc, trainer, Recording(trainer))).run()
    return sc, rounds


def _mean(deltas):
    return torch.stack(deltas).sum(dim=0) / len(deltas)


def test_delayed_and_eager_are_their_recurrences_whatever_the_clock():
    """Kale et al. 2025, Alg. 2 and 3, replayed from the recorded pseudo-gradients (fp32 links: enc is exact).

    delayed: round t + 1 starts from x^t = Outer(x^{t-1}, Delta^{t-1}), no step after round 0;
    eager:   x_m^t = Outer_m(x_m^{t-1}, delta_m^t / k + Delta^{t-1} - delta_m^{t-1} / k).
    On heterogeneous devices with slow links and a shared ingress: the model does not depend on the clock.
    """
    from sim.outer.base import PseudoGradient
    from sim.outer.registry import construct

    very, third = [0.58, 0.75, 1.51, 3.33], {}
    for preset in ("delayed_diloco", "eager_diloco"):
        sc, rounds = _recorded_rounds(preset, very, device_extra=LINKS, network=INGRESS)
        k, n = len(very), min(len(r) for r in rounds.values())
        assert n >= 4
        averages = [_mean([rounds[w][r][1] for w in range(k)]) for r in range(n)]
        for w in range(k):
            outer, x = construct(sc.method.outer, k), rounds[w][0][0].clone()
            for r in range(n - 1):
                assert torch.equal(rounds[w][r][0], x), (preset, w, r)
                delta = rounds[w][r][1]
                if preset == "eager_diloco":
                    g = delta / k if r == 0 else delta / k + (averages[r - 1] - rounds[w][r - 1][1] / k)
                else:
                    g = None if r == 0 else averages[r - 1]
                if g is not None:
                    outer.step(x, PseudoGradient(delta=g))
        third[preset] = rounds[0][2][0]
    assert (third["eager_diloco"] - third["delayed_diloco"]).abs().max() > 1e-6  # the two rules differ


def test_eager_under_churn_averages_over_the_workers_the_average_holds():
    """Kale et al. Alg. 3 with n < k uploads in Delta^{t-1} (a device was down): eager's outer gradient is the
    average over those n workers of the worker's fresh pseudo-gradient and the others' previous ones, in float64;
    with n = k it is the paper's delta / k + Delta - delta_prev / k."""
    from sim.schedules.overlapped import Eager, Replica

    gen = torch.Generator().manual_seed(0)
    fresh, *stale = (torch.randn(50, dtype=torch.float64, generator=gen) for _ in range(5))  # stale[0]: worker 0's
    eager = Eager(scenario([1.0] * 4, preset="eager_diloco"))
    for n in (3, 4):
        eager.averaged[7] = n
        replica = Replica(outer=eager.replicas[0].outer, sent=stale[0], owes=7)
        got = eager.outer_gradient(replica, fresh, torch.stack(stale[:n]).mean(dim=0))
        assert torch.allclose(got, (fresh + torch.stack(stale[1:n]).sum(dim=0)) / n, rtol=0, atol=1e-13)
        if n == 4:
            assert torch.allclose(got, fresh / 4 + torch.stack(stale).mean(dim=0) - stale[0] / 4, rtol=0, atol=1e-13)
    first = Replica(outer=eager.replicas[0].outer)
    assert torch.equal(eager.outer_gradient(first, fresh, None), fresh * 0.25)  # no average yet: the share of k
