"""The package as a user installs it: a wheel, a fresh environment, a folder outside the checkout.

The rest of the suite runs from the editable checkout, where
``device_profiles/`` and ``scenarios/`` sit at the repository root; a wheel
has them only if pyproject.toml maps them in, and an installed package finds
them only if ``sim.profiles`` looks inside the package. So this file builds
the wheel offline (``--no-build-isolation``: the installed setuptools, no
index), installs it without dependencies into a fresh virtual environment
that sees the already installed dependencies (torch and the rest) through a
``.pth`` line naming this environment's site-packages (a plain path line:
the editable asyncsim's own ``.pth`` hook there is not run), and runs the
commands a new user would from a temporary folder. The ``init`` command's
rules are also checked in-process, where they are cheap.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sim.cli import app
from sim.cli_init import plan, shipped_examples
from sim.profiles import PROFILE_DIR, SCENARIO_DIR
from sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
#: what the wheel is built from (copied, so the build writes nothing into the checkout)
SOURCES = ("pyproject.toml", "README.md", "MANIFEST.in", "asyncsim", "sim", "trainers", "device_profiles", "scenarios")
FAST = ["--set", "schedule.t_max=200", "--set", "trainer.config.hidden=16", "--set", "trainer.config.shard_size=500",
        "--set", "eval.every=100", "-q"]
BIN = "Scripts" if os.name == "nt" else "bin"
runner = CliRunner()


def _sh(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built offline from a copy of the checkout."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.fail("building the wheel offline needs setuptools>=70.1 (a dev extra): pip install -e '.[dev]'")
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    # an absolute path: a bare "src" would be looked up on the index as a package named src
    proc = _sh([sys.executable, "-m", "pip", "wheel", "-q", "--no-index", "--no-deps", "--no-build-isolation",
                "-w", str(work / "dist"), str(src)], cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = (work / "dist").glob("asyncsim-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(bin folder, site-packages) of a fresh venv holding the wheel, non-editable."""
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    proc = _sh([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], cwd=env_dir.parent)
    assert proc.returncode == 0, proc.stderr
    python = env_dir / BIN / ("python.exe" if os.name == "nt" else "python")
    purelib = Path(_sh([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       cwd=env_dir).stdout.strip())
    deps = [p for p in site.getsitepackages() if Path(p).is_dir() and Path(p).resolve() != purelib.resolve()]
    (purelib / "asyncsim_test_deps.pth").write_text("".join(f"{p}\n" for p in deps), encoding="utf-8")
    proc = _sh([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-index", "--no-deps",
                str(wheel)], cwd=env_dir.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return env_dir / BIN, purelib


def _env(tmp: Path) -> dict[str, str]:
    """The user's environment, minus anything that could point back into the checkout or the shared run store."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["ASYNCSIM_RUNS"] = str(tmp / "runs")
    env["COLUMNS"] = "240"  # wide enough that rich does not wrap a fleet's name inside its table cell
    return env


def _asyncsim(venv: tuple[Path, Path], tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert ROOT not in tmp.resolve().parents, "must run outside the checkout"
    return _sh([str(venv[0] / "asyncsim"), *args], cwd=tmp, env=_env(tmp))


def _hash(output: str) -> str:
    match = re.search(r"run hash: ([0-9a-f]{64})", output)
    assert match, output
    return match.group(1)


# -- the wheel and the installed package --------------------------------------------


def test_wheel_ships_every_profile_and_scenario(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("device_profiles", "scenarios"):
        shipped = sorted((ROOT / folder).glob("*.yaml"))
        assert shipped
        missing = [p.name for p in shipped if f"sim/{folder}/{p.name}" not in names]
        assert not missing, f"{folder}/ not in the wheel: {missing}"
    assert "trainers/corpus/NOTICE" in names
    assert zipfile.ZipFile(wheel).read("sim/device_profiles/very_heterogeneous.yaml") == \
        (ROOT / "device_profiles" / "very_heterogeneous.yaml").read_bytes()


def test_installed_package_is_the_wheel_not_the_checkout(venv, tmp_path):
    """``import asyncsim`` (the Python API, a thin package over sim) comes from the wheel too."""
    code = ("import sim, sim.profiles as p, trainers, torch, asyncsim, asyncsim.api; "
            "print(sim.__file__); print(trainers.__file__); print(p.PROFILE_DIR); print(p.SCENARIO_DIR); "
            "print(asyncsim.__file__); print(asyncsim.api.__file__); assert asyncsim.compare is asyncsim.api.compare")
    proc = _sh([str(venv[0] / "python"), "-c", code], cwd=tmp_path, env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    purelib = venv[1].resolve()
    paths = [Path(line).resolve() for line in proc.stdout.split("\n") if line]
    assert len(paths) == 6 and all(purelib in p.parents for p in paths), (purelib, paths)
    assert paths[2] == purelib / "sim" / "device_profiles" and paths[3] == purelib / "sim" / "scenarios"


def test_profiles_lists_the_shipped_fleets_from_anywhere(venv, tmp_path):
    proc = _asyncsim(venv, tmp_path, "profiles")
    assert proc.returncode == 0, proc.stderr
    for fleet in ("very_heterogeneous", "homogeneous", "geo_distributed"):
        assert fleet in proc.stdout


def test_demo_runs_from_the_wheel_outside_the_checkout(venv, tmp_path):
    """Shipped scenario (fleet by name) and the one ``init`` copies (fleet by path) both run and agree with the checkout."""
    shipped = venv[1] / "sim" / "scenarios" / "very_heterogeneous.yaml"
    proc = _asyncsim(venv, tmp_path, "run", str(shipped), "--out", "shipped", *FAST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checkout = runner.invoke(app, ["run", str(ROOT / "scenarios" / "very_heterogeneous.yaml"),
                                   "--out", str(tmp_path / "checkout"), *FAST])
    assert checkout.exit_code == 0, checkout.output
    assert _hash(proc.stdout) == _hash(checkout.output)  # the wheel's data are the checkout's, bit for bit

    proc = _asyncsim(venv, tmp_path, "init", "start")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "start" / "device_profiles" / "very_heterogeneous.yaml").is_file()
    proc = _asyncsim(venv, tmp_path / "start", "run", "very_heterogeneous.yaml", "--out", "mine", *FAST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = _asyncsim(venv, tmp_path, "init", "start")
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "Traceback" not in again.stderr
    assert "start/very_heterogeneous.yaml" in again.stderr


# -- asyncsim init's rules (in-process) --------------------------------------------


@pytest.mark.parametrize("example", shipped_examples())
def test_every_example_copies_to_a_scenario_with_the_same_devices(tmp_path, example):
    result = runner.invoke(app, ["init", str(tmp_path / "dir"), "--example", example])
    assert result.exit_code == 0, result.output
    copied = load_scenario(tmp_path / "dir" / f"{example}.yaml")
    original = load_scenario(SCENARIO_DIR / f"{example}.yaml")
    assert copied.workers.devices == original.workers.devices
    fleet = yaml.safe_load((tmp_path / "dir" / f"{example}.yaml").read_text())["workers"]["fleet"]
    # the copy names its own fleet file by a path relative to itself, so edits to it count from any folder
    assert fleet.startswith("device_profiles/") and (tmp_path / "dir" / fleet).is_file()
    assert copied.workers.fleet == fleet


def test_the_copied_fleet_is_the_one_used(tmp_path, monkeypatch):
    assert runner.invoke(app, ["init", str(tmp_path / "d")]).exit_code == 0
    fleet = tmp_path / "d" / "device_profiles" / "very_heterogeneous.yaml"
    data = yaml.safe_load(fleet.read_text())
    data["devices"] = data["devices"][:2]
    fleet.write_text(yaml.safe_dump(data))
    monkeypatch.chdir(ROOT)  # a device_profiles/ in the working directory must not win over the scenario's path
    assert len(load_scenario(tmp_path / "d" / "very_heterogeneous.yaml").workers.devices) == 2


def test_init_never_overwrites_and_says_so_in_one_line(tmp_path):
    target = tmp_path / "d"
    (target / "device_profiles").mkdir(parents=True)
    mine = target / "device_profiles" / "very_heterogeneous.yaml"
    mine.write_text("my own fleet\n")
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert str(mine) in result.output and "Traceback" not in result.output
    assert mine.read_text() == "my own fleet\n"
    assert not (target / "very_heterogeneous.yaml").exists()  # refused before writing anything
    # a file where the folder should be, and an unknown example: one line each, exit 2
    (tmp_path / "file").write_text("x")
    for args in (["init", str(tmp_path / "file")], ["init", str(tmp_path / "e"), "--example", "nope"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "very_heterogeneous" in result.output and not (tmp_path / "e").exists()


def test_plan_copies_the_shipped_fleet_not_the_working_directory_one(tmp_path, monkeypatch):
    (tmp_path / "device_profiles").mkdir()
    (tmp_path / "device_profiles" / "very_heterogeneous.yaml").write_text("devices: []\n")
    monkeypatch.chdir(tmp_path)
    files = plan("very_heterogeneous")
    assert files[Path("device_profiles/very_heterogeneous.yaml")] == (PROFILE_DIR / "very_heterogeneous.yaml").read_bytes()
