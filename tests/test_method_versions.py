"""A method's rules never change under an unchanged digest silently (issue 22).

Run folders are keyed by the scenario's digest; a change to a schedule's or
an outer update's code that gives the same scenario a different run must
bump its version (``sim.scenario.SCHEDULE_VERSIONS``, or
``SIMULATION_VERSION``), or the store serves the old run. That happened
once: eager DiLoCo's share weight changed and the old runs were reused
(reports/geo_methods/README.md). So every edit of the method code is
acknowledged here, beside the versions it was made under.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sim.scenario import SCHEDULE_VERSIONS, SIMULATION_VERSION

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "tests" / "data" / "method_sources.json"
RECORD_COMMAND = "python -c 'import tests.test_method_versions as t; t.record()'"


def method_sources() -> dict[str, str]:
    files = sorted([*(ROOT / "sim" / "schedules").glob("*.py"), *(ROOT / "sim" / "outer").glob("*.py")])
    return {f.relative_to(ROOT).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def versions() -> dict[str, object]:
    return {"simulation": SIMULATION_VERSION, "schedules": dict(sorted(SCHEDULE_VERSIONS.items()))}


def record() -> None:
    """After deciding whether the edit changes runs (and bumping the version if it does)."""
    RECORD.write_text(json.dumps({"versions": versions(), "files": method_sources()}, indent=1) + "\n")


def test_every_edit_of_the_method_code_is_acknowledged_with_the_versions_it_was_made_under():
    recorded = json.loads(RECORD.read_text())
    now = method_sources()
    changed = sorted(path for path in now.keys() | recorded["files"].keys() if now.get(path) != recorded["files"].get(path))
    assert not changed, (
        f"{', '.join(changed)} changed since {RECORD.relative_to(ROOT)} was recorded. If the same scenario can now give "
        f"a different run, bump sim.scenario.SCHEDULE_VERSIONS for that schedule (SIMULATION_VERSION for all); then "
        f"record the new state: {RECORD_COMMAND}")
    assert recorded["versions"] == versions(), f"the versions changed: record them with the code ({RECORD_COMMAND})"
