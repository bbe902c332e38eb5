"""Fuzzing scenario files: every rejection is one line with exit code 2, every acceptance runs."""
from __future__ import annotations

import copy
import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sim.cli import app

BASE = {
    "name": "fuzz",
    "seed": 0,
    "trainer": {"name": "null", "config": {"dim": 4}},
    "workers": {"fleet": "very_heterogeneous", "k": 4},
    "method": {"preset": "dn_dylu", "outer": {"lr": 0.5, "momentum": 0.9}},
    "schedule": {"H": 5, "t_max": 100, "grace_period": 0.5, "grace_wait": "last_sync"},
    "lr": {"max": 0.01, "min": 0.0001, "warmup": 0},
    "eval": {"every": 20},
    "compute": {"threads": 1},
}
PATHS = [
    ("name",), ("seed",), ("trainer",), ("trainer", "name"), ("trainer", "config"), ("trainer", "config", "dim"),
    ("workers",), ("workers", "fleet"), ("workers", "k"), ("method",), ("method", "preset"), ("method", "outer"),
    ("method", "outer", "lr"), ("method", "outer", "momentum"), ("method", "outer", "c"), ("method", "dylu"),
    ("method", "fix"), ("schedule",), ("schedule", "H"), ("schedule", "t_max"), ("schedule", "grace_period"),
    ("schedule", "grace_wait"), ("lr", "max"), ("lr", "min"), ("lr", "warmup"), ("eval", "every"),
    ("compute", "threads"), ("bogus_field",),
]
NASTY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.sampled_from([0, -1, 1, 2, 10**9, 10**18, -0.0, 1e308, float("inf"), float("-inf"), float("nan")]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["k", "nesterov", "sgd", "poly", "none", "no", "yes", "1e6", "very", "x:y", "os:system"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
runner = CliRunner()


def mutate(doc: dict, path: tuple[str, ...], value, delete: bool) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    if delete:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return doc


def check(tmp_path, content: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(content)
    result = runner.invoke(app, ["validate", str(path)])
    out = result.output.strip()
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if result.exit_code == 0:
        run = runner.invoke(app, ["run", str(path), "-q", "--out", str(tmp_path / "run"), "--set", "schedule.t_max=60",
                                  "--set", "workers.k=3"])
        assert run.exit_code in (0, 2, 4), run.output
        if run.exit_code in (0, 4):  # 4: the run diverged, its folder is written and the last line says so
            assert "run hash:" in run.output
            errors = [line for line in run.output.splitlines() if line.startswith("error:")]
            assert errors == ([] if run.exit_code == 0 else [run.output.strip().splitlines()[-1]])
        else:
            assert len(run.output.strip().splitlines()) == 1 and "Traceback" not in run.output
    else:
        assert result.exit_code == 2, out
        assert len(out.splitlines()) == 1 and "Traceback" not in out and str(path) in out, out


SETTINGS = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 80)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(st.sampled_from(PATHS), NASTY, st.booleans())
def test_mutated_scenarios(tmp_path, path, value, delete):
    doc = mutate(BASE, path, value, delete)
    check(tmp_path, yaml.safe_dump(doc, allow_unicode=True).encode())


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes(tmp_path, blob):
    check(tmp_path, blob)


def test_base_scenario_is_accepted(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(BASE))
    assert runner.invoke(app, ["validate", str(path)]).exit_code == 0
