"""Verdicts say how sure they are: seeds and budget beside each, "indicative" below 3 seeds, a symmetric match rule
and a paired bootstrap interval where two methods ran the same seeds (issue 26). Hand-made numbers, float-exact."""
from __future__ import annotations

import numpy as np
import pandas as pd

from sim.confidence import (Basis, PairedDiff, Stat, bootstrap_interval, match_words, paired_diff, planned_budget,
                            qualified, relation, verdict_line)
from sim.findings import Results, c_makes_little_difference, dn_dylu_matches_diloco, holds_across_model_sizes, verdict
from sim.findings_table import short


def stat(mean: float, half: float = 0.01, n: int = 3) -> Stat:
    return Stat(mean, half, mean - half, mean + half, n)


def test_one_seed_is_indicative_and_shows_no_zero_spread():
    line = verdict_line("not reproduced: gap +0.0008 between single-seed values", Basis(1, (120,), (1.5,)))
    assert line == ("**indicative (n = 1): not reproduced: gap +0.0008 between single-seed values** "
                    "(one seed; t_max 120 local steps, 1.5 rounds per worker)")
    assert str(Stat(1.2, 0.0, 1.2, 1.2, 1)) == "1.2000 (one seed)"
    assert str(PairedDiff(-0.5, -0.5, -0.5, 1)) == "paired diff -0.5000, one seed (no interval)"
    assert qualified("reproduced", 2) == "indicative (n = 2): reproduced" and qualified("reproduced", 3) == "reproduced"


def test_verdict_text_carries_seeds_and_budget():
    assert verdict_line("reproduced", Basis(3, (32000,), (400.0,))) == (
        "**reproduced** (n = 3 seeds; t_max 32000 local steps, 400 rounds per worker)")
    # a sweep over k (or the budget) gives spans; t_max / (k x H)
    t_max, rounds = planned_budget([(32000, 4, 20), (32000, 8, 20), (32000, 16, 20)])
    assert (t_max, rounds) == ((32000,), (100.0, 200.0, 400.0))
    assert str(Basis(3, t_max, rounds)) == "n = 3 seeds; t_max 32000 local steps, 100-400 rounds per worker"
    assert str(Basis(3, (), ())) == "n = 3 seeds; budget unknown"


def test_match_is_symmetric_both_directions():
    low, high, near = stat(1.0), stat(1.1), stat(1.005)
    assert relation(low, high) == "lower" and relation(high, low) == "higher"
    assert relation(low, near) == relation(near, low) == "tie"
    assert match_words("dn_dylu", "diloco", relation(low, high)) == (
        "dn_dylu better than diloco: not a match, in dn_dylu's favour")
    assert match_words("dn_dylu", "diloco", relation(high, low)) == "dn_dylu worse than diloco: not a match"
    assert match_words("dn_dylu", "diloco", relation(near, low)) == "match"
    # separated seed ranges, but a paired interval (on the seeds both finished) that holds 0: a tie, said why
    assert verdict(low, high, PairedDiff(-0.05, -0.125, 0.25, 2)) == "tie (paired interval contains 0)"


class Fake:
    """Final metrics by (method, sweep); every heterogeneous level equally fast for DN + DyLU."""

    def __init__(self, finals: dict) -> None:
        self.finals, self.metric = finals, "loss"

    def final(self, exp, method, sweep=""):
        return self.finals[(method, sweep)]

    def paired(self, *args, **kwargs):
        return None

    def initial(self, exp, method, sweep=""):
        return 2.0

    def time_to(self, exp, method, target, sweep=""):
        return 10.0 if method == "dn_dylu" else 30.0

    def seconds(self, exp, method, sweep=""):
        return 20.0 if method == "dn_dylu" else 60.0

    def sweep_values(self, exp):
        return ["48", "64"]


def test_dn_dylu_better_than_diloco_is_no_match_and_is_said_in_its_favour():
    from sim import compare as cmp

    fleets = [cmp.FLEET_ALIASES[lvl] for lvl in ("no", "slight", "moderate", "very")]
    for dn, word in ((1.0, "better"), (1.2, "worse")):  # the old rule counted "better" as a match
        f = dn_dylu_matches_diloco(Fake({(m, fl): stat(dn if m == "dn_dylu" else 1.1) for m in ("diloco", "dn_dylu")
                                         for fl in fleets}))
        assert f.verdict.startswith("not reproduced at every level: no: dn_dylu " + word + " than diloco: not a match")
        assert f.experiment == "heterogeneity"
    assert "in dn_dylu's favour (per update)" in dn_dylu_matches_diloco(
        Fake({(m, fl): stat(1.0 if m == "dn_dylu" else 1.1) for m in ("diloco", "dn_dylu") for fl in fleets})).verdict
    tie = Fake({(m, fl): stat(1.1) for m in ("diloco", "dn_dylu") for fl in fleets})
    assert dn_dylu_matches_diloco(tie).verdict == "reproduced"


def test_model_sizes_close_means_a_tie_not_better():
    finals = {("diloco", s): stat(1.1) for s in ("48", "64")} | {("async_diloco", s): stat(1.5) for s in ("48", "64")}
    better = holds_across_model_sizes(Fake(finals | {("dn_dylu", "48"): stat(1.1), ("dn_dylu", "64"): stat(1.0)}))
    assert better.verdict == "partly reproduced: size 64: dn_dylu better than diloco: not a match, in dn_dylu's favour"
    same = holds_across_model_sizes(Fake(finals | {("dn_dylu", s): stat(1.1) for s in ("48", "64")}))
    assert same.verdict == "reproduced"


def test_c_on_one_seed_names_single_values_not_seed_ranges():
    f = c_makes_little_difference(Fake({("dn_dylu", "0.0"): Stat(1.25, 0.0, 1.25, 1.25, 1),
                                        ("dn_dylu", "0.1"): Stat(1.5, 0.0, 1.5, 1.5, 1)}))
    assert f.verdict == "not reproduced: gap +0.2500 between single-seed values"
    assert f.evidence == ["c=0: 1.2500 (one seed); c=0.1: 1.5000 (one seed)"] and "± 0.0000" not in f.evidence[0]
    tiny = c_makes_little_difference(Fake({("dn_dylu", "0.0"): Stat(1.25, 0.0, 1.25, 1.25, 1),
                                           ("dn_dylu", "0.1"): Stat(1.25 + 2**-16, 0.0, 1.25 + 2**-16, 1.25 + 2**-16, 1)}))
    assert tiny.verdict == "not reproduced: gap +1.5e-05 between single-seed values"  # not "+0.0000"


def test_paired_interval_small_n_is_exact_enumeration():
    # n <= 3: [min d, max d] (n copies of the minimum alone have probability 1/27 > 2.5%)
    assert bootstrap_interval(np.array([-0.25, -0.125, -0.5])) == (-0.5, -0.125)
    # n = 4, d = 0, 1, 2, 3: the resample sum S of 4 draws from {0..3}; P(S <= 1) = 5/256 < 2.5% <= P(S <= 2) = 15/256,
    # so the 2.5% quantile of the mean is 2/4, and by symmetry the 97.5% one is 10/4
    assert bootstrap_interval(np.array([0.0, 1.0, 2.0, 3.0])) == (0.5, 2.5)


def test_paired_interval_large_n_is_seeded_and_repeatable():
    d = np.arange(8, dtype=float) - 3.0
    first, second = bootstrap_interval(d), bootstrap_interval(d)
    assert first == second and d.min() < first[0] < d.mean() < first[1] < d.max()


def test_paired_difference_from_a_runs_table_uses_the_seeds_both_finished():
    res = Results()
    res.runs["x"] = pd.DataFrame({
        "method": ["a"] * 4 + ["b"] * 4, "sweep": [""] * 8, "seed": [0, 1, 2, 3] * 2,
        "status": ["finished"] * 7 + ["failed"],
        "final_loss": [1.0, 1.25, 1.5, 9.0, 1.5, 1.5, 2.0, 0.0],
    })
    p = res.paired("x", "a", "b")
    assert p == PairedDiff(-1.25 / 3, -0.5, -0.25, 3)  # d = -0.5, -0.25, -0.5 on seeds 0-2; seed 3 failed for b
    assert str(p) == "paired diff -0.4167 [-0.5000, -0.2500], n = 3"
    assert paired_diff(pd.Series([1.0], index=[0]), pd.Series([1.0], index=[5])) is None
    res.budgets["x"] = ((160,), (2.0,))
    assert str(res.basis("x")) == "n = 3 seeds; t_max 160 local steps, 2 rounds per worker"  # b finished 3 of 4


def test_the_findings_table_reads_indicative_verdicts():
    assert short("indicative (n = 1): partly reproduced: poly helps") == "partly (indicative)"
    assert short("indicative (n = 2): reproduced") == "reproduced (indicative)"
    assert short("not reproduced at every level") == "not" and short("reproduced") == "reproduced"


def test_no_real_advantage_at_any_k_is_said_plainly():
    from sim.findings import advantage_trend

    assert advantage_trend([4, 8, 16], [0.0004, -0.0002, -0.0001], [False] * 3) == (
        "advantage by k: +0.0004, -0.0002, -0.0001: beyond the evidence at no k, so no trend is claimed")
