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

    Checked for both outer updates the GPS may use without reading staleness, with DyLU and without.
    """
    very = [0.58, 0.75, 1.51, 3.33]
    for outer, flat_preset, dylu in [({"name": "delayed_nesterov", "lr": 0.7, "momentum": 0.9, "N": "k", "c": 0.0},
                                      "dn_dylu", True),
                                     ({"name": "nesterov", "lr": 0.7, "momentum": 0.9}, "async_diloco", False)]:
        halos, halos_run = run_params(very, "halos", dylu=dylu, method={**HALOS_AS_FLAT, "outer": outer})
        flat, flat_run = run_params(very, flat_preset, dylu=dylu)
        assert torch.allclose(halos, flat, rtol=0, atol=1e-12), (halos - flat).abs().max()
        h, f = halos_run.metrics, flat_run.metrics
        assert list(h["t_local"]) == list(f["t_local"]) and list(h["tau"]) == list(f["tau"])
        assert (h["loss"] - f["loss"]).abs().max() < 1e-12
        ev = halos_run.events
        assert (ev["event"] == "global").sum() == (flat_run.events["event"] == "sync").sum()  # every arrival pushed
    # the check can fail: with alpha = 0.25 the LPS keeps some of its own model
    mixed = {"hierarchy": {**HALOS_AS_FLAT["hierarchy"], "alpha": 0.25}, "outer": outer}
    assert not torch.allclose(run_params(very, "halos", dylu=False, method=mixed)[0], flat, rtol=0, atol=1e-6)
