"""asyncsim compare and trace: artefacts, reuse, numbers that match the runs."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from sim.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
TINY = ["--set", "schedule.t_max=160", "--set", "trainer.config.hidden=8", "--set", "trainer.config.dim=8",
        "--set", "trainer.config.shard_size=200", "--set", "trainer.config.eval_size=64", "--set", "eval.every=40",
        "--set", "schedule.grace_period=0.5"]


def test_compare_writes_everything_reuses_runs_and_tables_match(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["compare", str(ROOT / "scenarios" / "very_heterogeneous.yaml"), "--methods", "diloco,dn_dylu",
            "--seeds", "0,1", "--name", "t", *TINY]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    out = tmp_path / "reports" / "t"
    for name in ("curves_updates.png", "curves_time.png", "table.md", "table.csv", "runs.csv", "timeline.png",
                 "staleness.png", "report.md"):
        assert (out / name).exists() and (out / name).stat().st_size > 0, name
    runs_dir = tmp_path / "reports" / "runs"
    folders = sorted(runs_dir.iterdir())
    assert len(folders) == 4
    mtimes = {f: (f / "summary.json").stat().st_mtime_ns for f in folders}
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "0 computed, 4 reused" in second.output
    assert {f: (f / "summary.json").stat().st_mtime_ns for f in sorted(runs_dir.iterdir())} == mtimes
    # the table's numbers are the runs' final metrics
    table = pd.read_csv(out / "table.csv")
    for method in ("diloco", "dn_dylu"):
        finals = [json.loads((f / "summary.json").read_text())["final"]["loss"] for f in folders if f"-{method}-" in f.name]
        row = table[table["method"] == method].iloc[0]
        assert abs(row["mean"] - sum(finals) / 2) < 1e-9 and row["n"] == 2
    report = (out / "report.md").read_text()
    assert "compare" in report and "![timeline](timeline.png)" in report


def test_compare_sweep_over_workers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["compare", str(ROOT / "scenarios" / "homogeneous.yaml"), "--methods", "dn", "--sweep",
                            "workers=2,3", "--name", "w", *TINY])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "reports" / "w" / "table.md").read_text()
    assert "workers=2" in md and "workers=3" in md


def test_compare_bad_sweep_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["compare", str(ROOT / "scenarios" / "homogeneous.yaml"), "--sweep", "workers"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1


def test_trace_is_chrome_trace_format_with_a_track_per_worker(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["run", str(ROOT / "scenarios" / "very_heterogeneous.yaml"), "--out", "run", "-q", *TINY])
    assert r.exit_code == 0, r.output
    t = runner.invoke(app, ["trace", "run"])
    assert t.exit_code == 0, t.output
    data = json.loads((tmp_path / "run" / "trace.json").read_text())
    events = data["traceEvents"]
    assert all({"ph", "ts", "pid", "tid"} <= set(e) for e in events)
    train = [e for e in events if e["ph"] == "X"]
    assert {e["tid"] for e in train} == {0, 1, 2, 3} and all(e["dur"] > 0 for e in train)
    names = [e for e in events if e["ph"] == "M" and e["name"] == "thread_name"]
    assert len(names) == 5  # server + 4 workers
    assert any(e["ph"] == "i" and e["cat"] == "sync" for e in events)
    bad = runner.invoke(app, ["trace", str(tmp_path)])
    assert bad.exit_code == 2


def test_sweep_runs_the_cross_product_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["sweep", str(ROOT / "scenarios" / "very_heterogeneous.yaml"), "--grid", "method=diloco,dn", "--grid",
            "seed=0,1", "-j", "2", *TINY]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert len(list((tmp_path / "reports" / "runs").iterdir())) == 4 and "4 computed" in first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "0 computed, 4 reused" in second.output
    assert len(list((tmp_path / "reports" / "runs").iterdir())) == 4
