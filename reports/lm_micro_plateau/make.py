"""Why DN + DyLU stalls on the micro LM, and what lifts it: every number computed from committed CSVs (issue 23).

    .venv/bin/python reports/lm_micro_plateau/make.py          # writes README.md, results.csv, plateau.png, ...
                                                               # and the top-level README's micro-LM findings block
    .venv/bin/python reports/lm_micro_plateau/make.py --check  # exit 1 if a written file would change

The ablations are separate comparison reports (``asyncsim compare``, each with
its command in its ``report.md``); this script reads only their committed
``runs.csv`` and ``diagnostics.csv`` files, so the README's numbers trace to a
CSV and the README's findings section can quote them (a test keeps it equal
to ``findings.md`` here). Seeds are compared with the project's tie rule
(``sim.confidence.relation``: seed ranges overlap, or the paired per-seed
difference's 95% bootstrap interval holds 0).
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPORTS = HERE.parent
sys.path.insert(0, str(REPORTS.parent))

from sim.confidence import Stat, paired_diff, relation, tie_reason  # noqa: E402


@dataclass(frozen=True)
class Row:
    """One setting of the micro LM at the full protocol (24K pretraining + 64K local steps, k = 4 "very" workers)."""

    key: str
    label: str
    report: str          # folder under reports/ holding runs.csv
    method: str
    sweep: str = ""      # the runs.csv "sweep" value, where the report swept a setting
    inner: str = "reset"  # the inner AdamW state between rounds: reset (the paper) or keep
    steps: str = "50"    # local steps per round: 50 for all, or DyLU's 50 / 38 / 19 / 8
    outer_lr: str = ""
    note: str = ""
    more: tuple[tuple[str, str], ...] = ()  # (report, sweep) of further seeds of the same setting, run later


def sources(row: Row) -> list[tuple[str, str]]:
    """Every (report, sweep) holding seeds of ``row``."""
    return [(row.report, row.sweep), *row.more]


ROWS = (
    Row("diloco", "DiLoCo", "lm_micro_reset_baseline_here", "diloco", outer_lr="0.3"),
    Row("dn_dylu", "DN + DyLU", "lm_micro_reset_baseline_here", "dn_dylu", steps="DyLU", outer_lr="0.01"),
    Row("diloco_dylu_steps", "DiLoCo with DyLU's step counts", "lm_micro_diloco_dylu_steps", "diloco", steps="DyLU",
        outer_lr="0.3"),
    Row("dn_dylu_work", "DN + DyLU, work-weighted", "lm_micro_dn_dylu_work", "dn_dylu", steps="DyLU", outer_lr="0.1",
        note="each pseudo-gradient x its steps / H"),
    Row("dn_dylu_work_03", "DN + DyLU, work-weighted", "lm_micro_dn_dylu_work_03", "dn_dylu", steps="DyLU",
        outer_lr="0.3", note="the work lr grid's optimum"),
    Row("async_diloco", "async DiLoCo", "paper_lm_micro/headline", "async_diloco", outer_lr="0.03",
        note="soup weight 0.5; earlier machine"),
    Row("dn_dylu_keep", "DN + DyLU", "lm_micro_dn_dylu_keep", "dn_dylu", inner="keep", steps="DyLU", outer_lr="0.3"),
    Row("diloco_keep", "DiLoCo", "lm_micro_diloco_keep_inner_state", "streaming_diloco", inner="keep",
        outer_lr="0.3", note="Streaming DiLoCo with 1 fragment, no overlap; earlier machine"),
    Row("async_keep_03", "async DiLoCo", "lm_micro_async_keep", "async_diloco", inner="keep", outer_lr="0.3",
        note="soup weight 0.5; unstable early, the lr too high"),
    Row("async_keep", "async DiLoCo", "lm_micro_async_keep_best", "async_diloco", inner="keep", outer_lr="0.1",
        note="soup weight 0.5; the lr grid's optimum"),
    Row("finetune", "finetune (1 worker, 4 x batch)", "paper_lm_micro/headline", "finetune_1w", inner="keep", steps="-",
        note="earlier machine"),
    Row("finetune_b4", "finetune (1 worker, batch 4)", "lm_micro_m1", "finetune_1w", inner="keep", steps="-",
        note="64K steps at M = 1's batch", more=(("lm_micro_m1_finetune_s2", ""),)),
    Row("m1", "DiLoCo, M = 1 worker", "lm_micro_m1_lr", "diloco", sweep="0.1", inner="keep", outer_lr="0.1",
        note="AdamW kept as Charles et al. run it; the lr grid's optimum", more=(("lm_micro_m1_best", ""),)),
    Row("m1_03", "DiLoCo, M = 1 worker", "lm_micro_m1", "diloco", inner="keep", outer_lr="0.3",
        note="AdamW kept; the grid's second value"),
    Row("muon", "DiLoCo, Muon inner", "lm_micro_muon", "diloco", outer_lr="0.3", note="Muon on the blocks' matrices"),
)

#: the paper's batch regime, indicative: 64 sequences per worker (README: its share of the noise scale), 40 rounds per worker,
#: one seed, the outer lrs tuned at batch 4 (reports/lm_micro_batch_regime; earlier machine)
BATCH64 = (
    Row("b64_finetune", "finetune (1 worker, 4 x batch)", "lm_micro_batch_regime", "finetune_1w", sweep="64",
        inner="keep", steps="-", note="earlier machine"),
    Row("b64_diloco", "DiLoCo", "lm_micro_batch_regime", "diloco", sweep="64", outer_lr="0.3", note="earlier machine"),
    Row("b64_dn_dylu", "DN + DyLU", "lm_micro_batch_regime", "dn_dylu", sweep="64", steps="DyLU", outer_lr="0.03",
        note="earlier machine"),
)

#: every row by its key
ROW_BY_KEY = {r.key: r for r in ROWS + BATCH64}


@dataclass(frozen=True)
class Claim:
    """A finding of the paper, judged in each setting on the runs that setting names: (a, b) keys of ROWS."""

    text: str
    kind: str  # "beats": a lower than b; "matches": a tie with b
    settings: dict[str, tuple[str, str]]


SETTINGS = ("batch 4, AdamW reset (the paper's)", "batch 4, AdamW kept", "batch 64, reset, 40 rounds")
CLAIMS = (
    Claim("DiLoCo beats finetune (1 worker, 4 x batch) per update (Tables 1-3)", "beats",
          {SETTINGS[0]: ("diloco", "finetune"), SETTINGS[1]: ("diloco_keep", "finetune"),
           SETTINGS[2]: ("b64_diloco", "b64_finetune")}),
    Claim("DN + DyLU matches DiLoCo per update (Fig. 2, Table 1)", "matches",
          {SETTINGS[0]: ("dn_dylu", "diloco"), SETTINGS[1]: ("dn_dylu_keep", "diloco_keep"),
           SETTINGS[2]: ("b64_dn_dylu", "b64_diloco")}),
    Claim("DiLoCo is ahead of async DiLoCo per update (Fig. 7)", "beats",
          {SETTINGS[0]: ("diloco", "async_diloco"), SETTINGS[1]: ("diloco_keep", "async_keep")}),
    Claim("DiLoCo with M = 1 worker beats finetune at the same batch (Charles et al. 2025)", "beats",
          {SETTINGS[1]: ("m1", "finetune_b4")}),
    Claim("Muon beats AdamW as DiLoCo's inner optimizer, k = 4 (MuLoCo)", "beats",
          {SETTINGS[0]: ("muon", "diloco")}),
)

#: (a, b, question): is a lower than b? each answered by the tie rule
COMPARISONS = (
    ("dn_dylu", "diloco_dylu_steps", "Does synchronous DiLoCo with DyLU's step counts land on DN + DyLU's floor?"),
    ("diloco", "diloco_dylu_steps", "Do DyLU's step counts alone cost DiLoCo?"),
    ("dn_dylu_work", "dn_dylu", "Does weighting by work (lr 0.1) lift the floor?"),
    ("dn_dylu_work_03", "dn_dylu", "Does weighting by work (lr 0.3) lift the floor?"),
    ("dn_dylu_work_03", "dn_dylu_work", "Work-weighted: is the grid's lr 0.3 better than 0.1 over 3 seeds?"),
    ("dn_dylu_keep", "dn_dylu", "Does keeping AdamW lift the floor?"),
    ("dn_dylu_keep", "diloco", "With AdamW kept, does DN + DyLU beat DiLoCo as the paper ran it?"),
    ("diloco_keep", "dn_dylu_keep", "With AdamW kept by both, is DiLoCo still ahead of DN + DyLU?"),
    ("async_keep", "async_diloco", "Does keeping AdamW lift async DiLoCo?"),
    ("m1", "finetune_b4", "M = 1 (outer lr 0.1): does DiLoCo with one worker beat finetune at the same batch?"),
    ("m1_03", "finetune_b4", "M = 1 (outer lr 0.3): does DiLoCo with one worker beat finetune at the same batch?"),
    ("m1", "diloco_keep", "Is DiLoCo with one worker ahead of DiLoCo with four, both keeping AdamW (same steps)?"),
    ("muon", "diloco", "Is Muon a better inner optimizer than AdamW for DiLoCo at k = 4?"),
)

#: sweeps that chose a hyperparameter for a row: (report or reports, method, what it chose); a grid extended past
#: its edge later is a second report, read together with the first
SWEEPS = (
    ("lm_micro_dn_dylu_full_budget_lr", "dn_dylu", "DN + DyLU (reset), full budget: no outer lr lifts the floor"),
    ("lm_micro_dn_dylu_work_lr", "dn_dylu", "DN + DyLU, work-weighted (reset): the outer lr"),
    ("lm_micro_dn_dylu_keep_lr", "dn_dylu", "DN + DyLU (keep): the outer lr"),
    ("lm_micro_async_keep_lr", "async_diloco", "async DiLoCo (keep): the outer lr"),
    (("lm_micro_m1_lr", "lm_micro_m1_lr_low"), "diloco", "DiLoCo with M = 1 worker: the outer lr"),
)

DIAGNOSTICS = (  # (report, sweep value or "", label)
    ("lm_micro_diag_dn_dylu_reset", "", "DN + DyLU, reset"),
    ("lm_micro_diag_dn_dylu_keep", "", "DN + DyLU, keep"),
    ("lm_micro_diag_diloco", "True", "DiLoCo with DyLU's steps, reset"),
    ("lm_micro_diag_diloco", "False", "DiLoCo, 50 steps, reset"),
)


def runs_of(report: str) -> pd.DataFrame | None:
    path = REPORTS / report / "runs.csv"
    if not path.exists():
        return None
    runs = pd.read_csv(path, dtype={"sweep": str}, keep_default_na=False)
    return runs[runs["status"] == "finished"]


def row_runs(row: Row) -> pd.DataFrame | None:
    """A row's finished runs from each report holding its seeds (None if its first report is not committed)."""
    frames = []
    for report, sweep in sources(row):
        runs = runs_of(report)
        if runs is None:
            if report == row.report:
                return None
            continue
        sel = runs[(runs["method"] == row.method) & (runs["sweep"] == sweep)]
        if sel.empty:
            raise SystemExit(f"reports/{report}/runs.csv: no finished run of {row.method!r} (sweep {sweep!r})")
        frames.append(sel)
    runs = pd.concat(frames, ignore_index=True)
    if runs["seed"].duplicated().any():
        raise SystemExit(f"row {row.key!r}: a seed appears in two of its reports")
    return runs


def per_seed(row: Row) -> pd.Series | None:
    """Final eval perplexity of each seed of a row's runs (None if its report is not committed)."""
    runs = row_runs(row)
    return None if runs is None else runs.set_index("seed")["final_perplexity"].astype(float).sort_index()


def stat(values: pd.Series) -> Stat:
    return Stat(float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                float(values.min()), float(values.max()), len(values))


def spread(s: Stat) -> str:
    return f"{s.mean:.2f} (one seed)" if s.n == 1 else f"{s.mean:.2f} ± {s.std:.2f}"


def results(which: tuple[Row, ...] = ROWS) -> pd.DataFrame:
    rows = []
    for row in which:
        values = per_seed(row)
        if values is None:
            continue
        s = stat(values)
        sim_s = row_runs(row)["simulated_seconds"].mean()
        rows.append(dict(key=row.key, label=row.label, inner_state=row.inner, steps_per_round=row.steps,
                         outer_lr=row.outer_lr, n=s.n, mean=s.mean, std=s.std, low=s.low, high=s.high,
                         simulated_seconds=float(sim_s), seeds=" ".join(f"{v:.4f}" for v in values),
                         report=" ".join(f"reports/{r}" for r, _ in sources(row) if (REPORTS / r).is_dir()),
                         note=row.note))
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Pair:
    """Rows a and b compared by the tie rule: their stats, the paired difference and the relation of a to b."""

    a: Stat
    b: Stat
    paired: object
    relation: str  # "lower", "higher" or "tie"

    @property
    def n(self) -> int:
        return min(self.a.n, self.b.n)


def compare_rows(a: str, b: str) -> Pair | None:
    """Rows ``a`` and ``b`` compared (None if either is not run): the one place the tie rule is applied here."""
    va, vb = per_seed(ROW_BY_KEY[a]), per_seed(ROW_BY_KEY[b])
    if va is None or vb is None:
        return None
    sa, sb, paired = stat(va), stat(vb), paired_diff(va, vb)
    return Pair(sa, sb, paired, relation(sa, sb, paired))


def answer(a: str, b: str) -> tuple[str, str] | None:
    pair = compare_rows(a, b)
    if pair is None:
        return None
    words = {"lower": "yes", "higher": "no (the opposite)"}.get(pair.relation, f"tie ({tie_reason(pair.a, pair.b)})")
    if pair.n < 3:
        words += f"; indicative (n = {pair.n})"
    return words, f"{spread(pair.a)} vs {spread(pair.b)}; {pair.paired}"


def sweep_runs(reports: str | tuple[str, ...], method: str) -> tuple[tuple[str, ...], pd.DataFrame] | None:
    """A sweep's runs of ``method`` over its committed reports, by lr (None if none is committed)."""
    reports = (reports,) if isinstance(reports, str) else reports
    found = [r for r in (runs_of(report) for report in reports) if r is not None]
    if not found:
        return None
    runs = pd.concat(found, ignore_index=True)
    sel = runs[runs["method"] == method].assign(lr=lambda d: d["sweep"].astype(float)).sort_values("lr")
    return tuple(r for r in reports if runs_of(r) is not None), sel


def best_of(sel: pd.DataFrame) -> tuple[str, bool]:
    """The sweep's lowest final perplexity's lr, and whether it sits at the grid's edge."""
    best = sel.loc[sel["final_perplexity"].idxmin()]
    return best["sweep"], best["lr"] in (sel["lr"].min(), sel["lr"].max())


def sweep_table() -> list[str]:
    lines = ["| sweep | outer lr: final perplexity (seed 0) | lowest |", "|---|---|---|"]
    for reports, method, what in SWEEPS:
        got = sweep_runs(reports, method)
        if got is None:
            continue
        (report, *extended), sel = got
        cells = ", ".join(f"{r.sweep}: {r.final_perplexity:.2f}" for r in sel.itertuples())
        best, edge = best_of(sel)
        more = "".join(f" ([extended](../{r}/report.md))" for r in extended)
        at_edge = " (at the grid's edge)" if edge else ""
        lines.append(f"| [{what}](../{report}/report.md){more} | {cells} | {best}{at_edge} |")
    return lines


def diagnostics() -> pd.DataFrame:
    frames = []
    for report, sweep, label in DIAGNOSTICS:
        path = REPORTS / report / "diagnostics.csv"
        d = pd.read_csv(path, dtype={"sweep": str}, keep_default_na=False)
        d = d[d["sweep"] == sweep].assign(run=label)
        frames.append(d[["run", "steps", "syncs", "norm_per_step", "cosine"]])
    return pd.concat(frames, ignore_index=True)


def regime() -> pd.DataFrame:
    runs = runs_of("lm_micro_batch_regime")
    table = runs.pivot_table(index="sweep", columns="method", values="final_perplexity")
    table.index = table.index.astype(int)
    return table.sort_index()


#: the issue's batch-regime study: finetune, and DiLoCo, async DiLoCo and DN + DyLU each reset and kept (7
#: settings), 3 seeds, at least 160 rounds per worker; its budget was "about 12 core-hours"
STUDY_SETTINGS, STUDY_SEEDS, STUDY_ROUNDS, STUDY_BUDGET_HOURS = 7, 3, 160, 12
#: a working session's machine, as the project's brief gives it: 2 cores, at most 3 hours
SESSION_CORES, SESSION_HOURS = 2, 3


def timed_batches(B: float) -> tuple[int, int, int]:
    """Per-worker batches timed by ``asyncsim calibrate`` (step_b<batch>.yaml): the paper's 4, the smallest at least
    half the noise scale ``B`` (the issue's regime), and the batch-regime report's largest."""
    return 4, math.ceil(B / 2), 64


def noise_scale() -> float:
    """B_simple in sequences at the pretrained checkpoint (``asyncsim noise-scale ... --out noise_scale.csv``)."""
    return float(pd.read_csv(HERE / "noise_scale.csv")["noise_scale_sequences"].iloc[0])


def step_seconds(batch: int) -> float:
    """One local step's seconds at ``batch`` sequences on one core (``asyncsim calibrate -k 1``'s device profile)."""
    import yaml

    profile = yaml.safe_load((HERE / f"step_b{batch}.yaml").read_text())
    return float(profile["devices"][0]["seconds_per_step"])


def study_core_hours(batch: int) -> float:
    """The issue's batch-regime study at ``batch``, before any retuning: every worker's every local step, one core."""
    from sim import load_scenario

    sc = load_scenario(REPORTS.parent / "scenarios" / "lm_micro_paper.yaml")
    steps = STUDY_SETTINGS * STUDY_SEEDS * sc.workers.k * STUDY_ROUNDS * sc.schedule.H
    return steps * step_seconds(batch) / 3600


def plot_finals(res: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 0.42 * len(res) + 1.2))
    y = np.arange(len(res))[::-1]
    colors = {"reset": "tab:red", "keep": "tab:blue"}
    for yi, r in zip(y, res.itertuples()):
        seeds = [float(v) for v in r.seeds.split()]
        ax.scatter(seeds, [yi] * len(seeds), color=colors[r.inner_state], s=18, zorder=3)
        ax.errorbar(r.mean, yi, xerr=r.std, fmt="|", color="black", ms=14, capsize=3, zorder=2)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r.label} [{r.inner_state}, lr {r.outer_lr or '-'}]" for r in res.itertuples()],
                       fontsize=8)
    ax.set_xlabel("final eval perplexity, full protocol (dots: seeds; bar: mean ± std)")
    ax.scatter([], [], color="tab:red", label="AdamW reset every round (the paper)")
    ax.scatter([], [], color="tab:blue", label="AdamW kept across rounds")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_diagnostics(diag: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    for run, d in diag.groupby("run", sort=False):
        a.plot(d["steps"], d["norm_per_step"], "o-", label=run)
        b.plot(d["steps"], d["cosine"], "o-", label=run)
    a.set_xlabel("local steps in the round")
    a.set_ylabel("pseudo-gradient norm per local step")
    b.set_xlabel("local steps in the round")
    b.set_ylabel("cosine to the mean direction")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def judge(claim: Claim, a: str, b: str) -> str:
    """One cell: the claim's verdict in one setting, by the tie rule, with the two means."""
    pair = compare_rows(a, b)
    if pair is None:
        return "not run"
    holds = pair.relation == "tie" if claim.kind == "matches" else pair.relation == "lower"
    how = {"tie": "tie", "lower": "better"}.get(pair.relation, "worse")
    seeds = "" if pair.n >= 3 else f"; indicative, n = {pair.n}"
    return f"{'yes' if holds else 'no'}: {pair.a.mean:.2f} vs {pair.b.mean:.2f} ({how}{seeds})"


def findings_md() -> str:
    """The micro LM's verdicts by setting: the table the top-level README quotes (tests/test_plateau_report.py)."""
    lines = ["| micro LM, full protocol unless named | " + " | ".join(SETTINGS) + " |",
             "|---|" + "---|" * len(SETTINGS)]
    for claim in CLAIMS:
        cells = [judge(claim, *claim.settings[s]) if s in claim.settings else "-" for s in SETTINGS]
        lines.append(f"| {claim.text} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def links(key: str) -> str:
    """Links to the reports holding a row's seeds."""
    return ", ".join(f"[{'report' if i == 0 else 'more seeds'}](reports/{r}/report.md)"
                     for i, (r, _) in enumerate(sources(ROW_BY_KEY[key])) if (REPORTS / r).is_dir())


def measured(key: str) -> str:
    """A row's final perplexity as the README quotes it: mean ± std over its seeds (or "one seed")."""
    values = per_seed(ROW_BY_KEY[key])
    return "not run" if values is None else spread(stat(values))


def verdict(a: str, b: str, lower: str = "ahead", higher: str = "behind") -> str:
    """How row ``a`` stands against row ``b`` by the tie rule, in words; "indicative" below 3 seeds."""
    pair = compare_rows(a, b)
    if pair is None:
        return "not run"
    words = {"lower": lower, "higher": higher}.get(pair.relation, f"a tie ({tie_reason(pair.a, pair.b)})")
    return words + (f" (indicative, n = {pair.n})" if pair.n < 3 else "")


def sweep_cells(reports: tuple[str, ...], method: str) -> tuple[str, str, bool]:
    """A sweep's "lr / ...: perplexity / ..." cells over its reports, the best lr, and whether it is at the grid's edge."""
    _, sel = sweep_runs(reports, method)
    cells = " / ".join(sel["sweep"]) + ": " + " / ".join(f"{v:.2f}" for v in sel["final_perplexity"])
    return (cells, *best_of(sel))


def budget_words(hours: float) -> str:
    """Where the study's cost stands against the issue's budget and a working session's machine."""
    against = f"{'above' if hours > STUDY_BUDGET_HOURS else 'within'} the issue's budget of about {STUDY_BUDGET_HOURS} core-hours"
    session = SESSION_CORES * SESSION_HOURS
    if hours <= session:
        return against
    return (f"{against}, and more than the {session} core-hours a working session's machine gives here "
            f"({SESSION_CORES} cores for {SESSION_HOURS} hours; a session's run folders are not promised to the next)")


def summary_md(B: float) -> str:
    """The README's bullets under the findings table: every number computed here (tests/test_plateau_report.py)."""
    gap = {key: stat(per_seed(ROW_BY_KEY[key])).mean for key in ("dn_dylu", "diloco", "dn_dylu_keep", "diloco_keep")}
    beats_finetune = [name for name, key in (("DiLoCo", "diloco"), ("DiLoCo kept", "diloco_keep"),
                                             ("async DiLoCo", "async_diloco"), ("async DiLoCo kept", "async_keep"),
                                             ("DN + DyLU", "dn_dylu"), ("DN + DyLU kept", "dn_dylu_keep"))
                      if verdict(key, "finetune").startswith("ahead")]
    fig7 = [verdict("diloco", "async_diloco"), verdict("diloco_keep", "async_keep")]
    m1_cells, m1_best, m1_edge = sweep_cells(("lm_micro_m1_lr", "lm_micro_m1_lr_low"), "diloco")
    m1 = ROW_BY_KEY["m1"]
    small, half, large = timed_batches(B)
    reg = regime()
    leads = ", ".join(f"{r.diloco - r.finetune_1w:.2f}" for r in reg.itertuples())
    bullets = [
        f"""- **The inner optimizer state decides more than the method.** Keeping each worker's AdamW lifts every
  method: DiLoCo {measured('diloco')} -> {measured('diloco_keep')}, async DiLoCo {measured('async_diloco')} ->
  {measured('async_keep')} (at its own outer lr {ROW_BY_KEY['async_keep'].outer_lr}; at DN + DyLU's
  {ROW_BY_KEY['async_keep_03'].outer_lr} it is unstable early and ends at {measured('async_keep_03')},
  [sweep](reports/lm_micro_async_keep_lr/report.md)), DN + DyLU {measured('dn_dylu')} -> {measured('dn_dylu_keep')}.
  DiLoCo against async DiLoCo (Fig. 7): {fig7[0]} reset, {fig7[1]} kept. "DN + DyLU matches DiLoCo": it is
  {verdict('dn_dylu', 'diloco')} reset ({gap['dn_dylu'] - gap['diloco']:+.2f} perplexity) and
  {verdict('dn_dylu_keep', 'diloco_keep')} kept ({gap['dn_dylu_keep'] - gap['diloco_keep']:+.2f}).
  {'No Local-SGD method beats finetune in either setting' if not beats_finetune else 'Ahead of finetune: ' + ', '.join(beats_finetune)}.
  Weighting DN + DyLU's pseudo-gradients by work instead lifts it less: {measured('dn_dylu_work_03')} at the
  grid's lr {ROW_BY_KEY['dn_dylu_work_03'].outer_lr}, against {measured('dn_dylu_work')} at {ROW_BY_KEY['dn_dylu_work'].outer_lr}:
  {verdict('dn_dylu_work_03', 'dn_dylu_work')}.""",
        f"""- **M = 1 (Charles et al. 2025, arXiv 2503.09799):** with one worker keeping its AdamW, DiLoCo at outer lr
  {m1.outer_lr} ends at {measured('m1')} against {measured('finetune_b4')} for plain AdamW at the same batch and
  steps: {verdict('m1', 'finetune_b4')} ({links('m1')}; finetune: {links('finetune_b4')}). Its outer lr grid (seed 0,
  [sweep](reports/lm_micro_m1_lr/report.md)) gives {m1_cells}: best at {m1_best}{' (the grid edge)' if m1_edge else ''}.""",
        f"""- **Muon as the inner optimizer (MuLoCo, arXiv 2505.23725):** DiLoCo at k = 4 with Muon stepping the
  blocks' matrices (AdamW for the rest, the inner lrs and the outer lr {ROW_BY_KEY['muon'].outer_lr} not retuned for it)
  ends at {measured('muon')} against {measured('diloco')} with AdamW: {verdict('muon', 'diloco')} ({links('muon')}).""",
        f"""- **The paper's batch regime is not run at the issue's size.** The smallest per-worker batch at least half the
  gradient noise scale (B = {B:.0f} sequences) is {half}; a local step costs {step_seconds(small) * 1e3:.1f} ms at {small},
  {step_seconds(half) * 1e3:.1f} ms at {half} and {step_seconds(large) * 1e3:.1f} ms at {large} on one core, so the
  headline at that batch (4 methods, reset and kept, {STUDY_SEEDS} seeds, {STUDY_ROUNDS} rounds per worker) is
  {study_core_hours(half):.1f} core-hours at {half} before retuning any outer lr: {budget_words(study_core_hours(half))}.
  It waits for a GPU ([numbers](reports/lm_micro_plateau/README.md#the-batch-regime)). One seed at 40 rounds per
  worker ([`reports/lm_micro_batch_regime/`](reports/lm_micro_batch_regime/report.md)) shows finetune's lead
  shrinking with the batch ({leads} at {', '.join(str(b) for b in reg.index)} sequences): indicative only.""",
    ]
    return "\n".join(bullets) + "\n"


ROOT_README = REPORTS.parent / "README.md"
#: the top-level README's block this script writes: its findings table and bullets, between these two lines
README_BLOCK = ("<!-- written by reports/lm_micro_plateau/make.py: findings.md, then summary.md -->",
                "<!-- end of make.py's block -->")


def readme_with_block(body: str) -> str:
    """The top-level README with its micro-LM findings block replaced by ``body`` (the rest untouched)."""
    text = ROOT_README.read_text()
    head, found, rest = text.partition(README_BLOCK[0] + "\n")
    _, found_end, tail = rest.partition(README_BLOCK[1])
    if not (found and found_end):
        raise SystemExit(f"{ROOT_README}: the lines {README_BLOCK[0]!r} ... {README_BLOCK[1]!r} are missing")
    return head + README_BLOCK[0] + "\n" + body + README_BLOCK[1] + tail


def write(check: bool) -> int:
    res, res64 = results(), results(BATCH64)
    diag = diagnostics()
    reg = regime()
    files: dict[str, str] = {}
    files["results.csv"] = pd.concat([res.assign(batch=4), res64.assign(batch=64)]).to_csv(index=False,
                                                                                         float_format="%.6g")
    files["findings.md"] = findings_md()
    files["summary.md"] = summary_md(noise_scale())

    ans = []
    for a, b, question in COMPARISONS:
        got = answer(a, b)
        ans.append(f"| {question} | {got[0]} | {got[1]} |" if got else f"| {question} | not run | |")
    by = res.set_index("key")
    table = ["| setting | inner AdamW | steps / round | outer lr | seeds | final perplexity | simulated s | report |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res.itertuples():
        s = Stat(r.mean, r.std, r.low, r.high, r.n)
        label = f"{r.label} ({r.note})" if r.note else r.label
        table.append(f"| {label} | {r.inner_state} | {r.steps_per_round} | {r.outer_lr or '-'} | {r.n} | "
                     f"{spread(s)} | {r.simulated_seconds:,.0f} | "
                     + ", ".join(f"[{x[8:]}](../{x[8:]}/report.md)" for x in r.report.split()) + " |")
    dtab = ["| run | steps in round | syncs | norm per step | cosine |", "|---|---|---|---|---|"]
    dtab += [f"| {d.run} | {d.steps} | {d.syncs} | {d.norm_per_step:.4f} | {d.cosine:.3f} |"
             for d in diag.itertuples()]
    reset8 = diag[(diag["run"] == "DN + DyLU, reset")].set_index("steps")
    keep8 = diag[(diag["run"] == "DN + DyLU, keep")].set_index("steps")
    b64 = ["| setting | inner AdamW | outer lr | seeds | final perplexity | simulated s |", "|---|---|---|---|---|---|"]
    b64 += [f"| {r.label} | {r.inner_state} | {r.outer_lr or '-'} | {r.n} | "
            f"{spread(Stat(r.mean, r.std, r.low, r.high, r.n))} | {r.simulated_seconds:,.0f} |" for r in res64.itertuples()]
    rtab = ["| per-worker batch (sequences) | finetune | DiLoCo | DN + DyLU | DiLoCo - finetune |", "|---|---|---|---|---|"]
    rtab += [f"| {b} | {r.finetune_1w:.2f} | {r.diloco:.2f} | {r.dn_dylu:.2f} | {r.diloco - r.finetune_1w:+.2f} |"
             for b, r in zip(reg.index, reg.itertuples())]
    floor = by.loc["dn_dylu"]
    pairs = (("DiLoCo", "diloco", "diloco_keep"), ("async DiLoCo", "async_diloco", "async_keep"),
             ("DN + DyLU", "dn_dylu", "dn_dylu_keep"))
    keep_gains = "; ".join(f"{name} {by.at[a, 'mean']:.2f} -> {by.at[b, 'mean']:.2f}" for name, a, b in pairs
                           if a in by.index and b in by.index)
    lift = (floor["mean"] - by.at["dn_dylu_keep", "mean"]) if "dn_dylu_keep" in by.index else float("nan")
    B = noise_scale()
    small, half, large = timed_batches(B)
    timing = ", ".join(f"{step_seconds(b) * 1e3:.1f} ms at batch {b}" for b in (small, half, large))
    budget = budget_words(study_core_hours(half))
    readme = f"""# Why DN + DyLU stalls on the micro LM, and what lifts it (issue 23)

Written by `make.py` from the committed `runs.csv` and `diagnostics.csv` of the reports it links:
every number below is computed there (`.venv/bin/python reports/lm_micro_plateau/make.py`).
The micro LM at the paper's full protocol (24K steps pretrained, then 64K local steps on k = 4
"very" heterogeneous workers, H = 50, per-worker batch 4 x 64 tokens), 3 seeds unless a row says
otherwise. Ties follow the project's rule: seed ranges overlap, or the paired per-seed difference's
95% bootstrap interval holds 0.

## The cause, in one paragraph

As the paper ran it, each worker's AdamW restarts every round. DyLU gives the "very" fleet rounds of
50 / 38 / 19 / 8 steps, and a round of 8 steps from a fresh AdamW is mostly noise: per local step its
pseudo-gradient is {reset8.at[8, 'norm_per_step'] / reset8.at[50, 'norm_per_step']:.1f}x a 50-step
round's, with cosine {reset8.at[8, 'cosine']:.2f} to the fleet's direction against
{reset8.at[50, 'cosine']:.2f}, and the slowest worker makes {reset8.at[8, 'syncs'] / reset8['syncs'].sum():.0%}
of the server updates. DN + DyLU ends at {spread(Stat(floor['mean'], floor['std'], floor['low'], floor['high'],
int(floor['n'])))}; synchronous DiLoCo given the same step counts lands on the same floor, so it is
the short rounds with a reset optimizer, not asynchrony or staleness. Keeping each worker's AdamW
state lifts DN + DyLU by {lift:.2f} perplexity; with the state kept an 8-step round is
{keep8.at[8, 'norm_per_step'] / reset8.at[8, 'norm_per_step']:.2f}x as large per step and no better
aligned (cosine {keep8.at[8, 'cosine']:.2f}), so a 30x larger outer lr is safe.

Keeping the state lifts every method, not only DN + DyLU: {keep_gains}. Each
kept method needs its own outer lr (async DiLoCo is unstable at DN + DyLU's 0.3 and best at 0.1;
the sweeps below).

![final perplexity by setting](plateau.png)

## Every setting

{chr(10).join(table)}

`results.csv` holds each seed's value. "earlier machine": the headline's runs, made before the CPU
kernels were pinned (README, "Bit for bit"); the reset baselines recomputed here agree with them
to 0.002 per seed (DN + DyLU) and 0.05 (DiLoCo).

## The questions, answered by the tie rule

| question | answer | numbers (a vs b; paired a - b) |
|---|---|---|
{chr(10).join(ans)}

## The mechanism, recorded by the runs (seed 0, `eval.diagnostics: true`)

{chr(10).join(dtab)}

![pseudo-gradients by round length](diagnostics.png)

## The sweeps that chose an outer lr (seed 0, full budget)

{chr(10).join(sweep_table())}

## The batch regime

How finetune's lead moves with the per-worker batch (one seed, 40 rounds per worker, the outer lrs
tuned at batch 4; `reports/lm_micro_batch_regime/`):

{chr(10).join(rtab)}

At 4 sequences per worker the batch is {4 / B:.2f} of the gradient noise scale (B = {B:.0f} sequences,
[`noise_scale.csv`](noise_scale.csv), `asyncsim noise-scale` at the pretrained checkpoint), where a 4x
larger batch is almost 4x the progress and finetune's lead is largest; at 64 ({64 / B:.2f} of it) it is
small. The rows the findings table below judges at batch 64 (one seed; indicative):

{chr(10).join(b64)}

The issue's batch-regime study (the headline's methods reset and kept, each outer lr retuned at that
batch, {STUDY_SEEDS} seeds, {STUDY_ROUNDS} rounds per worker) is not run. One local step costs
{timing} on one core of this session's machine (`asyncsim calibrate -k 1`, the `step_b*.yaml` files
here), so the study's {STUDY_SETTINGS * STUDY_SEEDS} runs cost {study_core_hours(half):.1f} core-hours at batch {half} (the
smallest at least half of B) and {study_core_hours(large):.1f} at {large}, before the retuning: {budget}. It waits for a GPU.

## The findings table's micro-LM rows by setting

{files['findings.md']}"""
    files["README.md"] = readme
    paths = {name: HERE / name for name in files}
    files[README_BLOCK[0]] = readme_with_block(files["findings.md"] + "\n" + files["summary.md"])
    paths[README_BLOCK[0]] = ROOT_README
    changed = []
    for name, text in files.items():
        path = paths[name]
        if not path.exists() or path.read_text() != text:
            changed.append(name)
            if not check:
                path.write_text(text)
    if not check:
        plot_finals(res, HERE / "plateau.png")
        plot_diagnostics(diag, HERE / "diagnostics.png")
    if check and changed:
        print(f"{HERE}: would change {', '.join(changed)}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a written file would change")
    return write(parser.parse_args().check)


if __name__ == "__main__":
    raise SystemExit(main())
