"""``eval.diagnostics``: per-update pseudo-gradient norm, cosine to the mean direction and outer-step norm."""
from __future__ import annotations

import math

import pytest

from sim import simulate
from sim.diagnostics import DIAGNOSTIC_COLUMNS
from tests.helpers import TINY_TOY, scenario

VERY = [0.58, 0.75, 1.51, 3.33]


def test_off_by_default_absent_from_the_log_and_the_identity():
    plain = scenario(VERY, preset="dn_dylu", trainer="toy", trainer_config=TINY_TOY, t_max=100)
    off = scenario(VERY, preset="dn_dylu", trainer="toy", trainer_config=TINY_TOY, t_max=100,
                   eval_diagnostics=False)
    assert "diagnostics" not in plain.resolved()["eval"] and off.digest() == plain.digest()
    run = simulate(plain)
    assert not set(DIAGNOSTIC_COLUMNS) & set(run.events.columns)
    on = scenario(VERY, preset="dn_dylu", trainer="toy", trainer_config=TINY_TOY, t_max=100, eval_diagnostics=True)
    assert on.digest() != plain.digest()
    diag = simulate(on)
    assert diag.metrics.equals(run.metrics)  # the same training, only more columns
    assert diag.events[list(run.events.columns)].equals(run.events)


@pytest.mark.parametrize("preset", ["diloco", "async_sgd"])
def test_the_columns_measure_what_they_say(preset):
    """The null trainer's pseudo-gradients are all multiples of the model (cosine 1 to any mean of them), so with
    outer SGD at lr 1 a step moves the model by the norm of the mean, and a lone arrival by its own norm."""
    sc = scenario([1.0, 2.0], preset=preset, H=4, t_max=40, lr=0.05, eval_diagnostics=True,
                  method={"outer": {"name": "sgd", "lr": 1.0}})
    events = simulate(sc).events
    syncs = events[events["event"] == "sync"]
    assert len(syncs) > 4 and syncs["delta_norm"].gt(0).all()
    assert (syncs["cosine"] - 1).abs().max() < 1e-12
    for _, step in syncs.groupby("server_version"):
        assert math.isclose(step["update_norm"].iloc[0], step["delta_norm"].mean(), rel_tol=1e-12)
    others = events[events["event"] != "sync"]
    assert others[list(DIAGNOSTIC_COLUMNS)].isna().all().all()


def test_compare_reports_the_diagnostics_by_round_length_when_runs_recorded_them(tmp_path, monkeypatch):
    import pandas as pd
    from typer.testing import CliRunner

    from sim.cli import app

    monkeypatch.chdir(tmp_path)
    scen = str(__import__("pathlib").Path(__file__).resolve().parent.parent / "scenarios" / "very_heterogeneous.yaml")
    fast = ["--set", "schedule.t_max=400", "--set", "trainer.config.hidden=16", "--set", "trainer.config.shard_size=500",
            "--set", "eval.every=200", "-q", "-j", "1"]
    r = CliRunner().invoke(app, ["compare", scen, "--methods", "diloco,dn_dylu", "--set", "eval.diagnostics=true",
                                 "--out", "with", *fast])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(tmp_path / "with" / "diagnostics.csv")
    assert set(table["method"]) == {"diloco", "dn_dylu"} and table[table["method"] == "dn_dylu"]["steps"].nunique() > 1
    assert (tmp_path / "with" / "diagnostics.png").stat().st_size > 0
    assert "## Per-update diagnostics" in (tmp_path / "with" / "report.md").read_text()
    plain = CliRunner().invoke(app, ["compare", scen, "--methods", "diloco", "--out", "without", *fast])
    assert plain.exit_code == 0 and not (tmp_path / "without" / "diagnostics.csv").exists()
    assert "Per-update diagnostics" not in (tmp_path / "without" / "report.md").read_text()
