"""Scenario files: YAML -> a validated, frozen :class:`Scenario`.

Every problem with a file becomes one :class:`ScenarioError` line that names
the file, the field and what was expected; the CLI prints it and exits 2.
"""
from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import inspect
import json
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sim.churn import resolve_trace
from sim.errors import ScenarioError
from sim.memory import check as check_memory
from sim.network import NetworkSpec
from sim.outer.registry import construct, resolve, source_digest
from sim.presets import PRESETS
from sim.profiles import (Device, Fleet, available_fleets, fleet_path, load_fleet_raw, scenario_path,
                          shipped_fleet_path)
from sim.schedules import SCHEDULES
from sim.trainer_names import trainer_config_class
from sim.yamlio import load_yaml
from trainers import BUILTIN_TRAINERS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainerSpec(_Strict):
    name: str = "toy"
    config: dict[str, Any] = Field(default_factory=dict)


class WorkersSpec(_Strict):
    k: int = Field(gt=0, le=100_000)
    devices: tuple[Device, ...] = Field(min_length=1)
    fleet: str | None = None  # the fleet file the devices came from, for the record

    def device(self, worker: int) -> Device:
        return self.devices[worker % len(self.devices)]


#: What the simulator makes of a scenario, in the run's identity (its digest and summary). Bumped when
#: the same scenario can give a different run, so that run folders made before are not reused for it.
#: 2 (#12): exact simulated time; rounds that end together mathematically are synced together.
SIMULATION_VERSION = 2
#: schedules whose rules changed since, each with its own version (the others keep SIMULATION_VERSION, so their
#: digests hold). 3 (#22): a worker of Streaming DiLoCo / eager / delayed DiLoCo back up before a sync it uploaded
#: to closes is no longer sent that sync's fragment or average (it restarts from the whole model), and Streaming
#: DiLoCo counts its steps once, from its restart (t_local never went back)
SCHEDULE_VERSIONS = {"streaming": 3, "eager": 3, "delayed": 3}

#: schedules whose workers keep their own model and overlap transfers with training (no DyLU, no fix)
OVERLAPPING = ("streaming", "eager", "delayed")

#: the schedules a method may name (sim/schedules/: one policy per file)
ScheduleName = Literal[tuple(SCHEDULES)]  # type: ignore[valid-type]


#: what happens to a worker's inner optimizer state between rounds (sim/inner_state.py)
InnerState = Literal["reset", "keep", "shard"]

#: schedules whose inner state is not reset by default: the 1-worker baseline is one training process, and
#: Streaming DiLoCo keeps each worker's (its preset's choice, stored in its own block as before)
DEFAULT_INNER_STATE: dict[str, str] = {"single": "keep", "streaming": "keep"}


class HierarchySpec(_Strict):
    """HALoS's two tiers (sim/schedules/hierarchical.py): a local server per region under one global server."""

    K: int = Field(32, ge=1, le=10**9, description="updates a local server applies between pushes to the global one")
    alpha: float = Field(0.75, ge=0, le=1, description="weight of the LPS's own model when the global one is merged "
                         "in: theta_r <- alpha theta_r + (1 - alpha) theta (the authors' merge weight is 1 - alpha)")
    local_outer: dict[str, Any] = Field(description="each local server's outer update (N: k = the region's workers)")


class StreamingSpec(_Strict):
    """Streaming DiLoCo's fragments and overlap (sim/schedules/streaming.py; Douillard et al. 2025)."""

    fragments: int = Field(2, ge=1, le=10**6, description="P: fragments, strided over layers, synced H / P steps apart")
    overlap: int = Field(1, ge=0, le=10**7, description="tau: inner steps a worker trains on while a fragment syncs")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the worker's own fragment when the global one is merged in")
    inner_state: Literal["keep", "reset"] = Field("keep", description="carry each worker's AdamW state across syncs "
                                                  "(keep), or start a fresh one every round of H steps (reset, as DiLoCo)")


class MethodSpec(_Strict):
    preset: str
    schedule: ScheduleName
    outer: dict[str, Any] | None  # the (global) server's outer update
    fix: dict[str, Any] | None
    dylu: bool
    dylu_speeds: Literal["oracle", "online"] = "oracle"  # known a priori, or estimated from rounds (footnote 3)
    dylu_rounding: Literal["floor", "ceil"] = Field("floor", description="DyLU's steps: floor(v / max v * H) as "
                                                    "Eq. 6, or ceil as the HALoS authors' simulator")
    hierarchy: HierarchySpec | None = None  # only for schedule: halos
    streaming: StreamingSpec | None = None  # only for schedule: streaming
    inner_state: InnerState = Field("reset", description="each worker's inner optimizer state between rounds: "
                                    "reset (a fresh AdamW every round, the paper), keep (each worker carries its "
                                    "own), shard (the state follows the data shard from worker to worker)")


class ScheduleSpec(_Strict):
    H: int = Field(50, gt=0, le=10**7, description="local steps of the fastest worker per round")
    t_max: int = Field(gt=0, le=10**13, description="total local-step budget")
    grace_period: float = Field(0.0, ge=0, allow_inf_nan=True)
    grace_wait: Literal["last_sync", "window"] = "last_sync"


class LRSpec(_Strict):
    max: float = Field(gt=0, allow_inf_nan=False)
    min: float = Field(gt=0, allow_inf_nan=False, description="eta_min > 0 (Sec. 3)")
    warmup: int = Field(0, ge=0, le=10**13)

    @model_validator(mode="after")
    def _ordered(self) -> "LRSpec":
        if self.min > self.max:
            raise ValueError(f"lr.min ({self.min}) must not exceed lr.max ({self.max})")
        return self


class EvalSpec(_Strict):
    every: int = Field(gt=0, le=10**13, description="evaluate every this many total local steps")
    divergence_factor: float = Field(
        100.0, gt=1, description="stop as diverged when a loss exceeds this multiple of the initial eval loss"
    )
    diagnostics: bool = Field(False, description="record each sync's pseudo-gradient norm, its cosine to the mean "
                              "direction and the outer step's norm as event columns (sim/diagnostics.py)")


class ComputeSpec(_Strict):
    threads: int = Field(1, gt=0, le=256, description="torch threads per job; part of the run's identity")
    stack: int = Field(1, ge=1, le=1024, description="jobs in flight trained together as one stacked pass (1: one by "
                       "one, as before); agrees with 1 to float rounding, so part of the run's identity")
    compile: bool = Field(False, description="train with the trainer's model compiled by torch.compile (Inductor): "
                          "faster steps that agree with eager to float rounding, so part of the run's identity")


class Scenario(_Strict):
    name: str = Field("scenario", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.+-]+$")
    seed: int = Field(0, ge=0, lt=2**63)
    trainer: TrainerSpec = TrainerSpec()
    workers: WorkersSpec
    method: MethodSpec
    schedule: ScheduleSpec
    lr: LRSpec
    eval: EvalSpec
    compute: ComputeSpec = ComputeSpec()
    network: NetworkSpec | None = None  # None: communication takes no time

    def resolved(self) -> dict[str, Any]:
        """Plain-data form of everything that determines the run's results.

        Optional features left out (no network, no link or churn on a
        device) are left out here too, so scenarios written before they
        existed keep their digests and their run folders.
        """
        raw = self.model_dump(mode="json", exclude_none=False)
        for block in ("hierarchy", "streaming"):  # added later: left out, so older digests hold
            if raw["method"][block] is None:
                del raw["method"][block]
        if not raw["eval"]["diagnostics"]:  # added later: left out when off, so older digests hold
            del raw["eval"]["diagnostics"]
        method = raw["method"]  # added later: left out where it is the schedule's default, so older digests hold
        if method["dylu_rounding"] == "floor":
            del method["dylu_rounding"]
        if method["schedule"] == "streaming" or method["inner_state"] == default_inner_state(method["schedule"]):
            del method["inner_state"]  # Streaming DiLoCo records it in its own block, as it always did
        if raw["compute"]["stack"] == 1:  # added later: left out when off, so older digests hold
            del raw["compute"]["stack"]
        if not raw["compute"]["compile"]:  # added later: left out when off, so older digests hold
            del raw["compute"]["compile"]
        if raw["network"] is None:
            del raw["network"]
        elif raw["network"]["block_size"] is None:  # added later: left out, so older digests hold
            del raw["network"]["block_size"]
        for device in raw["workers"]["devices"]:
            for key in Device.OPTIONAL:
                if device[key] is None:
                    del device[key]
        return raw

    def simulation_version(self) -> int:
        """The version of the simulation that runs this scenario's schedule (:data:`SCHEDULE_VERSIONS`)."""
        return SCHEDULE_VERSIONS.get(self.method.schedule, SIMULATION_VERSION)

    def digest(self) -> str:
        """sha256 of the canonical resolved scenario; keys run folders.

        A scenario that runs the user's own code (a trainer, outer update or
        fix named by import path) also hashes that code's source files, so
        an edited model never reuses the old result. Built-in components are
        covered by the asyncsim version instead (recorded in each run's
        summary), which keeps committed reports reusable, except when the
        simulation itself changes: :meth:`simulation_version`.

        The fleet counts by its devices, not by how it was named
        (:func:`fleet_identity`): ``very_heterogeneous``, a path to the
        shipped file, a copy made by ``asyncsim init`` and the same devices
        written inline are one fleet and share their runs.
        """
        identity = {**self.resolved(), "simulation": self.simulation_version()}
        identity["workers"] = {**identity["workers"], "fleet": fleet_identity(identity["workers"]["devices"])}
        code = self.code_digests()
        if code:  # absent for built-ins, so their digests are unchanged
            identity["code"] = code
        text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def code_digests(self) -> dict[str, str]:
        """Source hash of each of the user's own components (import paths) this scenario runs."""
        names = [self.trainer.name if self.trainer.name not in BUILTIN_TRAINERS else None]
        names += [(spec or {}).get("name") for spec in (self.method.outer, self.method.fix)]
        return {n: source_digest(n) for n in sorted({n for n in names if isinstance(n, str) and ":" in n})}

    def with_overrides(self, overrides: dict[str, Any], source: str = "<overrides>") -> "Scenario":
        """A new scenario with dotted-key overrides applied to the resolved form."""
        raw = self.resolved()
        if any(key == "method" or key.startswith("method.preset") for key in overrides):
            raw["method"] = {}  # a new preset starts from its own defaults
        return scenario_from_dict(_apply_overrides(raw, overrides, source), source)


def fleet_identity(devices: list[dict[str, Any]]) -> str | None:
    """How a fleet enters a run's identity: the name of the shipped fleet with exactly these devices, else None.

    The devices themselves are in the digest already; the name only keeps
    the digests that shipped scenarios had when the name was all there was
    (they name shipped fleets), so their stored runs stay valid.
    """
    return _shipped_fleets().get(_devices_key(devices))


def _devices_key(devices: list[dict[str, Any]]) -> str:
    return json.dumps(devices, sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=1)
def _shipped_fleets() -> dict[str, str]:
    """Resolved devices (as :meth:`Scenario.resolved` writes them) -> shipped fleet name; the first name wins."""
    out: dict[str, str] = {}
    for name in reversed(available_fleets()):  # sorted names, the first one kept on a tie
        workers = WorkersSpec.model_validate(_resolve_workers({"fleet": str(shipped_fleet_path(name))}, name, None))
        devices = [d.model_dump(mode="json") for d in workers.devices]
        for device in devices:
            for key in Device.OPTIONAL:
                if device[key] is None:
                    del device[key]
        out[_devices_key(devices)] = name
    return out


# -- loading -----------------------------------------------------------------


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None, method: str | None = None) -> Scenario:
    """Read, override and validate a scenario file (or a shipped example named without a path)."""
    path = scenario_path(path)
    source = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        bare = len(path.parts) == 1
        raise ScenarioError(f"{source}: no such file" + (", nor a shipped example of that name" if bare else "")) from None
    except IsADirectoryError:
        raise ScenarioError(f"{source}: is a directory, expected a YAML scenario file") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ScenarioError(f"{source}: cannot read ({exc.strerror})") from None
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ScenarioError(f"{source}: YAML syntax error{where}: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{source}: expected a mapping of scenario fields at the top level, got {type(raw).__name__}")
    tuned = _method_settings(raw.pop("method_settings", None), source)
    chosen = method or _preset_of(_apply_overrides(raw, overrides or {}, source).get("method"))
    raw = _apply_overrides(raw, tuned.get(chosen, {}), source)  # the file's own settings for this method
    raw = _apply_overrides(raw, overrides or {}, source)  # then --set / --method-set, which win
    if method is not None:
        raw = _apply_overrides(raw, {"method.preset": method}, source)
    try:
        return scenario_from_dict(raw, source, base=path.parent)
    except ScenarioError as exc:
        raise _blame_override(exc, source, overrides or {}) from None


def _method_settings(section: Any, source: str) -> dict[str, dict[str, Any]]:
    """A file's ``method_settings:``: per preset, the dotted fields it sets for that method only.

    It is what ``--method-set PRESET:KEY=VALUE`` does from the command line,
    kept in the file, so that a file can carry each method's tuned settings
    (``scenarios/lm_micro_paper.yaml``). It is applied before ``--set`` and
    ``--method-set``, which win, and it is not part of the resolved scenario:
    a run it tunes has the digest of the same run tuned by ``--method-set``.
    """
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise _field_error(source, "method_settings", "expected a mapping of preset: {field: value}")
    for preset, fields in section.items():
        if preset not in PRESETS:
            raise _field_error(source, f"method_settings.{preset}",
                               f"no preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
        if not isinstance(fields, dict) or not all(isinstance(key, str) for key in fields):
            raise _field_error(source, f"method_settings.{preset}",
                               "expected a mapping of dotted fields to values, e.g. {method.outer.lr: 0.3}")
    return section


def _preset_of(method: Any) -> str | None:
    """The preset a raw ``method:`` names (a name, or a mapping with ``preset``)."""
    preset = method.get("preset") if isinstance(method, dict) else method
    return preset if isinstance(preset, str) else None  # anything else is refused when the method is validated


def _blame_override(exc: ScenarioError, source: str, overrides: dict[str, Any]) -> ScenarioError:
    """An error in a field that ``--set`` gave names ``--set KEY=VALUE``, not the file that never said it."""
    field = exc.field
    if field is None:
        return exc
    for key, value in overrides.items():
        if field == key or field.startswith(key + ".") or key.startswith(field + "."):
            return ScenarioError(str(exc).replace(f"{source}: ", f"--set {key}={value}: ", 1), field=field)
    return exc


def parse_override(text: str) -> tuple[str, Any]:
    """``key.path=value`` with the value parsed as YAML (so numbers stay numbers)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ScenarioError(f"--set {text!r}: expected KEY=VALUE, e.g. schedule.H=100")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    if isinstance(parsed, str):  # YAML 1.1 reads 1e6 (no dot) as a string
        try:
            parsed = float(parsed) if any(c in parsed for c in ".eE") else int(parsed)
        except ValueError:
            pass
    return key.strip(), parsed


def check_distinct(values: list[Any], option: str, text: str) -> None:
    """Refuse a value given twice in one list (``--seeds 0,0``): the same run would count twice (n = 2, std 0).

    Values are compared by ``==``, so 4 and 4.0 are one value and unhashable
    values (lists) work too; the one line names ``option`` as given.
    """
    seen: list[Any] = []
    for value in values:
        if value in seen:
            raise ScenarioError(f"{option} {text!r}: {value!r} is given twice; give each value once")
        seen.append(value)


def _apply_overrides(raw: dict[str, Any], overrides: dict[str, Any], source: str) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = raw
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if part == "method" and isinstance(child, str):
                child = {"preset": child}
            if child is None:
                child = {}
            if not isinstance(child, dict):
                raise _field_error(source, ".".join(parts[: i + 1]), f"cannot set {dotted}, it is not a mapping")
            node[part] = child
            node = child
        node[parts[-1]] = value
    return raw


def _known_fields(loc: tuple[Any, ...]) -> list[str]:
    """The field names a scenario accepts at ``loc`` (a path of field names), for "did you mean"."""
    model: Any = Scenario
    for part in loc:
        field = getattr(model, "model_fields", {}).get(str(part))
        if field is None:
            return []
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def _field_error(source: str, field: str, message: str) -> ScenarioError:
    return ScenarioError(f"{source}: field '{field}': {message}", field=field)


def _format_validation_error(source: str, exc: ValidationError, prefix: str = "") -> ScenarioError:
    """Every problem in one line, unknown fields first (a typo is what makes a field 'missing')."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    missing = [str(e["loc"][-1]) for e in errors if e["type"] == "missing" and e["loc"]]
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        field = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "(top level)"
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "extra_forbidden":
            known = missing + _known_fields(err["loc"][:-1]) if not prefix else missing
            close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1) if err["loc"] else []
            msg = "unknown field" + (f" (did you mean '{close[0]}'?)" if close else "")
        elif "input" in err and err["type"] not in ("value_error",):
            got = err["input"]
            shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
            msg = f"{msg} (got {shown[:60]})"
        parts.append((field, msg.replace("Value error, ", "")))
    (field, msg), rest = parts[0], parts[1:]
    also = "".join(f"; also field '{f}': {m}" for f, m in rest)
    return _field_error(source, field, msg + also)


def _resolve_method(raw_method: Any, source: str) -> dict[str, Any]:
    if raw_method is None:
        raw_method = {"preset": "dn_dylu"}
    if isinstance(raw_method, str):
        raw_method = {"preset": raw_method}
    if not isinstance(raw_method, dict):
        raise _field_error(source, "method", f"expected a preset name or a mapping, got {type(raw_method).__name__}")
    unknown = set(raw_method) - set(METHOD_FIELDS)
    if unknown:
        raise _field_error(source, f"method.{sorted(map(str, unknown))[0]}",
                           f"unknown field (expected {', '.join(METHOD_FIELDS)})")
    preset = raw_method.get("preset", "dn_dylu")
    if not isinstance(preset, str) or preset not in PRESETS:
        raise _field_error(source, "method.preset", f"unknown method {preset!r}; expected one of {', '.join(PRESETS)}")
    resolved = copy.deepcopy(PRESETS[preset])
    resolved["preset"] = preset
    for key in ("schedule", "dylu", "dylu_speeds", "dylu_rounding"):
        if key in raw_method:
            resolved[key] = raw_method[key]
    for key in ("outer", "fix"):
        if key in raw_method and resolved["schedule"] != "single":
            resolved[key] = _merge_component(resolved[key], raw_method[key], f"method.{key}", source)
    if resolved["schedule"] == "single":
        # The 1-worker baseline copies the worker's model: no outer update to tune.
        resolved["outer"] = resolved["fix"] = None
    for field, owner in (("hierarchy", "halos"), ("streaming", "streaming")):
        resolved[field] = _merge_block(field, owner, resolved.get(field), raw_method.get(field), source,
                                       resolved["schedule"])
    resolved["inner_state"] = _inner_state(resolved, raw_method.get("inner_state"))
    return resolved


#: the fields of ``method`` a scenario may set
METHOD_FIELDS = ("preset", "schedule", "outer", "fix", "dylu", "dylu_speeds", "dylu_rounding", "hierarchy", "streaming",
                 "inner_state")


def default_inner_state(schedule: str) -> str:
    """``method.inner_state`` when a scenario does not set it: reset (the paper), but for the schedules that keep it."""
    return DEFAULT_INNER_STATE.get(schedule, "reset")


def _inner_state(resolved: dict[str, Any], given: Any) -> Any:
    """``method.inner_state``: as given, else the schedule's default; Streaming DiLoCo's lives in its block too.

    For Streaming DiLoCo, ``method.inner_state`` and ``method.streaming.inner_state``
    are one setting (the block's is the older spelling): the first, when
    given, sets the second.
    """
    block = resolved.get("streaming")
    if resolved["schedule"] == "streaming" and isinstance(block, dict):
        if given is not None:
            resolved["streaming"] = {**block, "inner_state": given}
        return resolved["streaming"].get("inner_state", given)
    if given is not None:
        return given
    return resolved.get("inner_state") or default_inner_state(str(resolved["schedule"]))  # the preset's, if it says


def _merge_block(field: str, owner: str, base: dict[str, Any] | None, given: Any, source: str,
                 schedule: str) -> dict[str, Any] | None:
    """Schedule ``owner``'s own settings block (``method.hierarchy``, ``method.streaming``): the preset's, with the
    scenario's fields over it; ``none`` removes it."""
    if given is None or given == "none":
        return base if given is None else None
    if schedule != owner:
        raise _field_error(source, f"method.{field}", f"only schedule {owner!r} takes one, not {schedule!r} "
                           f"(compare: --method-set METHOD:method.{field}.FIELD=VALUE sets it for one method)")
    if not isinstance(given, dict):
        raise _field_error(source, f"method.{field}", f"expected a mapping, got {type(given).__name__}")
    merged = {**(base or {}), **given}
    if field == "hierarchy" and "local_outer" in given:  # a local outer of the same name merges, as method.outer
        merged["local_outer"] = _merge_component((base or {}).get("local_outer"), given["local_outer"],
                                                 "method.hierarchy.local_outer", source)
    return merged


def _merge_component(base: dict[str, Any] | None, value: Any, field: str, source: str) -> dict[str, Any] | None:
    """An outer update or fix as given over the preset's: ``none``, a name, or a mapping.

    A mapping with a new name starts from that component's own defaults; the same name merges.
    """
    if value is None or value == "none":
        return None
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, dict):
        raise _field_error(source, field, f"expected a name or a mapping, got {type(value).__name__}")
    base = base or {}
    merged = {**base, **value} if value.get("name", base.get("name")) == base.get("name") else dict(value)
    if "name" not in merged:
        raise _field_error(source, f"{field}.name", "required field is missing")
    return merged


def _resolve_traces(devices: list[Any], source: str, field: str, base: Path | None) -> list[Any]:
    """Read availability trace files (relative to the file that names them) into down intervals."""
    out = []
    for i, device in enumerate(devices):
        try:
            out.append(resolve_trace(device, base) if isinstance(device, dict) else device)
        except OSError as exc:
            raise _field_error(source, f"{field}.{i}.availability.trace", f"cannot read ({exc.strerror})") from None
        except ValueError as exc:
            raise _field_error(source, f"{field}.{i}.availability.trace", str(exc)) from None
    return out


def _resolve_workers(raw: Any, source: str, base: Path | None) -> dict[str, Any]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _field_error(source, "workers", f"expected a mapping with 'fleet' or 'devices', got {type(raw).__name__}")
    raw = dict(raw)
    if "devices" not in raw:
        fleet = raw.get("fleet", "very_heterogeneous")
        if not isinstance(fleet, str):
            raise _field_error(source, "workers.fleet", "expected a fleet name or a path to a YAML file")
        path = fleet_path(fleet, base)
        if not path.exists():
            raise _field_error(source, "workers.fleet", f"no device profile {fleet!r} (looked for {path})")
        try:
            data = load_fleet_raw(path)
            if isinstance(data, dict) and isinstance(data.get("devices"), list):
                data = {**data, "devices": _resolve_traces(data["devices"], str(path), "devices", path.parent)}
            parsed = Fleet.model_validate(data)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise _field_error(source, "workers.fleet", f"{path} is not valid YAML: {problem}") from None
        except ValidationError as exc:
            raise _format_validation_error(str(path), exc) from None
        raw["devices"] = [d.model_dump() for d in parsed.devices]
    elif isinstance(raw["devices"], list):
        if not raw["devices"]:
            raise _field_error(source, "workers.devices", "is empty: list at least one device (or name a fleet)")
        raw["devices"] = _resolve_traces(raw["devices"], source, "workers.devices", base)
    if "k" not in raw and isinstance(raw["devices"], list):
        raw["k"] = len(raw["devices"])
    return raw


def _check_outer(spec: dict[str, Any] | None, field: str, source: str, k: int, wraps: bool) -> dict[str, Any] | None:
    """Validate an outer update's name and arguments; return them coerced to the annotated types.

    Arguments are checked against the class's ``__init__`` type hints with
    pydantic, so ``lr: "1e-3"`` (YAML reads 1e-3 without a dot as a string)
    becomes a float and ``momentum: fast`` is a one-line error.
    """
    import typing

    from pydantic import TypeAdapter

    from sim.outer.base import StalenessFix, check_argument

    if spec is None:
        return None

    try:
        cls = resolve(str(spec.get("name")))
    except ValueError as exc:
        raise _field_error(source, f"{field}.name", str(exc)) from None
    if wraps != issubclass(cls, StalenessFix):
        need = "a staleness fix (poly, polythres, delay_comp)" if wraps else "an outer update, not a staleness fix"
        raise _field_error(source, f"{field}.name", f"{spec['name']!r} is not {need}")
    params = inspect.signature(cls.__init__).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # a user's class with unresolvable hints: take values as given
        hints = {}
    coerced: dict[str, Any] = {"name": spec["name"]}
    for key, value in spec.items():
        if key == "name":
            continue
        if key not in params and not accepts_any:
            allowed = ", ".join(p for p in params if p not in ("self", "base"))
            raise _field_error(source, f"{field}.{key}", f"not a parameter of {spec['name']} (expected one of: {allowed})")
        if value == "k" or key not in hints:
            coerced[key] = value
            continue
        try:
            coerced[key] = TypeAdapter(hints[key]).validate_python(value)
        except ValidationError as exc:
            raise _field_error(source, f"{field}.{key}", f"{exc.errors()[0]['msg']} (got {value!r})") from None
        problem = check_argument(key, coerced[key])
        if problem:
            raise _field_error(source, f"{field}.{key}", problem)
    try:
        if wraps:
            from sim.outer.sgd import SGD

            construct(coerced, k, base=SGD())
        else:
            construct(coerced, k)
    except (TypeError, ValueError) as exc:
        raise _field_error(source, field, str(exc)) from None
    return coerced


def scenario_from_dict(raw: dict[str, Any], source: str = "<scenario>", base: Path | None = None) -> Scenario:
    """Validate a raw mapping (as read from YAML) into a :class:`Scenario`."""
    raw = dict(raw)
    raw["method"] = _resolve_method(raw.get("method"), source)
    raw["workers"] = _resolve_workers(raw.get("workers"), source, base)
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise _format_validation_error(source, exc) from None
    try:
        config_model = trainer_config_class(scenario.trainer.name)
    except ValueError as exc:
        raise _field_error(source, "trainer.name", str(exc)) from None
    if isinstance(config_model, type) and issubclass(config_model, BaseModel):
        try:
            config = config_model(**scenario.trainer.config)
        except ValidationError as exc:
            raise _format_validation_error(source, exc, prefix="trainer.config.") from None
        # the resolved scenario records the trainer's defaults too: they are part of the run's identity
        full = config.model_dump(mode="json")
        for key, default in getattr(config_model, "OMIT_AT_DEFAULT", {}).items():  # added later: older digests hold
            if full.get(key) == default:
                del full[key]
        scenario = scenario.model_copy(update={"trainer": scenario.trainer.model_copy(update={"config": full})})
    method = scenario.method
    if method.schedule != "single" and method.outer is None:
        raise _field_error(source, "method.outer", f"schedule {method.schedule!r} needs an outer update")
    outer = _check_outer(method.outer, "method.outer", source, scenario.workers.k, wraps=False)
    fix = _check_outer(method.fix, "method.fix", source, scenario.workers.k, wraps=True)
    if fix is not None and fix["name"] == "work" and method.schedule != "async":
        raise _field_error(source, "method.fix", f"'work' weighs arrivals one at a time: schedule 'async' only, not "
                           f"{method.schedule!r}")
    update: dict[str, Any] = {"outer": outer, "fix": fix}
    if method.schedule == "halos" and method.hierarchy is None:
        raise _field_error(source, "method.hierarchy", "schedule 'halos' needs one (K, alpha, local_outer)")
    if method.schedule != "halos" and method.hierarchy is not None:
        raise _field_error(source, "method.hierarchy", f"only schedule 'halos' takes one, not {method.schedule!r} "
                           "(method.hierarchy: none removes it)")
    if (method.schedule == "streaming") != (method.streaming is not None):
        raise _field_error(source, "method.streaming", "schedule 'streaming' needs one (fragments, overlap, alpha)"
                           if method.streaming is None else f"only schedule 'streaming' takes one, not {method.schedule!r}")
    if method.streaming is not None:
        st = method.streaming
        if st.fragments > scenario.schedule.H:
            raise _field_error(source, "method.streaming.fragments", f"{st.fragments} fragments cannot sync apart "
                               f"within H = {scenario.schedule.H} steps (at most H)")
        if st.overlap >= scenario.schedule.H:
            raise _field_error(source, "method.streaming.overlap", f"{st.overlap} steps: a fragment's merge must come "
                               f"before its next sync, H = {scenario.schedule.H} steps later (at most H - 1)")
    if method.inner_state == "shard" and method.schedule in ("single", "streaming"):
        raise _field_error(source, "method.inner_state", f"'shard' needs workers that take up each other's shards; "
                           f"schedule {method.schedule!r} keeps one state per worker (use keep or reset)")
    if method.schedule in OVERLAPPING:
        if method.fix is not None:
            raise _field_error(source, "method.fix", f"schedule {method.schedule!r} has no staleness to fix "
                               "(set it to none)")
        if method.dylu:
            raise _field_error(source, "method.dylu", f"schedule {method.schedule!r} syncs every worker at fixed "
                               "steps: every worker trains H steps a round (set it to false)")
    if method.hierarchy is not None:
        local = _check_outer(method.hierarchy.local_outer, "method.hierarchy.local_outer", source,
                             scenario.workers.k, wraps=False)
        update["hierarchy"] = method.hierarchy.model_copy(update={"local_outer": local})
    scenario = scenario.model_copy(update={"method": method.model_copy(update=update)})
    check_memory(scenario, config_model, source)  # refuse, with its estimate, a run that cannot fit in memory
    return scenario
