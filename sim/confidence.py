"""How sure a verdict is: spread over seeds, paired per-seed differences, the tie rule and the words for it.

The verdicts of :mod:`sim.findings` compare final metrics (lower is better)
of two groups of runs. Three things decide how much such a comparison says,
and every verdict carries them:

- **n**, the number of seeds. Below :data:`MIN_SEEDS` (3) a verdict is
  *indicative* and says so. Two groups of n runs from one distribution have
  separated seed ranges with probability 2 (n!)^2 / (2n)!: 1 for n = 1 (no
  spread at all: single values always differ), 1/3 for n = 2, 1/10 for n = 3.
- **The budget**: local steps ``t_max`` and the rounds each worker gets,
  ``t_max / (k x H)``; a few rounds say little about where training ends.
- **Pairing**: runs of two methods with the same seed share data order and
  initialisation, so the per-seed difference ``d_s = a_s - b_s`` removes the
  noise they share. Its mean gets a 95% bootstrap interval (see
  :func:`bootstrap_interval`).

The tie rule, symmetric in ``a`` and ``b``::

    tie(a, b)  <=>  [a.low <= b.high  and  b.low <= a.high]         (seed ranges overlap)
                    or  [paired  and  lo(d) <= 0 <= hi(d)]          (paired interval holds 0)

otherwise ``a`` is *lower* (better) if ``a.mean < b.mean`` and *higher*
(worse) if not. Where both ran the same seeds the second clause adds
nothing: separated ranges make every ``d_s`` the same sign, and the
interval lies within ``[min d, max d]``. It counts where the seed sets
differ (a failed run). The paired interval is still reported: it can exclude
0 where the ranges overlap (a small, consistent per-seed difference under a
wide seed-to-seed spread), which the rule, kept conservative, calls a tie.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

#: fewer seeds than this make a verdict "indicative"
MIN_SEEDS = 3
#: the bootstrap interval's coverage
LEVEL = 0.95
#: up to this many paired seeds every one of the n**n resamples is enumerated (6**6 = 46,656): exact, no RNG
EXACT_UP_TO = 6
#: beyond it, this many resamples drawn by ``numpy.random.default_rng(RNG_SEED)``: fixed, so reports are reproducible
RESAMPLES = 10_000
RNG_SEED = 0

Relation = Literal["tie", "lower", "higher"]


@dataclass
class Stat:
    """A final metric over seeds: mean, sample std (ddof = 1; 0 for one seed), range and n."""

    mean: float
    std: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        if self.n == 1:  # no spread to show: "± 0.0000" would read as a measured zero
            return f"{self.mean:.4f} (one seed)"
        return f"{self.mean:.4f} ± {self.std:.4f} (n={self.n})"


@dataclass(frozen=True)
class PairedDiff:
    """Mean of the per-seed differences a_s - b_s over the seeds both ran, and its bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int

    def contains_zero(self) -> bool:
        return self.low <= 0.0 <= self.high

    def __str__(self) -> str:
        if self.n == 1:
            return f"paired diff {signed(self.mean)}, one seed (no interval)"
        return f"paired diff {signed(self.mean)} [{signed(self.low)}, {signed(self.high)}], n = {self.n}"


@dataclass(frozen=True)
class Basis:
    """What a verdict rests on: seeds (the fewest any compared group finished) and the budget."""

    n: int
    t_max: tuple[int, ...]
    rounds_per_worker: tuple[float, ...]

    def __str__(self) -> str:
        return f"{seeds_phrase(self.n)}; {budget_phrase(self.t_max, self.rounds_per_worker)}"


def overlap(a: Stat, b: Stat) -> bool:
    """Seed ranges overlap, ``a.low <= b.high and b.low <= a.high``: the gap is inside the spread."""
    return a.low <= b.high and b.low <= a.high


def bootstrap_means(d: np.ndarray) -> np.ndarray:
    """Means of bootstrap resamples of ``d``: all ``n**n`` of them for n <= EXACT_UP_TO, else RESAMPLES seeded draws.

    Enumerating is exact and needs no RNG; the draws use a constant seed, so
    the same runs always give the same interval.
    """
    n = len(d)
    if n <= EXACT_UP_TO:
        idx = np.array(list(itertools.product(range(n), repeat=n)))
    else:
        idx = np.random.default_rng(RNG_SEED).integers(0, n, size=(RESAMPLES, n))
    return d[idx].mean(axis=1)


def bootstrap_interval(d: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(d): quantiles (1 - level) / 2 and (1 + level) / 2 of the resample means.

    Quantiles are the inverted CDF (an attained resample mean, no
    interpolation). For n <= 3 the interval is [min d, max d] (up to the
    rounding of a mean of n equal values): the resample of n copies of min d
    alone has probability n**-n >= 1/27 > 2.5%, and likewise for max d.
    """
    lo, hi = np.quantile(bootstrap_means(np.asarray(d, dtype=float)), [(1 - level) / 2, (1 + level) / 2],
                         method="inverted_cdf")
    return float(lo), float(hi)


def paired_diff(a: pd.Series, b: pd.Series) -> PairedDiff | None:
    """a - b per seed (both indexed by seed) over the seeds both have; None where they share no seed."""
    seeds = sorted(set(a.index) & set(b.index))
    if not seeds:
        return None
    d = a.loc[seeds].to_numpy(dtype=float) - b.loc[seeds].to_numpy(dtype=float)
    lo, hi = bootstrap_interval(d)
    return PairedDiff(float(d.mean()), lo, hi, len(d))


def relation(a: Stat, b: Stat, paired: PairedDiff | None = None) -> Relation:
    """``a`` against ``b`` by the tie rule of this module's docstring: "tie", "lower" (better) or "higher" (worse)."""
    if overlap(a, b) or (paired is not None and paired.contains_zero()):
        return "tie"
    return "lower" if a.mean < b.mean else "higher"


def tie_reason(a: Stat, b: Stat) -> str:
    """Which clause of the tie rule made a tie."""
    return "seed ranges overlap" if overlap(a, b) else "paired interval contains 0"


def apart(n: int) -> str:
    """How a non-tie is described: with one seed there are no ranges, only two values."""
    return "between single-seed values" if n == 1 else "outside the seed ranges"


def match_words(a: str, b: str, rel: Relation) -> str:
    """A claim that ``a`` matches ``b``, judged symmetrically: a tie is a match; better and worse are said as such."""
    if rel == "tie":
        return "match"
    if rel == "lower":
        return f"{a} better than {b}: not a match, in {a}'s favour"
    return f"{a} worse than {b}: not a match"


def seeds_phrase(n: int) -> str:
    return "one seed" if n == 1 else f"n = {n} seeds"


def _number(x: float) -> str:
    """At most two decimals, no trailing zeros: 400, 1.5, 0.38."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def signed(x: float) -> str:
    """A difference to four decimals, or in two significant digits where those would read as a signed zero."""
    return f"{x:+.1e}" if 0 < abs(x) < 5e-5 else f"{x:+.4f}"


def _span(values: tuple[float, ...]) -> str:
    """One value, or the smallest and largest of several ("80-160")."""
    lo, hi = min(values), max(values)
    return _number(lo) if lo == hi else f"{_number(lo)}-{_number(hi)}"


def budget_phrase(t_max: tuple[int, ...], rounds_per_worker: tuple[float, ...]) -> str:
    """``t_max 32000 local steps, 400 rounds per worker``; spans where an experiment sweeps the budget or k."""
    if not t_max:
        return "budget unknown"
    text = f"t_max {_span(t_max)} local steps"
    return text + (f", {_span(rounds_per_worker)} rounds per worker" if rounds_per_worker else "")


def planned_budget(plans: list[tuple[int, int, int]]) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The distinct t_max and rounds per worker, t_max / (k x H), of an experiment's runs from (t_max, k, H)."""
    return (tuple(sorted({t for t, _k, _h in plans})), tuple(sorted({t / (k * h) for t, k, h in plans})))


def qualified(verdict: str, n: int) -> str:
    """The verdict, prefixed ``indicative (n = k): `` when n < MIN_SEEDS."""
    return verdict if n >= MIN_SEEDS else f"indicative (n = {n}): {verdict}"


def verdict_line(verdict: str, basis: Basis) -> str:
    """The report's verdict line: the (qualified) verdict in bold, then seeds and budget."""
    return f"**{qualified(verdict, basis.n)}** ({basis})"
