"""``asyncsim diff`` (two resolved scenarios or runs, field by field) and ``asyncsim report`` (a comparison
report drawn again from its runs, or from its CSVs once the runs are gone), on a toy compare of two tiny runs.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sim.cli import app

ROOT = Path(__file__).resolve().parent.parent
SCEN = ROOT / "scenarios" / "very_heterogeneous.yaml"
TINY = ["-s", "schedule.t_max=120", "-s", "trainer.config.hidden=16", "-s", "trainer.config.shard_size=500",
        "-s", "eval.every=60"]
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), terminal_width=80)


def fits(output: str) -> bool:
    return all(len(line) <= 80 for line in output.splitlines())


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A toy compare (diloco, dn_dylu; one seed) with a relative store, as reports are made."""
    base = tmp_path_factory.mktemp("study")
    here = os.getcwd()
    os.chdir(base)
    try:
        r = invoke("compare", str(SCEN), "--methods", "diloco,dn_dylu", "--seeds", "0", *TINY, "--out", "rep",
                   "--runs", "store", "-q", "-j", "1")
    finally:
        os.chdir(here)
    assert r.exit_code == 0, r.output
    return base


@pytest.fixture
def copy(study, tmp_path, monkeypatch) -> Path:
    """This test's own copy of the study, as the working directory (runs.csv names ``store/...``)."""
    shutil.copytree(study, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_diff_names_each_differing_field_of_the_resolved_scenarios(tmp_path):
    r = invoke("diff", "very_heterogeneous", str(SCEN))
    assert r.exit_code == 0 and r.output.count("\n") == 1 and r.output.startswith("identical: "), r.output
    tuned = tmp_path / "tuned.yaml"
    tuned.write_text(SCEN.read_text(encoding="utf-8") + "\n# tuned\n", encoding="utf-8")
    tuned.write_text(tuned.read_text(encoding="utf-8").replace("method: dn_dylu", "method: {preset: dn_dylu, "
                                                               "outer: {lr: 0.3}}"), encoding="utf-8")
    r = invoke("diff", str(SCEN), str(tuned))
    assert r.exit_code == 1 and r.output.splitlines() == ["method.outer.lr: 0.7 -> 0.3"], r.output
    r = invoke("diff", "very_heterogeneous", "homogeneous", "--method", "diloco")  # presets expanded on both sides
    lines = r.output.splitlines()
    assert r.exit_code == 1 and "workers.fleet: very_heterogeneous -> homogeneous" in lines, r.output
    assert "workers.devices[3].seconds_per_step: 3.33 -> 1.2161" in lines and fits(r.output)
    assert not any(line.startswith("method.") for line in lines)


def test_diff_of_two_run_folders_adds_their_summaries(study):
    a, b = sorted((study / "store").iterdir())  # diloco's run, then dn_dylu's
    r = invoke("diff", str(a), str(b))
    lines = r.output.splitlines()
    assert r.exit_code == 1 and "method.preset: diloco -> dn_dylu" in lines and "method.dylu: false -> true" in lines
    assert any(line.startswith("summary.run_hash: ") for line in lines)
    assert any(line.startswith("summary.scenario_digest: ") for line in lines)
    assert any(line.startswith("summary.final.loss: ") for line in lines) and fits(r.output), r.output
    r = invoke("diff", str(a), str(a))
    assert r.exit_code == 0 and r.output.startswith("identical: the same scenario and the same run"), r.output
    r = invoke("diff", str(a), str(SCEN), "--method", "diloco", *TINY)  # a run against the scenario that made it
    assert r.exit_code == 0, r.output
    r = invoke("diff", str(a), str(b), "--set", "schedule.H=5")
    assert r.exit_code == 2 and "run folders" in r.output


@pytest.mark.parametrize("args, named", [
    (["nowhere.yaml", str(SCEN)], "nowhere.yaml: no such file"),
    ([str(SCEN), str(ROOT / "tests")], "not a run folder"),
    ([str(SCEN), str(SCEN), "--set", "method.outer.lr=-1"], "--set method.outer.lr=-1"),
])
def test_diff_errors_are_one_line_exit_2(args, named):
    r = invoke("diff", *args)
    assert r.exit_code == 2 and named in r.output and r.output.count("\n") == 1, r.output
    assert "Traceback" not in r.output


def test_compare_keeps_its_curves_as_csv(study):
    names = set(contents(study / "rep"))
    assert {"curves.csv", "runs.csv", "table.csv", "time_per_worker.csv", "time_to_target.csv"} <= names


def test_report_from_its_run_folders_draws_the_same_bytes_and_touches_nothing_else(copy):
    (copy / "rep" / "notes.md").write_text("mine\n", encoding="utf-8")
    before = contents(copy / "rep")
    r = invoke("report", "rep")
    assert r.exit_code == 0 and "from its run folders" in r.output and fits(r.output), r.output
    assert "not drawn" not in r.output
    assert contents(copy / "rep") == before  # every table and plot as compare drew it; notes.md untouched


def test_report_without_its_runs_draws_from_its_csvs_and_says_what_it_cannot(copy):
    (copy / "rep" / "notes.md").write_text("mine\n", encoding="utf-8")
    before = contents(copy / "rep")
    shutil.rmtree(copy / "store")  # committed reports: the run store is git-ignored
    r = invoke("report", "rep")
    out = " ".join(r.output.split())
    assert r.exit_code == 0 and "from its CSVs (2 of 2 run folders are gone)" in out and fits(r.output), r.output
    assert "not drawn: timeline.png, staleness.png (need the runs' events)" in out
    after = contents(copy / "rep")
    assert set(after) == set(before)  # nothing made, nothing removed
    same = [name for name in before if after[name] == before[name]]
    assert sorted(set(before) - set(same)) == ["report.md"]  # tables and plots as before; curves from curves.csv
    lines = after["report.md"].decode().splitlines()
    note = next(i for i, line in enumerate(lines) if line.startswith("Drawn again from this folder's CSVs"))
    assert "Not drawn: timeline.png, staleness.png (need the runs' events)" in lines[note]
    assert lines[:note] + lines[note + 2:] == before["report.md"].decode().splitlines()  # only that note added
    (copy / "rep" / "curves.csv").unlink()  # an older report: no curves kept
    (copy / "rep" / "diagnostics.csv").write_text(  # runs that recorded eval.diagnostics
        "method,sweep,steps,syncs,norm_per_step,cosine,update_norm\ndn_dylu,,20,3,0.01,0.5,0.004\n", encoding="utf-8")
    r = invoke("report", "rep")
    out = " ".join(r.output.split())
    assert r.exit_code == 0 and "curves_updates.png, curves_time.png (need the runs' metrics)" in out, r.output
    assert "diagnostics.png (need the runs' events)" in out and not (copy / "rep" / "diagnostics.png").exists()
    report = (copy / "rep" / "report.md").read_text(encoding="utf-8")
    assert "| dn_dylu | 20 | 3 | 0.01 | 0.500 | 0.004 |" in report and "![curves vs time]" in report


def test_a_run_folder_that_does_not_prove_itself_is_named_and_left_as_it_is(copy):
    import json

    run = sorted((copy / "store").iterdir())[0]
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    (run / "summary.json").write_text(json.dumps({**summary, "run_hash": "0" * 64}), encoding="utf-8")
    before = {p.name for p in (copy / "store").iterdir()}
    r = invoke("report", "rep")
    out = " ".join(r.output.split())
    assert r.exit_code == 0 and f"from its CSVs ({Path('store') / run.name}: not used," in out, r.output
    assert {p.name for p in (copy / "store").iterdir()} == before  # not set aside: report changes no store


def test_report_refuses_a_folder_it_did_not_make(copy):
    mine = copy / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("# my notes\n", encoding="utf-8")
    (mine / "runs.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    for folder, named in ((mine, "not a comparison report"), (copy / "nowhere", "no such report folder")):
        before = contents(mine)
        r = invoke("report", str(folder))
        assert r.exit_code == 2 and named in r.output and r.output.count("\n") == 1, r.output
        assert contents(mine) == before
    top = copy / "paper"  # titled as a reproduce report, but no reproduce command made it (tests/test_findings_rescore.py)
    shutil.copytree(copy / "rep", top / "headline")
    (top / "report.md").write_text("# Reproducing the paper's findings: x.yaml\n", encoding="utf-8")
    before = contents(top)
    r = invoke("report", str(top))
    assert r.exit_code == 2 and "not a reproduce report made by asyncsim" in r.output, r.output
    assert contents(top) == before
