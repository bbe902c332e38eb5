"""The paper's findings as code: statistics over seeds, and one verdict function per finding.

Each finding compares final metrics (mean and spread over seeds) or
time-to-quality of the runs :mod:`sim.reproduce` planned, so a committed
report says "reproduced", "partly reproduced" or "not reproduced" with the
numbers behind it. Gaps whose seed ranges overlap are ties: float32 noise
alone moves the toy's final loss by ~0.004 between mathematically identical
runs. How sure each verdict is (seeds, budget, paired differences, the tie
rule as an equation) is :mod:`sim.confidence`'s part.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim import compare as cmp
from sim.confidence import (Basis, PairedDiff, Stat, apart, match_words, overlap, paired_diff, planned_budget, relation,
                            signed, tie_reason, verdict_line)
from sim.report import PRIMARY_METRICS, aggregate_curves, primary_metric

LEVELS = ("no", "slight", "moderate", "very")


@dataclass(frozen=True)
class Finding:
    claim: str
    verdict: str
    evidence: list[str]
    experiment: str = ""  # the experiment whose runs it judges: its seeds and budget go beside the verdict


def verdict(better: Stat, worse: Stat, paired: PairedDiff | None = None) -> str:
    """Is ``better`` really lower than ``worse``? "yes", a tie, or "no (the opposite)", by :func:`sim.confidence.relation`."""
    rel = relation(better, worse, paired)
    if rel == "tie":
        return f"tie ({tie_reason(better, worse)})"
    return "yes" if rel == "lower" else "no (the opposite)"


def section_lines(f: Finding, basis: Basis) -> list[str]:
    """A finding's section of the reproduce report: heading, verdict line, evidence bullets, a blank line.

    One function for ``reproduce`` and for re-scoring a committed report
    (:mod:`sim.rescore`), so a re-scored section reads as reproduce writes it.
    """
    return [f"### {f.claim}", "", verdict_line(f.verdict, basis), ""] + [f"- {e}" for e in f.evidence] + [""]


class NotRecorded(LookupError):
    """What a finding asks for is not in the tables at hand: results rebuilt from committed CSVs lack the curves."""


class Unrecorded(dict):
    """A mapping of experiments with nothing in it: looking one up raises :class:`NotRecorded` naming ``what``.

    Why: a committed reproduce report keeps each run's final metrics
    (runs.csv) but not its curves, so a finding that reads curves must say
    so rather than be judged on something else.
    """

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def __missing__(self, exp: str) -> pd.DataFrame:
        raise NotRecorded(self.what)


def beside(paired: PairedDiff | None, what: str) -> str:
    """The paired difference for an evidence line ("; diloco - async_diloco: paired diff ..."), or nothing."""
    return f"; {what}: {paired}" if paired is not None else ""


class Results:
    """Final metrics and curves of every run, indexed by (experiment, method, sweep)."""

    def __init__(self, steps_per_round: int | None = 4 * 50) -> None:
        self.runs: dict[str, pd.DataFrame] = {}
        self.metrics: dict[str, pd.DataFrame] = {}
        self.metric = "loss"
        self.steps_per_round = steps_per_round  # all workers' local steps in a round: k x H (sim.reproduce), or unknown
        self.budgets: dict[str, tuple[tuple[int, ...], tuple[float, ...]]] = {}  # t_max values, rounds per worker

    @classmethod
    def from_runs(cls, runs: dict[str, pd.DataFrame], budgets: dict[str, tuple[tuple[int, ...], tuple[float, ...]]],
                  steps_per_round: int | None) -> Results:
        """Results from each experiment's table of runs alone (a committed report's runs.csv; the run folders are gone).

        Final metrics, seeds and simulated seconds are all there; the curves
        are not, so a finding that reads :attr:`metrics` raises
        :class:`NotRecorded`, as does one that needs k x H where it is not
        known (``steps_per_round`` None). ``budgets`` holds only the
        experiments whose planned budget is known; the others' verdict lines
        say "budget unknown".
        """
        res = cls(steps_per_round)
        res.runs = Unrecorded("they need an experiment the report does not list")
        res.runs.update(runs)
        res.metrics = Unrecorded("they need the runs' curves, which runs.csv does not hold")
        res.budgets = dict(budgets)
        columns = set().union(*(r.columns for r in runs.values())) if runs else set()
        res.metric = next((m for m in PRIMARY_METRICS if f"final_{m}" in columns), res.metric)
        return res

    def add(self, name: str, specs: list[cmp.RunSpec]) -> None:
        metrics, _events, runs = cmp.load_results(specs)
        self.runs[name], self.metrics[name] = runs, metrics
        self.metric = primary_metric(metrics)
        self.budgets[name] = planned_budget([(s.scenario.schedule.t_max, s.scenario.workers.k, s.scenario.schedule.H)
                                             for s in specs])

    def per_seed(self, exp: str, method: str, sweep: str = "") -> pd.Series:
        """The final metric of each finished run, indexed by seed."""
        r = self.runs[exp]
        r = r[(r["method"] == method) & (r["sweep"] == sweep) & (r["status"] == "finished")]
        return r.set_index("seed")[f"final_{self.metric}"].astype(float)

    def final(self, exp: str, method: str, sweep: str = "") -> Stat:
        vals = self.per_seed(exp, method, sweep)
        return Stat(vals.mean(), vals.std(ddof=1) if len(vals) > 1 else 0.0, vals.min(), vals.max(), len(vals))

    def paired(self, exp: str, a: str, b: str, sweep: str = "", sweep_b: str | None = None) -> PairedDiff | None:
        """Method ``a`` minus method ``b`` per seed both finished (``b`` at ``sweep_b`` if given, else ``sweep``)."""
        return paired_diff(self.per_seed(exp, a, sweep), self.per_seed(exp, b, sweep if sweep_b is None else sweep_b))

    def basis(self, exp: str) -> Basis:
        """Seeds (the fewest finished runs of any method and swept value) and budget of an experiment."""
        r = self.runs[exp]
        finished = (r["status"] == "finished").groupby([r["method"], r["sweep"]]).sum()
        return Basis(int(finished.min()) if len(finished) else 0, *self.budgets.get(exp, ((), ())))

    def seconds(self, exp: str, method: str, sweep: str = "") -> float:
        r = self.runs[exp]
        return float(r[(r["method"] == method) & (r["sweep"] == sweep)]["simulated_seconds"].mean())

    def time_to(self, exp: str, method: str, target: float, sweep: str = "") -> float:
        """First simulated time at which the seed-mean curve reaches ``target`` (inf if never)."""
        m = self.metrics[exp]
        agg = aggregate_curves(m[(m["method"] == method) & (m["sweep"] == sweep)], "tau", self.metric, points=2000)
        hit = agg[agg["mean"] <= target]
        return float(hit["tau"].iloc[0]) if len(hit) else float("inf")

    def initial(self, exp: str, method: str, sweep: str = "") -> float:
        """The metric before any training (mean over seeds)."""
        m = self.metrics[exp]
        m = m[(m["method"] == method) & (m["sweep"] == sweep)]
        return float(m[m["t_local"] == 0][self.metric].mean())

    def value_at(self, exp: str, method: str, t_local: float, sweep: str = "") -> float:
        """The seed-mean curve's metric at ``t_local`` total local steps (linear interpolation)."""
        m = self.metrics[exp]
        agg = aggregate_curves(m[(m["method"] == method) & (m["sweep"] == sweep)], "t_local", self.metric, points=400)
        return float(np.interp(t_local, agg["t_local"], agg["mean"])) if len(agg) else float("nan")

    def budget(self, exp: str, method: str, sweep: str = "") -> float:
        """Total local steps the runs reached (the largest t_local evaluated)."""
        m = self.metrics[exp]
        return float(m[(m["method"] == method) & (m["sweep"] == sweep)]["t_local"].max())

    def sweep_values(self, exp: str) -> list[str]:
        """The swept values of an experiment, in planned order."""
        return list(dict.fromkeys(self.runs[exp]["sweep"]))

    def rounds_per_worker(self, budget: int) -> int:
        """Rounds of H local steps each worker gets from a total budget (the fastest worker's H)."""
        if self.steps_per_round is None:
            raise NotRecorded("they need k x H of the base scenario, which is not known")
        return round(budget / self.steps_per_round)

    def early_bump(self, exp: str, method: str, sweep: str = "") -> float:
        """Largest rise of the seed-mean curve above its running minimum in the first half of the budget."""
        m = self.metrics[exp]
        agg = aggregate_curves(m[(m["method"] == method) & (m["sweep"] == sweep)], "t_local", self.metric, points=400)
        first = agg[agg["t_local"] <= agg["t_local"].max() / 2]["mean"].to_numpy()
        return float(np.max(first - np.minimum.accumulate(first))) if len(first) else float("nan")


def async_worse_even_homogeneous(res: Results) -> Finding:
    """Fig. 7: async DiLoCo is worse per update than DiLoCo, even with homogeneous devices."""
    fleet = {lvl: cmp.FLEET_ALIASES[lvl] for lvl in LEVELS}
    d, a = res.final("heterogeneity", "diloco", fleet["no"]), res.final("heterogeneity", "async_diloco", fleet["no"])
    p = res.paired("heterogeneity", "diloco", "async_diloco", fleet["no"])
    v = verdict(d, a, p)

    def level(lvl: str, name: str) -> str:
        return (f"{name}: diloco {res.final('heterogeneity', 'diloco', fleet[lvl])}, async_diloco "
                f"{res.final('heterogeneity', 'async_diloco', fleet[lvl])}"
                + beside(res.paired("heterogeneity", "diloco", "async_diloco", fleet[lvl]), "diloco - async_diloco"))

    return Finding("Async DiLoCo (Nesterov outer) is worse per update than sync DiLoCo, even with homogeneous devices (Fig. 7)",
                   ("reproduced" if v == "yes" else f"not reproduced: {v}") + beside(p, "diloco - async_diloco"),
                   [level("no", "homogeneous")] + [level(lvl, lvl) for lvl in LEVELS[1:]], "heterogeneity")


def sgd_outer_async_beats_sync(res: Results) -> Finding:
    """Fig. 6: with plain SGD as outer optimizer async beats sync; with Nesterov sync wins."""
    ds, as_ = res.final("outer_sgd", "diloco_sgd"), res.final("outer_sgd", "async_sgd")
    dn, an = res.final("outer_sgd", "diloco"), res.final("outer_sgd", "async_diloco")
    p_sgd, p_nesterov = res.paired("outer_sgd", "async_sgd", "diloco_sgd"), res.paired("outer_sgd", "diloco", "async_diloco")
    v, v_nesterov = verdict(as_, ds, p_sgd), verdict(dn, an, p_nesterov)
    return Finding("With plain SGD as outer optimizer, async beats sync; with Nesterov, sync wins (Fig. 6)",
                   "reproduced" if v == "yes" and v_nesterov == "yes" else f"not reproduced: async SGD better than sync SGD: {v}; sync Nesterov better than async Nesterov: {v_nesterov}",
                   [f"diloco_sgd {ds}, async_sgd {as_}" + beside(p_sgd, "async_sgd - diloco_sgd"),
                    f"diloco (Nesterov) {dn}, async_diloco (Nesterov) {an}" + beside(p_nesterov, "diloco - async_diloco")],
                   "outer_sgd")


def _fix_effect(fix: str, s: Stat, base: Stat, gap: float, of: str = "of the gap to diloco") -> tuple[bool, str, str]:
    """Does a staleness fix help async DiLoCo (``base``), how much, and the evidence line.

    Where async DiLoCo is behind DiLoCo (``gap`` > 0) a fix helps if it closes
    at least half of that gap. Where it is not behind there is no gap to
    close: a fix helps only if it beats async DiLoCo beyond the seed ranges.
    """
    if gap > 0:
        closes = (base.mean - s.mean) / gap
        return closes >= 0.5, f" (closes {closes:.0%})", f"{fix} {s}: closes {closes:.0%} {of}"
    helps = s.mean < base.mean and not overlap(s, base)
    return helps, "", (f"{fix} {s}: {s.mean - base.mean:+.4f} against async_diloco, which is not behind diloco here "
                       "(no gap to close)")


def fixes_barely_help(res: Results) -> Finding:
    """Fig. 8: Poly, PolyThres and delay compensation barely help; the buffer helps but is unstable early."""
    base, sync = res.final("fixes", "async_diloco"), res.final("fixes", "diloco")
    gap = base.mean - sync.mean
    lines, parts = [f"async_diloco {base}; diloco {sync}"], []
    for fix in ("async_poly", "async_polythres", "async_delaycomp"):
        helps, how_much, line = _fix_effect(fix, res.final("fixes", fix), base, gap)
        lines.append(line)
        parts.append(f"{fix} " + (f"helps clearly{how_much}" if helps else "barely helps"))
    buf_helps, _, line = _fix_effect("async_buffer", res.final("fixes", "async_buffer"), base, gap, "of the gap")
    bumps = {m: res.early_bump("fixes", m) for m in ("async_buffer", "dn_dylu", "diloco")}
    lines.append(f"{line}; early bump (largest rise above the running minimum in the first half): "
                 + ", ".join(f"{m} {b:.4f}" for m, b in bumps.items()))
    unstable = bumps["async_buffer"] > 2 * max(bumps["dn_dylu"], bumps["diloco"])
    parts.append("the buffer " + ("helps" if buf_helps else "does not help")
                 + (" and is unstable early" if unstable else " but shows no early instability beyond DiLoCo's"))
    agree = sum(p.endswith("barely helps") for p in parts[:3]) + buf_helps + unstable
    head = "reproduced" if agree == 5 else "partly reproduced" if agree >= 2 else "not reproduced"
    return Finding("Poly, PolyThres and delay compensation barely help; the async buffer helps but is unstable early (Fig. 8)",
                   f"{head}: " + "; ".join(parts), lines, "fixes")


def dn_dylu_matches_diloco(res: Results) -> Finding:
    """Fig. 2 / Table 1: DN + DyLU matches DiLoCo per update and beats it per wall-clock.

    "Matches" is a tie by the symmetric rule of :mod:`sim.confidence`
    (``relation(dn_dylu, diloco) == "tie"``): DN + DyLU ending lower beyond
    the evidence is no match either, and is said as what it is, better, in
    its favour (the abstract claims a match; the Fig. 2 observation says it
    surpasses DiLoCo, and footnote 5 puts its edge on the homogeneous fleet
    down to numerical error). Counting "better" as a match would let the rule
    see only one side. A level holds when it is a match per update and, on a
    heterogeneous fleet, DN + DyLU finishes sooner and reaches the common
    target no later.
    """
    fleet = {lvl: cmp.FLEET_ALIASES[lvl] for lvl in LEVELS}
    rows, misses = [], []
    for lvl in LEVELS:
        dl, dd = res.final("heterogeneity", "diloco", fleet[lvl]), res.final("heterogeneity", "dn_dylu", fleet[lvl])
        p = res.paired("heterogeneity", "dn_dylu", "diloco", fleet[lvl])
        per_update = match_words("dn_dylu", "diloco", relation(dd, dl, p))
        # a level both curves reach: the worse of the two final means, first hit on each seed-mean curve
        target = max(dl.mean, dd.mean)
        start = res.initial("heterogeneity", "diloco", fleet[lvl])
        t_dn = res.time_to("heterogeneity", "dn_dylu", target, fleet[lvl])
        t_dl = res.time_to("heterogeneity", "diloco", target, fleet[lvl])
        total_dl, total_dn = res.seconds("heterogeneity", "diloco", fleet[lvl]), res.seconds("heterogeneity", "dn_dylu", fleet[lvl])
        faster = total_dn < total_dl and t_dn <= t_dl
        misses += [f"{lvl}: {per_update} (per update)"] * (per_update != "match")
        misses += [f"{lvl}: not faster per wall-clock"] * (not faster and lvl != "no")
        rows.append(f"{lvl}: per update diloco {dl}, dn_dylu {dd} ({per_update}{beside(p, 'dn_dylu - diloco')}); "
                    f"the whole budget takes {total_dl:.0f} s vs {total_dn:.0f} s ({total_dl / total_dn:.2f}x); "
                    + (f"{res.metric} {target:.4f} is first reached at {t_dl:.0f} s vs {t_dn:.0f} s "
                       f"({t_dl / t_dn if t_dn else float('inf'):.2f}x)" if target < start else
                       f"no time-to-quality: both end worse than where they started ({res.metric} {start:.4f})"))
    return Finding("DN + DyLU matches DiLoCo per update and beats it per wall-clock at every heterogeneity level (Fig. 2, Table 1)",
                   "reproduced" if not misses else "not reproduced at every level: " + "; ".join(misses), rows,
                   "heterogeneity")


def c_makes_little_difference(res: Results) -> Finding:
    """Table 4: c = 0 and c = 0.1 make little difference for DN + DyLU ("no significant difference"): a tie."""
    c0, c1 = res.final("c", "dn_dylu", "0.0"), res.final("c", "dn_dylu", "0.1")
    p = res.paired("c", "dn_dylu", "dn_dylu", "0.1", "0.0")
    same = relation(c1, c0, p) == "tie"
    return Finding("c = 0 and c = 0.1 make little difference for DN + DyLU (Table 4)",
                   ("reproduced" if same else f"not reproduced: gap {signed(c1.mean - c0.mean)} {apart(min(c0.n, c1.n))}")
                   + beside(p, "c=0.1 - c=0"),
                   [f"c=0: {c0}; c=0.1: {c1}"], "c")


def _judge(checks: list[bool], misses: list[str] | None = None) -> str:
    """All parts hold: reproduced; some: partly; none: not; followed by what did not hold, where given."""
    head = "reproduced" if all(checks) else "partly reproduced" if any(checks) else "not reproduced"
    return head + (": " + "; ".join(misses) if misses else "")


def local_sgd_beats_finetune(res: Results) -> Finding:
    """Tables 1-3: DiLoCo and DN + DyLU beat the 1-worker k x batch finetune per update, more so late in training.

    "Late" compares the gap (finetune minus Local-SGD) on the seed-mean
    curves at half the budget with the gap at the end.
    """
    ft = res.final("headline", "finetune_1w")
    end = res.budget("headline", "finetune_1w")
    checks, lines = [], [f"finetune_1w {ft}"]
    for method in ("diloco", "dn_dylu"):
        s = res.final("headline", method)
        p = res.paired("headline", method, "finetune_1w")
        v = verdict(s, ft, p)
        mid = res.value_at("headline", "finetune_1w", end / 2) - res.value_at("headline", method, end / 2)
        last = ft.mean - s.mean
        grows = last > mid
        checks += [v == "yes", v == "yes" and grows]
        lines.append(f"{method} {s}: beats finetune: {v}{beside(p, f'{method} - finetune_1w')}; gap (finetune - {method}) "
                     f"at half the budget {mid:+.4f}, at the end {last:+.4f} ({'grows' if grows else 'does not grow'} late)")
    return Finding("Local-SGD (DiLoCo and DN + DyLU) beats single-worker finetuning with k x batch per update, "
                   "and the advantage grows late in training (Tables 1-3)", _judge(checks), lines, "headline")


def advantage_trend(ks: list, advantages: list[float], real: list[bool]) -> str:
    """How the advantage (finetune minus DiLoCo, positive: DiLoCo better) moves with k, in words that fit its sign.

    Signed numbers alone mislead: -2.57, -2.63, -2.76 "decrease", but
    there is no advantage at all, and finetune's lead grows.
    """
    shown = ", ".join(f"{a:+.4f}" for a in advantages)

    def trend(values: list[float]) -> str:
        if all(b > a for a, b in zip(values, values[1:])):
            return "grows"
        if all(b < a for a, b in zip(values, values[1:])):
            return "shrinks"
        return "is not monotone"

    if all(real):
        return f"advantage by k: {shown} (real at every k; it {trend(advantages)} as k grows)"
    if not any(real) and all(a < 0 for a in advantages):
        return f"advantage by k: {shown}: no advantage at any k, finetune leads and its lead {trend([-a for a in advantages])} as k grows"
    if not any(real):
        return f"advantage by k: {shown}: beyond the evidence at no k, so no trend is claimed"
    at = ", ".join(f"k = {k}" for k, r in zip(ks, real) if r)
    return f"advantage by k: {shown}: beyond the seed ranges at {at} only, so no trend is claimed"


def advantage_shrinks_with_workers(res: Results) -> Finding:
    """Table 2: with k = 4, 8, 16 the Local-SGD advantage over finetune shrinks; DN + DyLU stays within DiLoCo's spread.

    "Within DiLoCo's spread" (the paper: DN + DyLU "closely aligns with"
    DiLoCo) is a tie by the symmetric rule of :mod:`sim.confidence`;
    DN + DyLU beyond it on either side is outside, better or worse.
    """
    ks = res.sweep_values("workers")
    lines, advantages, real, misses = [], [], [], []
    for k in ks:
        ft, dl, dn = (res.final("workers", m, k) for m in ("finetune_1w", "diloco", "dn_dylu"))
        p_ft, p_dn = res.paired("workers", "diloco", "finetune_1w", k), res.paired("workers", "dn_dylu", "diloco", k)
        v = verdict(dl, ft, p_ft)
        advantages.append(ft.mean - dl.mean)
        real.append(v == "yes")  # an advantage only where DiLoCo is better beyond the evidence
        near = match_words("dn_dylu", "diloco", relation(dn, dl, p_dn))
        misses += [f"k = {k}: {near}"] * (near != "match")
        lines.append(f"k={k}: finetune_1w {ft}, diloco {dl}, dn_dylu {dn}; advantage of diloco over finetune "
                     f"{advantages[-1]:+.4f} ({v}{beside(p_ft, 'diloco - finetune_1w')}); dn_dylu "
                     + ("within diloco's spread" if near == "match" else f"outside diloco's spread, {near}")
                     + beside(p_dn, "dn_dylu - diloco"))
    lines.append(advantage_trend(list(ks), advantages, real))
    # "shrinks" is only a finding where there is an advantage to shrink, at every k
    shrinks = all(real) and all(a > b for a, b in zip(advantages, advantages[1:]))
    return Finding("With k = 4, 8, 16 workers the Local-SGD advantage over finetuning shrinks as k grows, and DN + DyLU "
                   "stays within DiLoCo's spread (Table 2)",
                   _judge([shrinks, not misses], ([] if shrinks else ["no advantage over finetune that shrinks with k"])
                          + misses), lines, "workers")


def holds_across_model_sizes(res: Results) -> Finding:
    """Table 3: at each model size DN + DyLU is close to DiLoCo and async DiLoCo is behind it.

    "Close" is a tie by the symmetric rule of :mod:`sim.confidence`:
    DN + DyLU better beyond the evidence is not close either (said as
    better, in its favour); "behind" is DiLoCo lower beyond it.
    """
    lines, close, behind, misses = [], [], [], []
    for size in res.sweep_values("size"):
        dl, dn, ad = (res.final("size", m, size) for m in ("diloco", "dn_dylu", "async_diloco"))
        p_dn, p_ad = res.paired("size", "dn_dylu", "diloco", size), res.paired("size", "diloco", "async_diloco", size)
        near = match_words("dn_dylu", "diloco", relation(dn, dl, p_dn))
        v = verdict(dl, ad, p_ad)
        close.append(near == "match")
        behind.append(v == "yes")
        misses += [f"size {size}: {near}"] * (not close[-1]) + [f"size {size}: async_diloco not behind: {v}"] * (not behind[-1])
        lines.append(f"size {size}: diloco {dl}, dn_dylu {dn} ({'close' if close[-1] else near}"
                     f"{beside(p_dn, 'dn_dylu - diloco')}), async_diloco {ad} "
                     f"({'behind diloco' if behind[-1] else 'not behind: ' + v}{beside(p_ad, 'diloco - async_diloco')})")
    return Finding("At every model size DN + DyLU is close to DiLoCo and async DiLoCo is behind (Table 3)",
                   _judge([all(close), all(behind)], misses), lines, "size")


def gap_against_budget(res: Results) -> pd.DataFrame:
    """(DN + DyLU - DiLoCo) and (finetune - DiLoCo) in the final metric per budget, mean and range over seeds.

    Rounds per worker = budget / (k x H); the seeds are paired (same seed,
    same data order), so each gap's range is over per-seed differences.
    """
    r = res.runs["budget"]
    r = r[r["status"] == "finished"]
    metric = f"final_{res.metric}"
    rows = []
    for sweep, g in r.groupby("sweep", sort=False):
        by = g.pivot_table(index="seed", columns="method", values=metric)
        row = {"budget": int(float(sweep)), "rounds_per_worker": res.rounds_per_worker(int(float(sweep))),
               "seeds": len(by)}
        for other in ("dn_dylu", "finetune_1w"):
            diff = by[other] - by["diloco"]
            row.update({f"{other}_minus_diloco": diff.mean(), f"{other}_minus_diloco_low": diff.min(),
                        f"{other}_minus_diloco_high": diff.max()})
        row["diloco"] = by["diloco"].mean()
        rows.append(row)
    return pd.DataFrame(rows).sort_values("budget").reset_index(drop=True)


def budget_gap_finding(res: Results) -> Finding:
    """Was the tiny LM's DN + DyLU gap the budget? The gaps at the smallest and the largest budget."""
    table = gap_against_budget(res)
    first, last = table.iloc[0], table.iloc[-1]
    lines = [f"{int(row.rounds_per_worker)} rounds per worker (budget {int(row.budget)}): dn_dylu - diloco "
             f"{row.dn_dylu_minus_diloco:+.4f} [{row.dn_dylu_minus_diloco_low:+.4f}, {row.dn_dylu_minus_diloco_high:+.4f}], "
             f"finetune - diloco {row.finetune_1w_minus_diloco:+.4f} [{row.finetune_1w_minus_diloco_low:+.4f}, "
             f"{row.finetune_1w_minus_diloco_high:+.4f}]" for row in table.itertuples()]
    shrinks = abs(last.dn_dylu_minus_diloco) < abs(first.dn_dylu_minus_diloco)
    answer = ("the DN + DyLU gap to DiLoCo shrinks with more rounds (partly the budget)" if shrinks
              else "the DN + DyLU gap to DiLoCo does not shrink with more rounds (not the budget)")
    return Finding("Gap against budget: does DN + DyLU's gap to DiLoCo close with more rounds per worker? "
                   "(a question of this project, not a claim of the paper)", answer, lines, "budget")


#: the paper's findings in report order; the budget question is added when its runs exist
FINDINGS = (async_worse_even_homogeneous, sgd_outer_async_beats_sync, fixes_barely_help, dn_dylu_matches_diloco,
            c_makes_little_difference, local_sgd_beats_finetune, advantage_shrinks_with_workers,
            holds_across_model_sizes)
