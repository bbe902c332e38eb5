"""A user's files are sacred: every output is checked before computing, nothing of theirs is deleted or replaced.

Each test makes the user's files, runs the command that used to lose them,
and checks every file is still there, byte for byte.
"""
from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sim.cli import app

ROOT = Path(__file__).resolve().parent.parent
SCEN = str(ROOT / "scenarios" / "very_heterogeneous.yaml")
FAST = ["--set", "schedule.t_max=240", "--set", "trainer.config.hidden=16", "--set", "trainer.config.shard_size=500",
        "--set", "eval.every=120", "-q"]
runner = CliRunner()


def user_files(folder: Path) -> dict[Path, bytes]:
    files = {folder / "notes.txt": b"my notes\n", folder / "data" / "a.csv": b"x,y\n1,2\n",
             folder / "ok.yaml": Path(SCEN).read_bytes()}
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


def assert_intact(files: dict[Path, bytes]) -> None:
    for path, content in files.items():
        assert path.read_bytes() == content, f"{path} was changed"


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output, result.output
    return lines[0]


def test_run_out_refuses_a_folder_that_is_not_a_run_and_touches_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "that" / "folder"
    files = user_files(folder)
    r = runner.invoke(app, ["run", str(folder / "ok.yaml"), "--out", str(folder), *FAST])
    assert r.exit_code == 2
    assert "not an asyncsim run" in one_error_line(r) and str(folder) in r.output
    assert_intact(files)
    assert sorted(p.name for p in folder.iterdir()) == ["data", "notes.txt", "ok.yaml"]
    # a run folder may replace an earlier run folder, and an empty folder
    (tmp_path / "empty").mkdir()
    for target in ("empty", "run1", "run1"):
        ok = runner.invoke(app, ["run", SCEN, "--out", target, *FAST])
        assert ok.exit_code == 0, ok.output


def test_output_locations_are_checked_before_computing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = user_files(tmp_path)
    calls = []
    monkeypatch.setattr("sim.runner.simulate", lambda *a, **k: calls.append(1))
    for out in ("ok.yaml/sub", ".", "notes.txt"):
        r = runner.invoke(app, ["run", SCEN, "--out", out, *FAST])
        assert r.exit_code == 2, (out, r.output)
        line = one_error_line(r)
        assert out.split("/")[0] in line or "not an asyncsim run" in line
    assert calls == []  # nothing was computed
    r = runner.invoke(app, ["compare", SCEN, "--method", "diloco", "--out", "ok.yaml", *FAST])
    assert r.exit_code == 2 and "is a file" in one_error_line(r)
    r = runner.invoke(app, ["sweep", SCEN, "--seed", "0,1", "--out", "ok.yaml/t.csv", *FAST])
    assert r.exit_code == 2 and "ok.yaml" in one_error_line(r)
    assert calls == []
    assert_intact(files)


def test_trace_out_under_a_file_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = user_files(tmp_path)
    assert runner.invoke(app, ["run", SCEN, "--out", "r", *FAST]).exit_code == 0
    r = runner.invoke(app, ["trace", "r", "-o", "ok.yaml/trace.json"])
    assert r.exit_code == 2 and "ok.yaml" in one_error_line(r)
    assert_intact(files)


def test_disk_full_while_writing_the_run_folder_is_one_line_with_its_own_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pandas.DataFrame.to_parquet", full)
    r = runner.invoke(app, ["run", SCEN, "--out", "r", *FAST])
    assert r.exit_code == 3 and "disk full" in one_error_line(r) and "r" in r.output
    assert not (tmp_path / "r").exists() and not list(tmp_path.glob(".r.tmp-*"))  # nothing half-written


def test_compare_never_overwrites_a_report_made_by_another_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = runner.invoke(app, ["compare", SCEN, "--method", "diloco,dn_dylu", "--name", "mine", "-j", "1", *FAST])
    assert first.exit_code == 0, first.output
    report = tmp_path / "reports" / "mine"
    before = {p: p.read_bytes() for p in report.iterdir()}
    other = runner.invoke(app, ["compare", SCEN, "--method", "diloco", "--name", "mine", "-j", "1", *FAST])
    assert other.exit_code == 2
    line = one_error_line(other)
    assert "asyncsim compare" in line and "--force" in line
    assert {p: p.read_bytes() for p in report.iterdir()} == before
    # a folder of the user's own is never a report to replace
    files = user_files(tmp_path / "reports" / "theirs")
    r = runner.invoke(app, ["compare", SCEN, "--method", "diloco", "--name", "theirs", "-j", "1", *FAST])
    assert r.exit_code == 2 and "not an asyncsim report" in one_error_line(r)
    assert_intact(files)
    # the same command again (other -j) regenerates; --force replaces
    same = runner.invoke(app, ["compare", SCEN, "--methods", "diloco,dn_dylu", "--name", "mine", "-j", "2", *FAST])
    assert same.exit_code == 0, same.output
    forced = runner.invoke(app, ["compare", SCEN, "--method", "diloco", "--name", "mine", "--force", "-j", "1", *FAST])
    assert forced.exit_code == 0 and "--methods diloco " in (report / "report.md").read_text()


def test_committed_reports_are_protected(tmp_path, monkeypatch):
    """The issue's example: a different compare into the shipped geo report is refused before computing."""
    monkeypatch.chdir(ROOT)
    calls = []
    monkeypatch.setattr("sim.compare.execute", lambda *a, **k: calls.append(1))
    r = runner.invoke(app, ["compare", "scenarios/geo_distributed.yaml", "--method", "diloco,dn_dylu",
                            "--set", "schedule.t_max=800", "--name", "geo_distributed", "-q"])
    assert r.exit_code == 2 and "--force" in one_error_line(r) and calls == []


def test_interrupted_checkpoint_and_resume_say_what_they_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["run", SCEN, "--out", "r", "--resume", *FAST])
    assert r.exit_code == 0 and "note: --resume: no checkpoint" in r.output
    partial = tmp_path / ".r.partial"
    partial.mkdir()
    (partial / "checkpoint.pt").write_bytes(b"x")
    r = runner.invoke(app, ["run", SCEN, "--out", "r", *FAST])
    assert r.exit_code == 0 and "left a checkpoint" in r.output and "--resume" in r.output


@pytest.mark.parametrize("damage", ["missing events", "corrupt summary"])
def test_a_damaged_run_folder_is_named_kept_aside_and_recomputed(tmp_path, monkeypatch, damage):
    monkeypatch.chdir(tmp_path)
    first = runner.invoke(app, ["run", SCEN, *FAST])
    folder = next((tmp_path / "reports" / "runs").iterdir())
    if damage == "missing events":
        (folder / "events.parquet").unlink()
    else:
        (folder / "summary.json").write_text("{not json")
    again = runner.invoke(app, ["run", SCEN, *FAST])
    assert again.exit_code == 0, again.output
    assert "damaged" in again.output and folder.name in again.output and "finished" in again.output
    aside = folder.with_name(folder.name + ".damaged")
    assert aside.is_dir() and (folder / "events.parquet").exists()
    assert first.output.split("run hash: ")[1].split()[0] == again.output.split("run hash: ")[1].split()[0]
    # compare finds it complete afterwards, and a damaged folder there is recomputed too
    (folder / "metrics.parquet").unlink()
    c = runner.invoke(app, ["compare", SCEN, "--method", "dn_dylu", "-j", "1", *FAST])
    assert c.exit_code == 0, c.output
    assert (folder / "metrics.parquet").exists() and folder.with_name(folder.name + ".damaged-2").is_dir()


def test_a_checkpoint_carrying_a_pickled_object_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    class Payload:
        def __reduce__(self):
            return (print, ("this code ran",))

    partial = tmp_path / ".r.partial"
    partial.mkdir()
    from sim.checkpoint_file import write_checkpoint
    from sim.scenario import load_scenario, parse_override

    sets = dict(parse_override(FAST[i + 1]) for i in range(0, len(FAST) - 1, 2))
    digest = load_scenario(SCEN, overrides=sets).digest()  # a valid checksum: only the payload is wrong
    write_checkpoint(partial / "checkpoint.pt", {"scenario_digest": digest, "theta": torch.zeros(2), "evil": Payload()})
    r = runner.invoke(app, ["run", SCEN, "--out", "r", "--resume", *FAST])
    assert r.exit_code == 2 and "refused to load a checkpoint" in one_error_line(r)
    assert "this code ran" not in r.output


USER_TRAINER = '''
from trainers.toy import ToyTrainer


class MyTrainer(ToyTrainer):
    SCALE = {scale}
'''


def test_editing_your_own_trainer_makes_a_new_run_and_versions_are_recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "model.py").write_text(USER_TRAINER.format(scale=1))
    monkeypatch.syspath_prepend(str(tmp_path))
    scen = tmp_path / "mine.yaml"
    scen.write_text(Path(SCEN).read_text().replace("name: toy", "name: mypkg.model:MyTrainer"))
    first = runner.invoke(app, ["run", str(scen), *FAST])
    assert first.exit_code == 0 and "finished" in first.output, first.output
    folder = Path(first.output.split("run folder: ")[1].split()[0])
    summary = json.loads((folder / "summary.json").read_text())
    assert set(summary["versions"]) == {"asyncsim", "torch", "numpy", "cpu"} and "mypkg.model:MyTrainer" in summary["code"]
    assert "reused" in runner.invoke(app, ["run", str(scen), *FAST]).output
    (pkg / "model.py").write_text(USER_TRAINER.format(scale=2))  # the user edits their model
    edited = runner.invoke(app, ["run", str(scen), *FAST])
    assert "finished" in edited.output and "reused" not in edited.output
    # a reused run made with other versions says so in one line
    summary["versions"]["torch"] = "0.0.1"
    (folder / "summary.json").write_text(json.dumps(summary))
    (pkg / "model.py").write_text(USER_TRAINER.format(scale=1))
    old = runner.invoke(app, ["run", str(scen), *FAST])
    assert "reused" in old.output and "torch 0.0.1" in old.output


def test_builtin_digests_do_not_depend_on_code():
    from sim import load_scenario

    sc = load_scenario(SCEN)
    assert sc.code_digests() == {}


@pytest.mark.parametrize("text, field, words", [
    ("schedule:\n  H: 3\n", "schedule", "appears twice"),
])
def test_duplicated_keys_are_refused(tmp_path, text, field, words):
    path = tmp_path / "dup.yaml"
    path.write_text(Path(SCEN).read_text() + text)
    r = runner.invoke(app, ["validate", str(path)])
    assert r.exit_code == 2 and words in one_error_line(r) and f"'{field}'" in r.output


def test_validation_names_typos_every_problem_and_bounds(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(Path(SCEN).read_text().replace("eval:", "evl:"))
    line = one_error_line(runner.invoke(app, ["validate", str(path)]))
    assert "'evl': unknown field (did you mean 'eval'?)" in line and "'eval': required field is missing" in line
    for setting, field in (("method.outer.lr=-0.5", "method.outer.lr"), ("method.outer.momentum=5", "method.outer.momentum")):
        r = runner.invoke(app, ["validate", SCEN, "--set", setting])
        assert r.exit_code == 2 and f"'{field}'" in one_error_line(r)
    r = runner.invoke(app, ["validate", SCEN, "--set", "workers.devices=[]"])
    assert r.exit_code == 2 and "'workers.devices'" in one_error_line(r)


def test_the_lm_demo_uses_the_outer_lr_its_own_sweep_chose():
    """The default LM demo runs the setting the committed sweep found best, not the paper's 0.7 that failed there."""
    import pandas as pd

    from sim import load_scenario

    table = pd.read_csv(ROOT / "reports" / "lm_tiny_outer_lr_sweep" / "table.csv")
    best = table[table["method"] == "dn_dylu"].sort_values("mean").iloc[0]
    demo = load_scenario(ROOT / "scenarios" / "lm_tiny_very_heterogeneous.yaml")
    assert demo.method.preset == "dn_dylu" and demo.method.outer["lr"] == float(best["sweep"])
    assert "reports/lm_tiny_outer_lr_sweep" in (ROOT / "scenarios" / "lm_tiny_very_heterogeneous.yaml").read_text()


def test_readme_links_stay_inside_the_repository():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "../" not in text


def test_unwritable_output_folders_are_one_line_before_computing(tmp_path, monkeypatch):
    """As a user without write permission sees it (the tests run as root, so the permission check is simulated)."""
    import os

    monkeypatch.chdir(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr("sim.outputs.os.access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    calls = []
    monkeypatch.setattr("sim.runner.simulate", lambda *a, **k: calls.append(1))
    r = runner.invoke(app, ["run", SCEN, "--out", "locked/run", *FAST])
    assert r.exit_code == 2 and "not writable" in one_error_line(r) and "locked" in r.output
    r = runner.invoke(app, ["sweep", SCEN, "--seed", "0,1", "--out", "locked/t.csv", *FAST])
    assert r.exit_code == 2 and "not writable" in one_error_line(r)
    r = runner.invoke(app, ["compare", SCEN, "--method", "diloco", "--out", "locked/rep", *FAST])
    assert r.exit_code == 2 and "not writable" in one_error_line(r)
    assert calls == [] and list(locked.iterdir()) == []


def test_compare_says_when_reused_runs_were_made_with_other_versions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["sweep", SCEN, "--seed", "0,1", "-j", "1", *FAST]
    assert runner.invoke(app, args).exit_code == 0
    assert "other versions" not in runner.invoke(app, args).output
    folder = sorted((tmp_path / "reports" / "runs").iterdir())[0]
    summary = json.loads((folder / "summary.json").read_text())
    summary["versions"]["torch"] = "0.0.1"
    (folder / "summary.json").write_text(json.dumps(summary))
    again = runner.invoke(app, args)
    notes = [line for line in again.output.splitlines() if "other versions" in line]
    assert len(notes) == 1 and "1 of 2 runs" in notes[0] and "torch 0.0.1" in notes[0] and folder.name in notes[0]
