"""A researcher's daily tools (#26): shipped examples by name, the resolved scenario, imports without fcntl."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from sim.cli import app

ROOT = Path(__file__).resolve().parents[1]


def test_a_shipped_example_runs_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["validate", "very_heterogeneous"])
    assert r.exit_code == 0 and "very_heterogeneous" in r.output, r.output
    r = CliRunner().invoke(app, ["validate", "no_such_example"])
    assert r.exit_code == 2 and "nor a shipped example" in r.output
    (tmp_path / "very_heterogeneous").write_text("not: [a scenario")  # a file of that name here wins
    r = CliRunner().invoke(app, ["validate", "very_heterogeneous"])
    assert r.exit_code == 2 and "YAML" in r.output


def test_reproduce_defaults_to_a_shipped_example_that_resolves_from_any_directory(tmp_path, monkeypatch):
    """Installed from a wheel there is no scenarios/ folder here: the default must be a shipped example's name."""
    import inspect

    from sim import cli
    from sim.profiles import scenario_path

    monkeypatch.chdir(tmp_path)
    default = inspect.signature(cli.reproduce).parameters["scenario"].default.default
    assert len(Path(default).parts) == 1 and scenario_path(default).is_file()


def test_show_prints_the_resolved_scenario_with_the_preset_expanded():
    r = CliRunner().invoke(app, ["show", str(ROOT / "scenarios" / "very_heterogeneous.yaml"), "--method", "diloco",
                                 "--set", "schedule.H=7"])
    assert r.exit_code == 0, r.output
    body, digest = r.output.rsplit("# digest ", 1)
    resolved = yaml.safe_load(body)
    assert resolved["method"]["preset"] == "diloco" and resolved["method"]["outer"]["name"] == "nesterov"
    assert resolved["method"]["outer"]["lr"] == 0.7 and resolved["schedule"]["H"] == 7
    assert [d["seconds_per_step"] for d in resolved["workers"]["devices"]] == [0.58, 0.75, 1.51, 3.33]
    from sim.scenario import load_scenario

    sc = load_scenario(ROOT / "scenarios" / "very_heterogeneous.yaml", overrides={"schedule.H": 7}, method="diloco")
    assert digest.strip() == sc.digest()


def test_every_module_imports_where_fcntl_does_not_exist():
    """The package must import on platforms without fcntl (Windows): every lock is filelock."""
    code = (
        "import sys, pkgutil, importlib\n"
        "sys.modules['fcntl'] = None\n"
        "import sim, trainers\n"
        "names = [m.name for pkg in (sim, trainers) for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip()) > 40


def test_runs_lists_the_store_and_clean_removes_only_asyncsims_unused_leftovers(tmp_path):
    import json
    import os

    from filelock import FileLock

    store = tmp_path / "store"
    run = store / "toy-diloco-s0-0123456789ab"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"method": "diloco", "seed": 0, "status": "finished",
                                                  "scenario_digest": "0123456789abcdef", "run_hash": "x"}))
    leftovers = [store / "toy-dn-s0-aaaaaaaaaaaa.damaged", store / ".toy-dn-s1-bbbbbbbbbbbb.partial",
                 store / ".toy-dn-s2-cccccccccccc.tmp-999999999", store / ".toy-dn-s3-dddddddddddd.lock"]
    in_use = [store / f".toy-dn-s4-eeeeeeeeeeee.old-{os.getpid()}", store / ".toy-dn-s5-ffffffffffff.partial"]
    users = [store / "notes.txt", store / "mydata", store / ".hidden-of-mine"]
    for path in leftovers[:3] + in_use + users[1:]:
        path.mkdir()
        (path / "f").write_text("x")
    leftovers[3].write_text("")
    users[0].write_text("mine")
    held = FileLock(str(store / ".toy-dn-s5-ffffffffffff.lock"))  # that run is being computed now
    held.acquire()
    try:
        r = CliRunner().invoke(app, ["runs", "--runs", str(store)])
        assert r.exit_code == 0, r.output
        assert "toy-diloco-s0-0123456789ab" in r.output and "1 runs" in r.output and "4 leftovers" in r.output
        r = CliRunner().invoke(app, ["runs", "--runs", str(store), "--clean"])
        assert r.exit_code == 0, r.output
        assert "removed 4 leftovers" in r.output
    finally:
        held.release()
    assert not any(p.exists() for p in leftovers)
    assert all(p.exists() for p in in_use + users) and run.exists()


def test_a_bad_set_value_is_blamed_on_set_and_nested_typos_get_a_suggestion():
    path = str(ROOT / "scenarios" / "very_heterogeneous.yaml")
    r = CliRunner().invoke(app, ["validate", path, "--set", "method.outer.lr=-1"])
    assert r.exit_code == 2 and r.output.startswith("error: --set method.outer.lr=-1: field 'method.outer.lr'"), r.output
    r = CliRunner().invoke(app, ["validate", path, "--set", "schedule.Hh=3"])
    assert r.exit_code == 2 and "did you mean 'H'?" in r.output, r.output
    r = CliRunner().invoke(app, ["validate", path, "--set", "eval.evry=3"])
    assert "did you mean 'every'?" in r.output, r.output


def test_an_unknown_heterogeneity_level_lists_the_levels(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["compare", "very_heterogeneous", "--methods", "diloco", "--sweep",
                                 "heterogeneity=huge", "-q"])
    assert r.exit_code == 2 and "no, slight, moderate, very" in r.output and "Traceback" not in r.output, r.output
