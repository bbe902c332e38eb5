"""One vocabulary: the options commands share have the same names, meaning and defaults everywhere."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sim.cli import app

ROOT = Path(__file__).resolve().parent.parent
SCEN = str(ROOT / "scenarios" / "very_heterogeneous.yaml")
RUN_COMMANDS = ("run", "compare", "sweep", "reproduce")
#: every command that computes runs takes these
SHARED = ("--set", "--method", "--seed", "--out", "--runs", "--jobs", "--quiet")
runner = CliRunner()


def options() -> dict[str, dict[str, object]]:
    group = typer.main.get_command(app)
    table = {}
    for name, command in group.commands.items():
        table[name] = {opt: param for param in command.params for opt in getattr(param, "opts", [])}
    return table


@pytest.mark.parametrize("option", SHARED)
def test_shared_options_are_one_definition(option):
    table = options()
    commands = [cmd for cmd in RUN_COMMANDS if not (option == "--method" and cmd == "reproduce")]  # its methods are the paper's
    params = [table[cmd][option] for cmd in commands]
    first = params[0]
    for cmd, param in zip(commands, params):
        assert sorted(param.opts + param.secondary_opts) == sorted(first.opts + first.secondary_opts), cmd
        if option != "--out":  # --out is where *this* command's output goes
            assert param.help == first.help, cmd
        if option in ("--set", "--runs", "--jobs", "--quiet"):
            assert param.default == first.default, cmd
    assert table["run"]["--runs"].envvar == "ASYNCSIM_RUNS"


def test_aliases_and_short_forms_are_the_same_everywhere():
    table = options()
    for cmd in RUN_COMMANDS:
        if cmd != "reproduce":
            assert table[cmd]["--methods"] is table[cmd]["--method"] is table[cmd]["-m"]
        assert table[cmd]["--seeds"] is table[cmd]["--seed"]
        assert table[cmd]["-o"] is table[cmd]["--out"] and table[cmd]["-j"] is table[cmd]["--jobs"]
    for cmd in ("compare", "reproduce"):
        assert "--force" in table[cmd]
    assert table["compare"]["--method-set"].help == table["reproduce"]["--method-set"].help


def test_mistakes_in_shared_options_name_the_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["compare", SCEN, "--seeds", ""])
    assert r.exit_code == 2 and "--seed" in r.output and "comma-separated" in r.output
    r = runner.invoke(app, ["sweep", SCEN, "--grid", "method"])
    assert r.exit_code == 2 and "--grid" in r.output and "--sweep" not in r.output, r.output
    r = runner.invoke(app, ["run", SCEN, "--executor", "gpu"])
    assert r.exit_code == 2 and r.output.strip().count("\n") == 0 and "━" not in r.output  # no stray bar
    r = runner.invoke(app, ["run", SCEN, "--method", "diloco,dn_dylu"])
    assert r.exit_code == 2 and "one method" in r.output


def test_runs_option_moves_the_run_store_for_every_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fast = ["-s", "schedule.t_max=120", "-s", "trainer.config.hidden=16", "-s", "trainer.config.shard_size=500",
            "-s", "eval.every=60", "-q", "-j", "1", "--runs", "store"]
    assert runner.invoke(app, ["run", SCEN, *fast]).exit_code == 0
    assert runner.invoke(app, ["sweep", SCEN, "--seed", "0,1", *fast]).exit_code == 0
    r = runner.invoke(app, ["compare", SCEN, "--method", "dn_dylu", "--seed", "0,1", "--out", "rep", *fast])
    assert r.exit_code == 0 and "(0 computed, 2 reused)" in r.output, r.output
    assert len(list((tmp_path / "store").iterdir())) == 2 and not (tmp_path / "reports" / "runs").exists()


def test_tables_fit_80_columns_without_cutting_names(tmp_path, monkeypatch):
    from sim.presets import PRESETS

    out = runner.invoke(app, ["methods"], terminal_width=80).output
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "…" not in out and all(re.search(rf"^{name}\s", out, re.M) for name in PRESETS)
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["sweep", SCEN, "--grid", "schedule.H=10,50", "-s", "schedule.t_max=120",
                            "-s", "trainer.config.hidden=16", "-s", "eval.every=60", "-q", "-j", "1"], terminal_width=80)
    assert r.exit_code == 0 and "H=10" in r.output and "H=50" in r.output and "…" not in r.output, r.output
    assert all(len(line) <= 80 for line in r.output.splitlines())
    models = runner.invoke(app, ["models"], terminal_width=80).output
    assert "…" not in models and all(len(line) <= 80 for line in models.splitlines())


def test_run_progress_moves_with_synced_local_steps_not_only_at_evaluations():
    from sim import load_scenario, simulate

    calls = []
    sc = load_scenario(SCEN, overrides={"schedule.t_max": 240, "trainer.config.hidden": 16, "eval.every": 120})
    simulate(sc, progress=lambda t_local, t_max, row: calls.append((t_local, row is not None)))
    steps = [t for t, _ in calls]
    evals = sum(is_eval for _, is_eval in calls)
    assert steps == sorted(steps) and len(calls) > 3 * evals and steps[-1] >= 240


@pytest.mark.parametrize("argv", [["--help"], ["validate", SCEN], ["methods"], ["profiles"], ["run", "--help"]])
def test_quick_commands_do_not_import_torch(argv):
    """--help, validate, methods and profiles answer in well under a second: no torch (or pandas) import."""
    import subprocess
    import sys

    code = ("import sys\nfrom sim.cli import app\n"
            "try:\n    app(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('HEAVY', sorted(m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout[-300:]
