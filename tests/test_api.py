"""``import asyncsim``: the CLI's study commands from Python, returning frames (issue 26).

The API must mirror the CLI, not re-implement it: the same runs in the same
store (either reuses the other's), the same report that the same command
line may rewrite, the same one-line errors and output checks. The README's
example must run as written.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import asyncsim
from sim.cli import app
from sim.errors import UserError
from sim.outputs import check_report_destination

ROOT = Path(__file__).resolve().parent.parent
SCEN = str(ROOT / "scenarios" / "very_heterogeneous.yaml")
#: test_compare.py's TINY as a mapping: a run in a fraction of a second
TINY = {"schedule.t_max": 160, "trainer.config.hidden": 8, "trainer.config.dim": 8,
        "trainer.config.shard_size": 200, "trainer.config.eval_size": 64, "eval.every": 40}
TINY_ARGS = [arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")]
runner = CliRunner()


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """A working directory of its own, and the run store inside it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASYNCSIM_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def readme_example() -> str:
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Python API section has one example"
    return blocks[0]


def test_readme_python_example_runs_as_written(store, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt

    names: dict = {}
    exec(compile(readme_example(), "README.md (Python API)", "exec"), names)  # noqa: S102 - the README's own code
    plt.close("all")
    assert list(names["study"].table["method"]) == ["diloco", "dn_dylu"] and set(names["study"].table["n"]) == {2}
    assert names["grid"].computed == 1  # as the README says: H=20 is the study's run
    assert names["run"].folder.parent == store and names["run"].scenario.method.preset == "dn_dylu"


def test_compare_returns_what_the_cli_writes_and_shares_its_runs_and_report(store, tmp_path):
    study = asyncsim.compare(SCEN, methods=["diloco", "dn_dylu"], seeds=0, sets=TINY, jobs=1, out="rep")
    assert study.computed == 2 and study.out == Path("rep") / "report.md" and study.out.is_file()
    written = pd.read_csv(tmp_path / "rep" / "runs.csv")
    assert list(written["run_hash"]) == list(study.runs["run_hash"])
    assert list(written["final_loss"]) == list(study.runs["final_loss"])
    assert list(pd.read_csv(tmp_path / "rep" / "table.csv")["mean"]) == list(study.table["mean"])
    assert set(study.metrics["method"]) == {"diloco", "dn_dylu"} and "sync" in set(study.events["event"])
    assert asyncsim.compare(SCEN, methods="diloco,dn_dylu", sets=TINY, jobs=1).computed == 0  # reused
    # the report records the CLI's command line, so that command may rewrite it (drawing it again costs seconds:
    # the check it passes is enough) and any other is refused without force=True
    cli = shlex.join(["asyncsim", "compare", SCEN, "--methods", "diloco,dn_dylu", "--seeds", "0", *TINY_ARGS,
                      "--out", "rep"])
    check_report_destination(Path("rep"), cli, force=False)
    with pytest.raises(UserError, match="rep: was made by `asyncsim compare"):
        asyncsim.compare(SCEN, methods="diloco", sets=TINY, jobs=1, out="rep")


def test_sweep_mirrors_the_cli_and_its_csv_never_replaces_a_users_file(store, tmp_path):
    grid = asyncsim.sweep(SCEN, {"schedule.H": [10, 20]}, methods="dn_dylu", sets=TINY, jobs=1, out="grid.csv")
    assert grid.computed == 2 and list(grid.runs["sweep"]) == ["H=10", "H=20"]
    assert list(pd.read_csv("grid.csv")["run_hash"]) == list(grid.runs["run_hash"])
    cli = runner.invoke(app, ["sweep", SCEN, "--grid", "schedule.H=10,20", "--method", "dn_dylu", *TINY_ARGS, "-q"])
    assert cli.exit_code == 0 and "0 computed, 2 reused" in cli.output, cli.output
    # the CLI's own spelling of an axis is the same sweep
    assert asyncsim.sweep(SCEN, ["schedule.H=10,20"], methods=["dn_dylu"], sets=TINY, jobs=1).computed == 0
    mine = tmp_path / "mine.csv"
    mine.write_text("my,own\n1,2\n")
    with pytest.raises(UserError, match="mine.csv: exists and was not made by asyncsim"):
        asyncsim.sweep(SCEN, {"schedule.H": [10, 20]}, methods="dn_dylu", sets=TINY, jobs=1, out=mine)
    assert mine.read_text() == "my,own\n1,2\n"
    asyncsim.sweep(SCEN, {"schedule.H": [10, 20]}, methods="dn_dylu", sets=TINY, jobs=1, out=mine, force=True)
    assert pd.read_csv(mine)["sweep"].tolist() == ["H=10", "H=20"]


def test_load_run_loads_a_proven_folder_and_refuses_others_in_one_line(store, tmp_path):
    sc = asyncsim.load_scenario(SCEN, overrides=TINY, method="dn_dylu")
    made = asyncsim.run(sc, out=tmp_path / "one", plots=False)
    loaded = asyncsim.load_run(tmp_path / "one")
    assert loaded.run_hash == made.run_hash and loaded.scenario.digest() == sc.digest()
    pd.testing.assert_frame_equal(loaded.metrics, made.metrics)
    assert loaded.summary["status"] == "finished" and len(loaded.events) == len(made.events)

    def refused(folder: Path, words: str) -> None:
        with pytest.raises(UserError) as err:
            asyncsim.load_run(folder)
        message = str(err.value)
        assert message.startswith(f"{folder}: cannot load") and words in message and "\n" not in message

    refused(tmp_path / "nowhere", "no such folder")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    refused(tmp_path / "notes", "no summary.json")
    edited = tmp_path / "edited"
    shutil.copytree(tmp_path / "one", edited)
    csv = (edited / "metrics.csv").read_text().splitlines()
    csv[-1] = csv[-1].replace(csv[-1].split(",")[-1], "0.5")  # one number of the last row
    (edited / "metrics.csv").write_text("\n".join(csv) + "\n")
    refused(edited, "metrics.csv and events.csv do not hash to the run hash")
    (edited / "metrics.csv").write_text((tmp_path / "one" / "metrics.csv").read_text())
    (edited / "scenario.yaml").write_text("schedule: {H: -1}\n")
    refused(edited, "scenario.yaml does not validate")
    assert (tmp_path / "one").is_dir() and not list(tmp_path.glob("*.damaged*"))  # nothing was moved


def test_wrong_arguments_are_one_line_user_errors_before_anything_runs(store, tmp_path):
    cases = [
        (dict(methods="diloco,diloco"), "methods 'diloco,diloco': 'diloco' is given twice"),
        (dict(seeds=[0, 1, 0]), "seeds '0,1,0': 0 is given twice"),
        (dict(seeds=["a"]), "seeds ['a']: expected integers"),
        (dict(methods=[]), "methods []: expected method presets"),
        (dict(sweep={"workers": [4, 4]}), "--sweep 'workers=4,4': 4 is given twice"),
        (dict(sweep="heterogeneity=huge"), "heterogeneity 'huge' is not a level"),
        (dict(sweep={"workers": [4], "schedule.H": [10]}), "compare sweeps one axis"),
        (dict(methods="diloco", sweep="c=0,0.1"), "none of the methods diloco has that field"),
        (dict(methods="nope"), "nope"),
        (dict(sets={"schedule.H": -1}), "--set schedule.H=-1"),
        (dict(jobs=0), "jobs 0: expected a number of processes"),
    ]
    for kwargs, words in cases:
        with pytest.raises(UserError) as err:
            asyncsim.compare(SCEN, **{"sets": TINY, **kwargs})
        assert words in str(err.value) and "\n" not in str(err.value), (kwargs, str(err.value))
    with pytest.raises(UserError, match="nothing to sweep"):
        asyncsim.sweep(SCEN, sets=TINY)
    with pytest.raises(UserError, match="workers=4,8,4': 4 is given twice"):
        asyncsim.sweep(SCEN, "workers=4,8,4")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.md").write_text("mine\n")
    with pytest.raises(UserError, match="holds files that are not an asyncsim report"):
        asyncsim.compare(SCEN, methods="diloco", sets=TINY, out=mine)
    with pytest.raises(UserError, match="holds files that are not an asyncsim report"):
        asyncsim.reproduce(SCEN, sets=TINY, out=mine)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.md"] and not store.exists()  # nothing ran


def test_reproduce_hands_the_clis_own_command_to_the_same_code(store, monkeypatch):
    """What reproduce records (and so which report it may rewrite) is the CLI's command line, defaults and all."""
    import sim.reproduce

    calls = []
    monkeypatch.setattr(sim.reproduce, "reproduce",
                        lambda scenario, out_dir, seeds, jobs, sets, command, **kw: calls.append(
                            (scenario, out_dir, seeds, sets, command, kw["wide_sets"], kw["method_sets"],
                             kw["budget_rounds"])) or out_dir / "report.md")
    path = asyncsim.reproduce(sets={"schedule.t_max": 400}, wide_sets={"schedule.t_max": 200},
                              method_sets={"diloco": {"method.outer.lr": 0.5}}, budget_rounds=[10, 40])
    assert path == Path("reports") / "paper_toy" / "report.md"
    cli = runner.invoke(app, ["reproduce", "--set", "schedule.t_max=400", "--wide-set", "schedule.t_max=200",
                              "--method-set", "diloco:method.outer.lr=0.5", "--budget-rounds", "10,40", "-q"])
    assert cli.exit_code == 0, cli.output
    assert calls[0] == calls[1]


def test_import_asyncsim_is_quick_and_nothing_in_sim_imports_it():
    code = ("import sys, asyncsim; assert 'torch' not in sys.modules and 'pandas' not in sys.modules; "
            "assert {'compare', 'sweep', 'reproduce', 'load_run', 'simulate', 'run'} <= set(dir(asyncsim)); "
            "print(asyncsim.load_scenario.__module__)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "sim.scenario", proc.stderr
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        asyncsim.nope  # noqa: B018
    # a thin package on top: sim and trainers never reach up into it
    for path in [*ROOT.glob("sim/**/*.py"), *ROOT.glob("trainers/**/*.py")]:
        assert not re.search(r"^\s*(from|import) asyncsim\b", path.read_text(encoding="utf-8"), re.M), path
