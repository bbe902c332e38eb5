"""``asyncsim diff A B``: what differs between two scenarios, or two runs, field by field.

Each side is a scenario (a file, or a shipped example by name), resolved as
``asyncsim show`` prints it (the preset expanded, every default filled in),
or a run folder (the scenario it stores, resolved the same way, and its
summary). Resolved, not as written: two files that spell one setting
differently (a preset's default written out, a fleet named or inlined) are
the same, and a preset's hidden learning rate shows up. For two run
folders, the facts of their summaries (status, run hash, final metrics,
simulation version, digest) are compared too.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from sim.errors import UserError
from sim.scenario import Scenario, load_scenario

#: a field one side has and the other has not
ABSENT = object()
#: summary facts shown by their first characters, as run folders name them
HASHES = ("run_hash", "scenario_digest")
#: the widest line before a difference is written over three lines (80 columns)
WIDTH = 80


@dataclass(frozen=True)
class Side:
    """One thing compared: its scenario, and its summary if it is a run folder."""

    name: str
    scenario: Scenario
    summary: dict[str, Any] | None


def load_side(text: str, method: str | None, overrides: dict[str, Any]) -> Side:
    """A run folder (a folder with scenario.yaml and summary.json) or a scenario file / shipped example.

    ``method`` and ``overrides`` (``--method``, ``--set``) apply to a
    scenario file only: a run folder holds the scenario it ran.
    """
    path = Path(text)
    if not path.is_dir():
        return Side(text, load_scenario(path, overrides=overrides, method=method), None)
    if not (path / "scenario.yaml").is_file() or not (path / "summary.json").is_file():
        raise UserError(f"{path}: a folder, but not a run folder (no scenario.yaml and summary.json)")
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path / 'summary.json'}: cannot read it ({exc})") from None
    if not isinstance(summary, dict):
        raise UserError(f"{path / 'summary.json'}: expected a mapping of summary facts")
    return Side(text, load_scenario(path / "scenario.yaml"), summary)


def differences(a: Any, b: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Every leaf where ``a`` and ``b`` differ, as (dotted path, a's value, b's value); lists by ``[i]``.

    A mapping or list on one side only (the other side ``ABSENT``) is one
    difference when its line fits 80 columns, else it is walked too, so
    each line stays short enough to read.
    """
    if (a is ABSENT or b is ABSENT) and len(line(path, a, b)) <= WIDTH:
        yield path, a, b
        return
    if isinstance(a, dict) or isinstance(b, dict):
        if _walkable(a, dict) and _walkable(b, dict) and (a or b):
            a_, b_ = _or_empty(a, dict), _or_empty(b, dict)
            for key in dict.fromkeys([*a_, *b_]):
                yield from differences(a_.get(key, ABSENT), b_.get(key, ABSENT), f"{path}.{key}" if path else str(key))
            return
    elif isinstance(a, list) or isinstance(b, list):
        if _walkable(a, list) and _walkable(b, list) and (a or b):
            a_, b_ = _or_empty(a, list), _or_empty(b, list)
            for i in range(max(len(a_), len(b_))):
                yield from differences(a_[i] if i < len(a_) else ABSENT, b_[i] if i < len(b_) else ABSENT,
                                       f"{path}[{i}]")
            return
    if a is ABSENT or b is ABSENT or a != b or type(a) is not type(b):
        yield path, a, b


def _walkable(value: Any, kind: type) -> bool:
    return value is ABSENT or isinstance(value, kind)


def _or_empty(value: Any, kind: type) -> Any:
    return kind() if value is ABSENT else value


def summary_facts(summary: dict[str, Any]) -> dict[str, Any]:
    """What a run folder's summary says of its outcome: the facts ``diff`` compares."""
    final = {k: v for k, v in (summary.get("final") or {}).items() if k not in ("method", "seed")}
    facts = {key: summary.get(key, ABSENT) for key in ("status", "run_hash", "scenario_digest", "simulation",
                                                        "simulated_seconds")}
    return {**facts, "final": final, "versions": summary.get("versions", ABSENT)}


def show(value: Any) -> str:
    """A value as the scenario's YAML would write it, on one line."""
    if value is ABSENT:
        return "(absent)"
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value, ensure_ascii=False)


def line(path: str, a: Any, b: Any) -> str:
    """``method.outer.lr: 0.7 -> 0.3``."""
    return f"{path}: {show(a)} -> {show(b)}"


def diff_lines(a: Side, b: Side) -> list[str]:
    """One line per differing field (``method.outer.lr: 0.7 -> 0.3``), then ``summary.*`` for two run folders."""
    found = list(differences(a.scenario.resolved(), b.scenario.resolved()))
    if a.summary is not None and b.summary is not None:
        for path, x, y in differences(summary_facts(a.summary), summary_facts(b.summary)):
            short = path in HASHES  # a hash by its first 12 characters, as run folders are named
            found.append((f"summary.{path}", x[:12] if short and isinstance(x, str) else x,
                          y[:12] if short and isinstance(y, str) else y))
    lines = []
    for path, x, y in found:
        one = line(path, x, y)
        lines += [one] if len(one) <= WIDTH else [f"{path}:", f"  {show(x)}", f"  -> {show(y)}"]
    if found and a.scenario.digest() == b.scenario.digest() and a.summary is None and b.summary is None:
        lines.append("(one digest: these differences do not change the run)")
    return lines


def same_line(a: Side, b: Side) -> str:
    """The one line said when nothing differs."""
    if a.summary is not None and b.summary is not None:
        return f"identical: the same scenario and the same run (run hash {str(a.summary.get('run_hash'))[:12]})"
    return f"identical: {a.name} and {b.name} resolve to the same scenario (digest {a.scenario.digest()[:12]})"
