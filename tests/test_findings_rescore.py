"""A committed reproduce report judged again from its runs.csv files (sim/rescore.py, ``asyncsim report FOLDER``).

The report here is made by hand, as an older reproduce wrote it (verdict
lines without seeds and budget): a Table 2 section whose verdict the old
rule called "partly reproduced" although finetune leads at every k, and a
Tables 1-3 section that needs the runs' curves, which no CSV holds.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from sim import compare as cmp
from sim.cli import app
from sim.findings import NotRecorded, advantage_shrinks_with_workers, local_sgd_beats_finetune
from sim.rescore import NOTE, committed_results, cut
from sim.reproduce import experiments
from sim.runner import run_folder_name
from sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
SCEN = ROOT / "scenarios" / "very_heterogeneous.yaml"
COMMAND = f"asyncsim reproduce {SCEN} --name paper --seeds 0,1,2"
CURVES = ("### Local-SGD (DiLoCo and DN + DyLU) beats single-worker finetuning with k x batch per update, "
          "and the advantage grows late in training (Tables 1-3)\n\n**not reproduced**\n\n"
          "- finetune_1w 1.0010 ± 0.0010 (n=3)\n- as written by an older reproduce\n\n")
TABLE_2 = ("### With k = 4, 8, 16 workers the Local-SGD advantage over finetuning shrinks as k grows, and DN + DyLU "
           "stays within DiLoCo's spread (Table 2)\n\n**partly reproduced**\n\n"
           "- advantage by k: -0.2000, -0.2100, -0.2200 (shrinks as k grows)\n\n")
#: final loss by method: finetune leads at every k, DN + DyLU well behind DiLoCo
LOSS = {"finetune_1w": 1.0, "diloco": 1.2, "async_diloco": 1.5, "dn_dylu": 1.4}
#: and per step of k: finetune's lead grows, -0.20, -0.21, -0.22
GROWTH = {"finetune_1w": 0.0, "diloco": 0.01, "async_diloco": 0.01, "dn_dylu": 0.01}


def runs_table(name: str) -> pd.DataFrame:
    """runs.csv of one experiment as reproduce would record it: the planned runs' folders, made-up final losses."""
    base = load_scenario(SCEN)
    exp = next(e for e in experiments(base) if e.name == name)
    specs, _ = cmp.plan([SCEN], list(exp.methods), [0, 1, 2], exp.sweep)
    sweeps = list(dict.fromkeys(str(s.sweep_value) if s.sweep_value is not None else "" for s in specs))
    rows = [{"scenario": s.scenario.name, "sweep": str(s.sweep_value) if s.sweep_value is not None else "",
             "method": s.method, "seed": s.seed, "status": "finished", "simulated_seconds": 100.0,
             "run_hash": f"{i:064x}", "folder": f"reports/runs/{run_folder_name(s.scenario)}",
             "final_loss": LOSS[s.method] + GROWTH[s.method] * sweeps.index(str(s.sweep_value) if s.sweep_value else "")
             + 0.001 * s.seed} for i, s in enumerate(specs)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return {name: runs_table(name) for name in ("headline", "workers")}


@pytest.fixture
def paper(tmp_path, tables, monkeypatch) -> Path:
    """A committed reproduce report: report.md and each experiment's runs.csv; its run folders are gone."""
    monkeypatch.setenv("ASYNCSIM_RUNS", str(tmp_path / "store"))
    folder = tmp_path / "paper"
    for name, table in tables.items():
        (folder / name).mkdir(parents=True)
        table.to_csv(folder / name / "runs.csv", index=False)
    (folder / "report.md").write_text(
        f"# Reproducing the paper's findings: very_heterogeneous.yaml\n\nMade by:\n\n    {COMMAND}\n\n"
        "Base scenario as written.\n\n## Findings\n\n" + CURVES + TABLE_2
        + "## Experiments\n\n- [Tables 1-3: the headline](headline/report.md) (full budget)\n"
        "- [Table 2: k = 4, 8, 16 workers](workers/report.md) (full budget)\n", encoding="utf-8")
    (folder / "mine.md").write_text("a user's notes\n", encoding="utf-8")
    return folder


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_results_from_runs_csv_alone_rescore_a_final_only_finding(paper):
    before = contents(paper)
    res, plan = committed_results(paper)
    assert contents(paper) == before  # reading writes nothing
    assert res.metric == "loss" and res.sweep_values("workers") == ["4", "8", "16"]
    # the recorded command, planned again, names exactly runs.csv's runs: the budget is known
    assert plan.why_not is None and plan.steps_per_round == 4 * 20
    assert str(res.basis("workers")) == "n = 3 seeds; t_max 32000 local steps, 100-400 rounds per worker"
    f = advantage_shrinks_with_workers(res)
    assert f.verdict.startswith("not reproduced: no advantage over finetune that shrinks with k")
    assert f.evidence[-1].endswith("no advantage at any k, finetune leads and its lead grows as k grows")


def test_a_plan_that_names_other_runs_leaves_the_budget_unknown(paper, tables):
    other = tables["workers"].copy()
    other.loc[0, "folder"] = "reports/runs/very_heterogeneous-finetune_1w-s0-000000000000"  # made by another scenario
    other.to_csv(paper / "workers" / "runs.csv", index=False)
    res, plan = committed_results(paper)
    assert str(res.basis("workers")) == "n = 3 seeds; budget unknown" and "does not name the runs" in plan.why_not
    assert plan.steps_per_round is None


def test_a_finding_that_needs_curves_is_kept_byte_for_byte(paper):
    res, _ = committed_results(paper)
    with pytest.raises(NotRecorded, match="curves"):
        local_sgd_beats_finetune(res)
    r = CliRunner().invoke(app, ["report", str(paper)], terminal_width=80)
    assert r.exit_code == 0, r.output
    sections = cut((paper / "report.md").read_text(encoding="utf-8")).sections
    assert sections[0] == CURVES and sections[1] != TABLE_2


def test_report_rescores_a_reproduce_report_whose_runs_are_gone(paper):
    before = contents(paper)
    r = CliRunner().invoke(app, ["report", str(paper)], terminal_width=80)
    out = " ".join(r.output.split())
    assert r.exit_code == 0, r.output
    assert "36 of 36 run folders are gone" in out and "verdicts changed: Table 2: partly -> not" in out  # k = 4 shared
    text = (paper / "report.md").read_text(encoding="utf-8")
    note = next(line for line in text.splitlines() if line.startswith(NOTE))
    assert "Table 2." in note and "Kept as first written (they need the runs' curves" in note and "Tables 1-3" in note
    assert "**not reproduced: no advantage over finetune that shrinks with k; k = 4: dn_dylu worse than diloco" in text
    assert "(n = 3 seeds; t_max 32000 local steps, 100-400 rounds per worker)" in text
    after = contents(paper)
    assert {k for k in after if after[k] != before[k]} == {"report.md"} and set(after) == set(before)
    r = CliRunner().invoke(app, ["report", str(paper)], terminal_width=80)
    assert r.exit_code == 0 and "no verdict changed" in r.output, r.output
    assert (paper / "report.md").read_text(encoding="utf-8") == text  # the note replaced, not added twice


@pytest.mark.parametrize("spoil, named", [
    ("command", "not a reproduce report made by asyncsim"),
    ("runs.csv", "not a table of runs made by asyncsim"),
])
def test_report_refuses_a_reproduce_report_asyncsim_did_not_make(paper, spoil, named):
    if spoil == "command":
        text = (paper / "report.md").read_text(encoding="utf-8")
        (paper / "report.md").write_text(text.replace(COMMAND, "python my_script.py"), encoding="utf-8")
    else:
        (paper / "workers" / "runs.csv").write_text("k,loss\n4,1.0\n", encoding="utf-8")
    before = contents(paper)
    r = CliRunner().invoke(app, ["report", str(paper)], terminal_width=400)
    assert r.exit_code == 2 and named in r.output and r.output.count("\n") == 1, r.output
    assert contents(paper) == before


def test_report_leaves_a_reproduce_report_whose_runs_are_at_hand_to_its_command(paper, monkeypatch):
    monkeypatch.setattr("sim.rescore.runs_at_hand", lambda runs, store: None)  # every run folder there and proven
    before = contents(paper)
    r = CliRunner().invoke(app, ["report", str(paper)], terminal_width=400)
    assert r.exit_code == 2 and "run folders are at hand" in r.output and COMMAND in r.output, r.output
    assert contents(paper) == before
