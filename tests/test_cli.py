"""The command line as a user meets it: one-line errors, reproducible hashes, safe folders."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sim.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
FAST = ["--set", "schedule.t_max=240", "--set", "trainer.config.hidden=16", "--set", "trainer.config.shard_size=500",
        "--set", "eval.every=120", "-q"]


def write(tmp_path: Path, text: str | bytes, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


BASE = (ROOT / "scenarios" / "very_heterogeneous.yaml").read_text()


@pytest.mark.parametrize(
    "mutation, field",
    [
        (("H: 20", "H: -3"), "schedule.H"),
        (("H: 20", "H: twenty"), "schedule.H"),
        (("t_max: 32000", "t_max: 0"), "schedule.t_max"),
        (("method: dn_dylu", "method: fastest_possible"), "method.preset"),
        (("grace_period: 0.0", "grace_period: -1"), "schedule.grace_period"),
        (("name: toy", "name: nosuchtrainer"), "trainer.name"),
        (("config: {hidden: 512}", "config: {hidden: 512, widht: 3}"), "trainer.config.widht"),
        (("fleet: very_heterogeneous", "fleet: no_such_fleet"), "workers.fleet"),
        (("fleet: very_heterogeneous", "fleet: very_heterogeneous\n  k: 0"), "workers.k"),
        (("eval: {every: 1600}", "eval: {}"), "eval.every"),
        (("lr: {max: 2.0e-4", "lr: {max: 1.0e-9"), "lr"),
    ],
)
def test_bad_scenario_is_one_line_naming_file_and_field(tmp_path, mutation, field):
    old, new = mutation
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    out = result.output.strip()
    assert len(out.splitlines()) == 1 and "Traceback" not in out
    assert str(path) in out and f"'{field}" in out


def test_unreadable_files_are_one_line_errors(tmp_path):
    for content in (b"\xff\xfe\x00bad", b"a: [1, 2", b"- just\n- a list\n"):
        path = write(tmp_path, content)
        result = runner.invoke(app, ["validate", str(path)])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    result = runner.invoke(app, ["run", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_bad_override_and_bad_outer_argument(tmp_path):
    path = write(tmp_path, BASE)
    r = runner.invoke(app, ["validate", str(path), "--set", "noequals"])
    assert r.exit_code == 2 and "KEY=VALUE" in r.output
    r = runner.invoke(app, ["validate", str(path), "--set", "method.outer.c=0.9"])
    assert r.exit_code == 2 and "method.outer" in r.output and "1/N" in r.output
    r = runner.invoke(app, ["validate", str(path), "--method", "async_sgd", "--set", "method.outer.momentum=0.9"])
    assert r.exit_code == 2 and "method.outer.momentum" in r.output


def hash_of(output: str) -> str:
    return re.search(r"run hash: ([0-9a-f]{64})", output).group(1)


def test_run_twice_same_hash_out_is_afresh_and_default_folder_is_reused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scen = str(ROOT / "scenarios" / "very_heterogeneous.yaml")
    a = runner.invoke(app, ["run", scen, "--out", "a", *FAST])
    b = runner.invoke(app, ["run", scen, "--out", "b", *FAST])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert hash_of(a.output) == hash_of(b.output)
    for name in ("metrics.csv", "events.csv", "scenario.yaml", "summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "curves.png").stat().st_size > 1000
    assert (tmp_path / "a" / "metrics.parquet").exists()
    # --out recomputes: an existing folder is replaced by a fresh, complete one
    mtime = (tmp_path / "a" / "summary.json").stat().st_mtime_ns
    again = runner.invoke(app, ["run", scen, "--out", "a", *FAST])
    assert "finished" in again.output and (tmp_path / "a" / "summary.json").stat().st_mtime_ns != mtime
    # default folder: keyed by scenario digest, second call reuses
    first = runner.invoke(app, ["run", scen, *FAST])
    second = runner.invoke(app, ["run", scen, *FAST])
    assert "finished" in first.output and "reused" in second.output
    assert hash_of(first.output) == hash_of(second.output) == hash_of(a.output)
    other = runner.invoke(app, ["run", scen, "--method", "diloco", *FAST])
    assert len(list((tmp_path / "reports" / "runs").iterdir())) == 2 and hash_of(other.output) != hash_of(a.output)


def test_console_script_prints_hash_without_traceback_on_error(tmp_path):
    exe = Path(sys.executable).with_name("asyncsim")
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    bad = write(tmp_path, BASE.replace("H: 20", "H: 0"))
    proc = subprocess.run([str(exe), "run", str(bad)], capture_output=True, text=True, env={**os.environ})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_old_run_folders_are_adopted_when_only_defaults_were_added(tmp_path, monkeypatch):
    """A folder whose stored scenario lacks a newer defaulted field is still found and reused."""
    import yaml as _yaml

    monkeypatch.chdir(tmp_path)
    scen = str(ROOT / "scenarios" / "very_heterogeneous.yaml")
    first = runner.invoke(app, ["run", scen, *FAST])
    folder = next((tmp_path / "reports" / "runs").iterdir())
    stored = _yaml.safe_load((folder / "scenario.yaml").read_text())
    del stored["eval"]["divergence_factor"]  # as written by a version without that field
    (folder / "scenario.yaml").write_text(_yaml.safe_dump(stored))
    old_name = folder.with_name(folder.name[:-12] + "0" * 12)
    folder.rename(old_name)
    again = runner.invoke(app, ["run", scen, *FAST])
    assert "reused" in again.output and hash_of(again.output) == hash_of(first.output)
    assert folder.exists() and not old_name.exists()



@pytest.mark.parametrize("args, message", [
    (["--executor", "nope"], "--executor 'nope': expected local or ray"),
    (["--address", "head:6379"], "--address needs --executor ray"),
    (["--store", "/tmp/shared"], "--store needs --executor ray"),
])
def test_whole_run_executor_options_fail_in_one_line(tmp_path, args, message):
    scen = Path(__file__).resolve().parents[1] / "scenarios" / "very_heterogeneous.yaml"
    result = runner.invoke(app, ["sweep", str(scen), "--seed", "0", "--runs", str(tmp_path / "runs"), *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()  # nothing ran


@pytest.mark.parametrize("command", [["run"], ["compare", "-j", "2", "--method", "streaming_diloco"]])
def test_a_field_found_bad_only_when_the_run_builds_names_the_file(tmp_path, command):
    """More fragments than the model has layers is known once the trainer exists, deep in the run (in a process
    pool for compare -j 2); the one-line error still names the scenario file and the field."""
    path = write(tmp_path, BASE.replace("method: dn_dylu", "method: streaming_diloco"))
    result = runner.invoke(app, [*command, str(path), *FAST, "--set", "method.streaming.fragments=12",
                                 "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    out = result.output.strip()
    assert result.exit_code == 2, out
    assert len(out.splitlines()) == 1 and "Traceback" not in out
    assert out.startswith(f"error: {path}: field 'method.streaming.fragments': 12 fragments, but"), out


def test_run_prints_its_wall_time_and_keeps_it_out_of_the_results(tmp_path):
    from sim.cli import wall_time

    assert [wall_time(s) for s in (3.21, 42.4, 572, 7500)] == ["3.2 s", "42 s", "9 min 32 s", "2 h 05 min"]
    scen = str(ROOT / "scenarios" / "very_heterogeneous.yaml")
    first = runner.invoke(app, ["run", scen, *FAST, "--runs", str(tmp_path / "runs")])
    again = runner.invoke(app, ["run", scen, *FAST, "--runs", str(tmp_path / "runs")])
    assert re.search(r"^wall time: [0-9.]+ s on this machine", first.output, flags=re.M), first.output
    assert re.search(r"^wall time: [0-9.]+ s$", again.output, flags=re.M) and "reused" in again.output
    summary = next((tmp_path / "runs").iterdir()) / "summary.json"
    assert "wall" not in summary.read_text()  # a run's results never hold the clock of the machine that made it
