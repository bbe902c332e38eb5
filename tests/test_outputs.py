"""Every output file is protected, written whole or not at all, and no option is dropped without a word.

* a file a command writes (``sweep --out``, ``trace --out``) replaces only a
  file asyncsim made, else one line naming ``--force``;
* a write that fails (an injected ``ENOSPC``: part of the bytes land, then
  the error, as on a full disk) is one line, exit 3, and leaves every file
  as it was: no new, partial or empty file, the earlier output intact;
* an option given twice, or a value given twice in a list, is one line
  naming the option, before anything is computed.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, NoReturn

import pytest
from typer.testing import CliRunner

from sim.cli import app
from sim.errors import DiskFullError, OutputError
from sim.outputs import atomic_output, check_output_file, made_by_asyncsim, staged_folder
from tests.test_user_files import FAST, SCEN, assert_intact, one_error_line, user_files

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


def fill(path: Any) -> NoReturn:
    """What a full disk does to a write: some bytes land, then ENOSPC (os-level, so patched writers do not recurse)."""
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b"part")
    os.close(fd)
    raise OSError(errno.ENOSPC, "No space left on device")


def tree(folder: Path, skip: str = "runs") -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes; the run store (``skip``) aside."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and skip not in p.relative_to(folder).parts}


def assert_full_disk_line(result: Any, names: str) -> None:
    """Exit 3 and one ``error:`` line naming the file, the last (what came before, sweep's table or a bar, aside)."""
    assert result.exit_code == 3 and "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and sum("error" in line for line in lines) == 1, result.output
    assert "disk full" in lines[-1] and names in lines[-1], lines[-1]


# -- (3) a file asyncsim did not make is never replaced without --force -------------------------------


def test_sweep_out_replaces_only_its_own_csv_and_force_replaces_a_users_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = user_files(tmp_path)
    args = ["sweep", SCEN, "--seed", "0,1", "-j", "1", *FAST]
    calls = []
    real_execute = __import__("sim.compare", fromlist=["execute"]).execute
    monkeypatch.setattr("sim.compare.execute", lambda *a, **k: calls.append(1) or real_execute(*a, **k))
    r = runner.invoke(app, [*args, "--out", "notes.txt"])
    assert r.exit_code == 2 and calls == []  # refused before computing
    line = one_error_line(r)
    assert "notes.txt" in line and "--force" in line and "not made by asyncsim" in line
    assert_intact(files)
    assert runner.invoke(app, [*args, "--out", "t.csv"]).exit_code == 0
    assert made_by_asyncsim(tmp_path / "t.csv")
    again = runner.invoke(app, [*args, "--out", "t.csv"])  # its own earlier table: replaced without a word
    assert again.exit_code == 0, again.output
    forced = runner.invoke(app, [*args, "--out", "data/a.csv", "--force"])
    assert forced.exit_code == 0 and (tmp_path / "data" / "a.csv").read_bytes() == (tmp_path / "t.csv").read_bytes()


def test_trace_replaces_only_its_own_trace_and_force_replaces_a_users_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = user_files(tmp_path)
    assert runner.invoke(app, ["run", SCEN, "--out", "r", *FAST]).exit_code == 0
    for _ in range(2):  # the default RUN/trace.json, then again over its own
        assert runner.invoke(app, ["trace", "r"]).exit_code == 0
    assert made_by_asyncsim(tmp_path / "r" / "trace.json")
    r = runner.invoke(app, ["trace", "r", "-o", "notes.txt"])
    assert r.exit_code == 2 and "notes.txt" in one_error_line(r) and "--force" in r.output
    assert_intact(files)
    (tmp_path / "r" / "trace.json").write_text("my own trace\n")  # a file of the user's at the default path
    r = runner.invoke(app, ["trace", "r"])
    assert r.exit_code == 2 and "trace.json" in one_error_line(r) and "--force" in r.output
    assert (tmp_path / "r" / "trace.json").read_text() == "my own trace\n"
    assert runner.invoke(app, ["trace", "r", "-o", "notes.txt", "--force"]).exit_code == 0
    assert made_by_asyncsim(tmp_path / "notes.txt")


def test_check_output_file_allows_new_empty_and_asyncsim_files_only(tmp_path):
    check_output_file(tmp_path / "new.csv", "--out", False)
    (tmp_path / "empty.csv").write_bytes(b"")  # nothing in it to lose
    check_output_file(tmp_path / "empty.csv", "--out", False)
    (tmp_path / "short.csv").write_text("scenario\n")  # shorter than any mark
    with pytest.raises(OutputError, match="--force"):
        check_output_file(tmp_path / "short.csv", "--out", False)
    check_output_file(tmp_path / "short.csv", "--out", True)
    with pytest.raises(OutputError, match="not a regular file"):  # replacing /dev/null with a file: never
        check_output_file(Path(os.devnull), "--out", True)


# -- (4) a failed write leaves every file as it was ------------------------------------------------


def test_a_full_disk_while_sweep_writes_its_csv_leaves_no_file_and_keeps_the_earlier_one(tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.chdir(tmp_path)
    args = ["sweep", SCEN, "--seed", "0,1", "-j", "1", *FAST]
    assert runner.invoke(app, [*args, "--out", "old.csv"]).exit_code == 0
    before = tree(tmp_path)
    real = pd.DataFrame.to_csv
    monkeypatch.setattr(pd.DataFrame, "to_csv",
                        lambda self, path=None, *a, **k: real(self, path, *a, **k) if path is None else fill(path))
    for out in ("old.csv", "new.csv"):
        r = runner.invoke(app, [*args, "--out", out])
        assert_full_disk_line(r, out)
        assert tree(tmp_path) == before  # the earlier table intact; no new, partial or temporary file


def test_a_full_disk_while_compare_writes_its_report_leaves_the_earlier_report(tmp_path, monkeypatch):
    import matplotlib.figure

    monkeypatch.chdir(tmp_path)
    args = ["compare", SCEN, "--method", "diloco,dn_dylu", "-j", "1", *FAST]
    assert runner.invoke(app, [*args, "--name", "mine"]).exit_code == 0
    before = tree(tmp_path)
    real = matplotlib.figure.Figure.savefig
    # the curves are drawn, the tables written, then the timeline meets the full disk
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda self, path, *a, **k: fill(path) if "timeline" in str(path) else real(self, path, *a, **k))
    r = runner.invoke(app, [*args, "--name", "mine"])
    assert_full_disk_line(r, "mine")
    assert tree(tmp_path) == before
    r = runner.invoke(app, [*args, "--out", "fresh/report"])
    assert_full_disk_line(r, "report")
    assert tree(tmp_path) == before and not (tmp_path / "fresh").exists()


def test_a_full_disk_while_reproduce_writes_its_report_leaves_nothing(tmp_path, monkeypatch):
    """Reproduce's write phase, on one small experiment (the paper's full set takes minutes)."""
    import matplotlib.figure

    from sim.reproduce import Experiment

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sim.reproduce.experiments", lambda base, rounds: [Experiment("headline", "Headline",
                                                                                      ("diloco", "dn_dylu"))])
    monkeypatch.setattr("sim.reproduce.FINDINGS", [])
    args = ["reproduce", SCEN, "--seed", "0", "--name", "p", "-j", "1", *FAST]
    assert runner.invoke(app, args).exit_code == 0
    before = tree(tmp_path)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, path, *a, **k: fill(path))
    r = runner.invoke(app, [*args, "--force"])
    assert_full_disk_line(r, "p")
    assert tree(tmp_path) == before


def test_a_full_disk_while_writing_a_trace_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["run", SCEN, "--out", "r", *FAST]).exit_code == 0
    assert runner.invoke(app, ["trace", "r"]).exit_code == 0
    before = tree(tmp_path)
    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: fill(self))
    for args in (["trace", "r"], ["trace", "r", "-o", "new.json"]):
        r = runner.invoke(app, args)
        assert_full_disk_line(r, "trace.json" if len(args) == 2 else "new.json")
        assert tree(tmp_path) == before


def test_a_full_disk_while_init_writes_removes_what_it_made(tmp_path, monkeypatch):
    import builtins
    import io

    real = io.open

    def full_for_the_fleet(file: Any, mode: str = "r", *a: Any, **k: Any) -> Any:
        if "device_profiles" in str(file) and set(mode) & set("wxa"):
            fill(file)
        return real(file, mode, *a, **k)

    monkeypatch.setattr(io, "open", full_for_the_fleet)
    monkeypatch.setattr(builtins, "open", full_for_the_fleet)
    r = runner.invoke(app, ["init", str(tmp_path / "d")])
    assert_full_disk_line(r, "very_heterogeneous.yaml")
    assert not (tmp_path / "d").exists()  # the scenario written first is gone again, and the folders


def test_init_refuses_a_file_that_appears_while_it_writes_and_keeps_nothing_of_its_own(tmp_path, monkeypatch):
    mine = tmp_path / "d" / "device_profiles" / "very_heterogeneous.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("my fleet\n")
    monkeypatch.setattr("sim.cli_init._refusal", lambda directory, files: None)  # it appeared after the check
    r = runner.invoke(app, ["init", str(tmp_path / "d")])
    assert r.exit_code == 2 and str(mine) in one_error_line(r)
    assert mine.read_text() == "my fleet\n" and sorted(p.name for p in (tmp_path / "d").iterdir()) == ["device_profiles"]


def test_a_full_disk_while_pretrain_caches_its_checkpoint_is_one_line(tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(ROOT)  # the corpus cache the LM tests share
    monkeypatch.setattr(torch, "save", lambda obj, path, *a, **k: fill(path))
    sets = [f"--set=trainer.config.{k}={v}" for k, v in
            {"layers": 1, "d_model": 32, "heads": 1, "seq_len": 16, "batch_size": 2, "device": "cpu",
             "pretrain_steps": 2, "pretrain_seed": 4242}.items()]
    r = runner.invoke(app, ["pretrain", "scenarios/lm_tiny_very_heterogeneous.yaml", *sets])
    assert_full_disk_line(r, ".pt")
    cache = ROOT / ".cache" / "asyncsim"
    assert not [p for p in cache.rglob(".tmp-*")]


def test_atomic_output_keeps_the_earlier_file_on_any_error_and_publishes_whole(tmp_path):
    target = tmp_path / "sub" / "t.csv"
    with pytest.raises(DiskFullError, match="t.csv"):
        with atomic_output(target) as tmp:
            fill(tmp)
    assert not (tmp_path / "sub").exists()  # the folder made for it is gone too
    target.parent.mkdir()
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("a bug")
    assert target.read_text() == "old" and [p.name for p in target.parent.iterdir()] == ["t.csv"]
    with atomic_output(target) as tmp:
        assert tmp.name.endswith(".t.csv")  # the suffix kept: writers that read it (savefig, to_csv) still do
        tmp.write_text("new")
    assert target.read_text() == "new" and [p.name for p in target.parent.iterdir()] == ["t.csv"]
    with pytest.raises(OutputError, match="exists"):
        with atomic_output(target, replace=False) as tmp:
            tmp.write_text("never")
    assert target.read_text() == "new" and [p.name for p in target.parent.iterdir()] == ["t.csv"]


def test_staged_folder_moves_in_whole_and_keeps_files_it_did_not_make(tmp_path):
    folder = tmp_path / "rep"
    folder.mkdir()
    (folder / "mine.txt").write_text("user")
    (folder / "table.csv").write_text("old")
    with pytest.raises(DiskFullError):
        with staged_folder(folder) as staged:
            (staged / "table.csv").write_text("new")
            fill(staged / "plot.png")
    assert tree(folder) == {"mine.txt": b"user", "table.csv": b"old"} and list(tmp_path.iterdir()) == [folder]
    with staged_folder(folder) as staged:
        (staged / "sub").mkdir()
        for name in ("table.csv", "sub/report.md", "report.md"):
            (staged / name).write_text("new")
    assert tree(folder) == {"mine.txt": b"user", "table.csv": b"new", "report.md": b"new", "sub/report.md": b"new"}
    assert list(tmp_path.iterdir()) == [folder]


# -- (6) no option is lost or counted twice ------------------------------------------------------------


@pytest.mark.parametrize("argv, option, words", [
    (["compare", SCEN, "--sweep", "H=10,20", "--sweep", "workers=4,8"], "--sweep", "asyncsim sweep"),
    (["compare", SCEN, "--method", "diloco", "--methods", "dn_dylu"], "--method", "comma-separated"),
    (["run", SCEN, "--seed", "0", "--seed", "1"], "--seed", "comma-separated"),
    (["run", SCEN, "--out", "a", "-o", "b"], "--out", "twice"),
    (["sweep", SCEN, "--seed", "0,1", "-j1", "-j", "2"], "--jobs", "twice"),
    (["run", SCEN, "-s", "schedule.H=10", "--set", "schedule.H=20"], "--set schedule.H", "twice"),
    (["compare", SCEN, "--method-set", "diloco:method.outer.lr=0.1", "--method-set", "diloco:method.outer.lr=0.3"],
     "--method-set diloco:method.outer.lr", "twice"),
    (["compare", SCEN, "--seeds", "0,0"], "--seed", "twice"),
    (["compare", SCEN, "--seeds", "1,01"], "--seed", "twice"),
    (["sweep", SCEN, "--seeds", "0,1,0"], "--seed", "twice"),
    (["run", SCEN, "--seed", "3,3"], "--seed", "twice"),
    (["compare", SCEN, "--methods", "diloco,diloco"], "--method", "twice"),
    (["sweep", SCEN, "--methods", "diloco,dn_dylu,diloco"], "--method", "twice"),
    (["compare", SCEN, "--sweep", "workers=4,4"], "--sweep", "twice"),
    (["compare", SCEN, "--sweep", "schedule.H=10,10.0"], "--sweep", "twice"),
    (["sweep", SCEN, "--grid", "workers=4,8,4"], "--grid", "twice"),
    (["sweep", SCEN, "--grid", "method=diloco,diloco"], "--grid", "twice"),
    (["compare", SCEN, "--sweep", "heterogeneity=very,very_heterogeneous"], "--sweep", "twice"),
])
def test_an_option_or_value_given_twice_is_one_line_naming_it_before_computing(tmp_path, monkeypatch, argv, option, words):
    monkeypatch.chdir(tmp_path)
    calls = []
    monkeypatch.setattr("sim.runner.simulate", lambda *a, **k: calls.append(1))
    monkeypatch.setattr("sim.compare.execute", lambda *a, **k: calls.append(1))
    r = runner.invoke(app, [*argv, *FAST])
    assert r.exit_code == 2, r.output
    line = one_error_line(r)
    assert option in line and words in line, line
    assert calls == [] and list(tmp_path.iterdir()) == []


def test_the_sweep_refusal_spells_out_the_grid_to_run_instead(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sim.compare.execute", lambda *a, **k: 1 / 0)
    r = runner.invoke(app, ["compare", SCEN, "--sweep", "H=10,20", "--sweep", "workers=4,8", *FAST])
    assert "--grid H=10,20 --grid workers=4,8" in one_error_line(r)


def test_repeatable_options_and_flags_still_repeat(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["validate", SCEN, "-s", "schedule.H=10", "--set", "schedule.t_max=300", "-s", "eval.every=50"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["run", SCEN, "-q", "-q", "--out", "r", *FAST])
    assert r.exit_code == 0, r.output
