"""The paper's findings as code: statistics over seeds, and one verdict function per finding.

Each finding compares final metrics (mean and spread over seeds) or
time-to-quality of the runs :mod:`sim.reproduce` planned, so a committed
report says "reproduced", "partly reproduced" or "not reproduced" with the
numbers behind it. Gaps whose seed ranges overlap are ties: float32 noise
alone moves the toy's final loss by ~0.004 between mathematically identical
runs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim import compare as cmp
from sim.report import aggregate_curves, primary_metric

LEVELS = ("no", "slight", "moderate", "very")


@dataclass(frozen=True)
class Finding:
    claim: str
    verdict: str
    evidence: list[str]


@dataclass
class Stat:
    mean: float
    std: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.std:.4f} (n={self.n})"


def overlap(a: Stat, b: Stat) -> bool:
    """Seed ranges overlap: the gap is inside the spread, call it a tie."""
    return a.low <= b.high and b.low <= a.high


def verdict(better: Stat, worse: Stat) -> str:
    """Is ``better`` really lower than ``worse``?"""
    if overlap(better, worse):
        return "tie (seed ranges overlap)"
    return "yes" if better.mean < worse.mean else "no (the opposite)"


class Results:
    """Final metrics and curves of every run, indexed by (experiment, method, sweep)."""

    def __init__(self, steps_per_round: int = 4 * 50) -> None:
        self.runs: dict[str, pd.DataFrame] = {}
        self.metrics: dict[str, pd.DataFrame] = {}
        self.metric = "loss"
        self.steps_per_round = steps_per_round  # all workers' local steps in one round: k x H (sim.reproduce)

    def add(self, name: str, specs: list[cmp.RunSpec]) -> None:
        metrics, _events, runs = cmp.load_results(specs)
        self.runs[name], self.metrics[name] = runs, metrics
        self.metric = primary_metric(metrics)

    def final(self, exp: str, method: str, sweep: str = "") -> Stat:
        r = self.runs[exp]
        vals = r[(r["method"] == method) & (r["sweep"] == sweep) & (r["status"] == "finished")][f"final_{self.metric}"].astype(float)
        return Stat(vals.mean(), vals.std(ddof=1) if len(vals) > 1 else 0.0, vals.min(), vals.max(), len(vals))

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
    v = verdict(d, a)
    return Finding("Async DiLoCo (Nesterov outer) is worse per update than sync DiLoCo, even with homogeneous devices (Fig. 7)",
                   "reproduced" if v == "yes" else f"not reproduced: {v}",
                   [f"homogeneous: diloco {d}, async_diloco {a}"]
                   + [f"{lvl}: diloco {res.final('heterogeneity', 'diloco', fleet[lvl])}, async_diloco "
                      f"{res.final('heterogeneity', 'async_diloco', fleet[lvl])}" for lvl in LEVELS[1:]])


def sgd_outer_async_beats_sync(res: Results) -> Finding:
    """Fig. 6: with plain SGD as outer optimizer async beats sync; with Nesterov sync wins."""
    ds, as_ = res.final("outer_sgd", "diloco_sgd"), res.final("outer_sgd", "async_sgd")
    dn, an = res.final("outer_sgd", "diloco"), res.final("outer_sgd", "async_diloco")
    v = verdict(as_, ds)
    return Finding("With plain SGD as outer optimizer, async beats sync; with Nesterov, sync wins (Fig. 6)",
                   "reproduced" if v == "yes" and verdict(dn, an) == "yes" else f"not reproduced: async SGD better than sync SGD: {v}; sync Nesterov better than async Nesterov: {verdict(dn, an)}",
                   [f"diloco_sgd {ds}, async_sgd {as_}", f"diloco (Nesterov) {dn}, async_diloco (Nesterov) {an}"])


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
                   f"{head}: " + "; ".join(parts), lines)


def dn_dylu_matches_diloco(res: Results) -> Finding:
    """Fig. 2 / Table 1: DN + DyLU matches DiLoCo per update and beats it per wall-clock."""
    fleet = {lvl: cmp.FLEET_ALIASES[lvl] for lvl in LEVELS}
    rows, all_ok = [], True
    for lvl in LEVELS:
        dl, dd = res.final("heterogeneity", "diloco", fleet[lvl]), res.final("heterogeneity", "dn_dylu", fleet[lvl])
        # a level both curves reach: the worse of the two final means, first hit on each seed-mean curve
        target = max(dl.mean, dd.mean)
        start = res.initial("heterogeneity", "diloco", fleet[lvl])
        t_dn = res.time_to("heterogeneity", "dn_dylu", target, fleet[lvl])
        t_dl = res.time_to("heterogeneity", "diloco", target, fleet[lvl])
        total_dl, total_dn = res.seconds("heterogeneity", "diloco", fleet[lvl]), res.seconds("heterogeneity", "dn_dylu", fleet[lvl])
        matches = overlap(dl, dd) or dd.mean < dl.mean
        faster = total_dn < total_dl and t_dn <= t_dl
        all_ok &= matches and (faster or lvl == "no")
        rows.append(f"{lvl}: per update diloco {dl}, dn_dylu {dd} ({'match' if matches else 'dn_dylu worse'}); "
                    f"the whole budget takes {total_dl:.0f} s vs {total_dn:.0f} s ({total_dl / total_dn:.2f}x); "
                    + (f"{res.metric} {target:.4f} is first reached at {t_dl:.0f} s vs {t_dn:.0f} s "
                       f"({t_dl / t_dn if t_dn else float('inf'):.2f}x)" if target < start else
                       f"no time-to-quality: both end worse than where they started ({res.metric} {start:.4f})"))
    return Finding("DN + DyLU matches DiLoCo per update and beats it per wall-clock at every heterogeneity level (Fig. 2, Table 1)",
                   "reproduced" if all_ok else "not reproduced at every level", rows)


def c_makes_little_difference(res: Results) -> Finding:
    """Table 4: c = 0 and c = 0.1 make little difference for DN + DyLU."""
    c0, c1 = res.final("c", "dn_dylu", "0.0"), res.final("c", "dn_dylu", "0.1")
    return Finding("c = 0 and c = 0.1 make little difference for DN + DyLU (Table 4)",
                   "reproduced" if overlap(c0, c1) else f"not reproduced: gap {c1.mean - c0.mean:+.4f} outside the seed ranges",
                   [f"c=0: {c0}; c=0.1: {c1}"])


def _judge(checks: list[bool]) -> str:
    """All parts hold: reproduced; some: partly; none: not."""
    return "reproduced" if all(checks) else "partly reproduced" if any(checks) else "not reproduced"


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
        v = verdict(s, ft)
        mid = res.value_at("headline", "finetune_1w", end / 2) - res.value_at("headline", method, end / 2)
        last = ft.mean - s.mean
        grows = last > mid
        checks += [v == "yes", v == "yes" and grows]
        lines.append(f"{method} {s}: beats finetune: {v}; gap (finetune - {method}) at half the budget {mid:+.4f}, "
                     f"at the end {last:+.4f} ({'grows' if grows else 'does not grow'} late)")
    return Finding("Local-SGD (DiLoCo and DN + DyLU) beats single-worker finetuning with k x batch per update, "
                   "and the advantage grows late in training (Tables 1-3)", _judge(checks), lines)


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
    at = ", ".join(f"k = {k}" for k, r in zip(ks, real) if r) or "no k"
    return f"advantage by k: {shown}: beyond the seed ranges at {at} only, so no trend is claimed"


def advantage_shrinks_with_workers(res: Results) -> Finding:
    """Table 2: with k = 4, 8, 16 the Local-SGD advantage over finetune shrinks; DN + DyLU stays within DiLoCo's spread."""
    ks = res.sweep_values("workers")
    lines, advantages, real, within = [], [], [], []
    for k in ks:
        ft, dl, dn = (res.final("workers", m, k) for m in ("finetune_1w", "diloco", "dn_dylu"))
        advantages.append(ft.mean - dl.mean)
        real.append(verdict(dl, ft) == "yes")  # an advantage only where DiLoCo is better beyond the seed ranges
        within.append(overlap(dn, dl) or dn.mean < dl.mean)
        lines.append(f"k={k}: finetune_1w {ft}, diloco {dl}, dn_dylu {dn}; advantage of diloco over finetune "
                     f"{advantages[-1]:+.4f} ({verdict(dl, ft)}); dn_dylu {'within' if within[-1] else 'outside'} "
                     f"diloco's spread")
    lines.append(advantage_trend(list(ks), advantages, real))
    # "shrinks" is only a finding where there is an advantage to shrink, at every k
    shrinks = all(real) and all(a > b for a, b in zip(advantages, advantages[1:]))
    return Finding("With k = 4, 8, 16 workers the Local-SGD advantage over finetuning shrinks as k grows, and DN + DyLU "
                   "stays within DiLoCo's spread (Table 2)", _judge([shrinks, all(within)]), lines)


def holds_across_model_sizes(res: Results) -> Finding:
    """Table 3: at each model size DN + DyLU is close to DiLoCo and async DiLoCo is behind it."""
    lines, close, behind = [], [], []
    for size in res.sweep_values("size"):
        dl, dn, ad = (res.final("size", m, size) for m in ("diloco", "dn_dylu", "async_diloco"))
        close.append(overlap(dn, dl) or dn.mean < dl.mean)
        behind.append(verdict(dl, ad) == "yes")
        lines.append(f"size {size}: diloco {dl}, dn_dylu {dn} ({'close' if close[-1] else 'behind'}), async_diloco {ad} "
                     f"({'behind diloco' if behind[-1] else 'not behind: ' + verdict(dl, ad)})")
    return Finding("At every model size DN + DyLU is close to DiLoCo and async DiLoCo is behind (Table 3)",
                   _judge([all(close), all(behind)]), lines)


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
                   "(a question of this project, not a claim of the paper)", answer, lines)


#: the paper's findings in report order; the budget question is added when its runs exist
FINDINGS = (async_worse_even_homogeneous, sgd_outer_async_beats_sync, fixes_barely_help, dn_dylu_matches_diloco,
            c_makes_little_difference, local_sgd_beats_finetune, advantage_shrinks_with_workers,
            holds_across_model_sizes)
