"""Run folders of an older simulation are kept only when this engine reproduces their schedule exactly."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from sim.cli import app

ROOT = Path(__file__).resolve().parent.parent
SCEN = str(ROOT / "scenarios" / "very_heterogeneous.yaml")
FAST = ["--set", "schedule.t_max=240", "--set", "trainer.config.hidden=16", "--set", "trainer.config.shard_size=500",
        "--set", "eval.every=120", "-q"]
runner = CliRunner()


def as_older_simulation(folder: Path) -> Path:
    """Make a run folder look like one the float engine wrote: no simulation version, another digest in its name."""
    summary = json.loads((folder / "summary.json").read_text())
    del summary["simulation"]
    (folder / "summary.json").write_text(json.dumps(summary))
    old = folder.with_name(folder.name[:-12] + "0" * 12)
    folder.rename(old)
    return old


@pytest.mark.parametrize("method", ["dn_dylu", "finetune_1w", "diloco"])
def test_an_old_folder_with_the_same_schedule_is_adopted_without_computing(tmp_path, monkeypatch, method):
    monkeypatch.chdir(tmp_path)
    first = runner.invoke(app, ["run", SCEN, "--method", method, *FAST])
    assert first.exit_code == 0, first.output
    folder = next((tmp_path / "reports" / "runs").iterdir())
    old = as_older_simulation(folder)
    monkeypatch.setattr("sim.runner.simulate", lambda *a, **k: pytest.fail("the adopted run was computed again"))
    again = runner.invoke(app, ["run", SCEN, "--method", method, *FAST])
    assert again.exit_code == 0 and "reused" in again.output, again.output
    assert folder.exists() and not old.exists()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["adopted"] == {"from_simulation": 1, "schedule_checked": True} and summary["simulation"] >= 2


def test_an_old_folder_whose_schedule_differs_is_computed_again(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = runner.invoke(app, ["run", SCEN, *FAST])
    folder = next((tmp_path / "reports" / "runs").iterdir())
    old = as_older_simulation(folder)
    events = pd.read_parquet(old / "events.parquet")
    events.loc[events.index[-1], "tau"] += 1e-13  # a tie the float engine split
    events.to_parquet(old / "events.parquet", index=False)
    again = runner.invoke(app, ["run", SCEN, *FAST])
    assert again.exit_code == 0 and "finished" in again.output, again.output
    assert old.exists() and folder.exists()  # the old one is left as it was, the new one computed
    assert first.output.split("run hash: ")[1].split()[0] == again.output.split("run hash: ")[1].split()[0]
