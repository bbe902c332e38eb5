"""A run that blows up stops with one clear line, keeps its metrics and is marked diverged."""
import json
from pathlib import Path

from typer.testing import CliRunner

from sim import simulate
from sim.cli import app
from tests.helpers import TINY_TOY, scenario

ROOT = Path(__file__).resolve().parent.parent


def test_huge_outer_lr_stops_cleanly_with_partial_metrics():
    sc = scenario([0.58, 0.75, 1.51, 3.33], preset="async_diloco", trainer="toy", trainer_config=TINY_TOY, t_max=2000,
                  eval_every=20, method={"outer": {"lr": 1e6}})
    result = simulate(sc)
    s = result.summary
    assert s["status"] == "diverged"
    assert "async_diloco diverged at server update" in s["diverged"] and "worker" in s["diverged"]
    assert len(result.metrics) >= 2 and result.metrics["t_local"].iloc[-1] < 2000


def test_cli_reports_divergence_and_compare_tables_show_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scen = str(ROOT / "scenarios" / "very_heterogeneous.yaml")
    small = ["--set", "trainer.config.hidden=16", "--set", "trainer.config.shard_size=500", "--set", "schedule.t_max=400"]
    r = CliRunner().invoke(app, ["run", scen, "--set", "method.outer.lr=1e6", "--out", "d", "-q", *small])
    # a diverged run keeps its folder but exits non-zero, with one error line
    assert r.exit_code == 4 and "diverged at server update" in r.output, r.output
    assert [line for line in r.output.splitlines() if line.startswith("error:")] == [r.output.splitlines()[-1]]
    assert json.loads((tmp_path / "d" / "summary.json").read_text())["status"] == "diverged"
    c = CliRunner().invoke(app, ["compare", scen, "--methods", "diloco,dn_dylu", "--set", "method.outer.lr=1e6", "--name", "x", "-j", "1", *small])
    assert c.exit_code == 0, c.output
    assert "diverged" in (tmp_path / "reports" / "x" / "table.md").read_text()
