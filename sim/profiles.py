"""Device profiles: how long a device takes for a local round.

A profile gives a device's speed (steps per second, seconds per step, or an
accelerator's peak FLOP/s and a utilisation, from which the step time of the
scenario's model follows as ~6 x parameters x tokens per step / (peak x
utilisation)) and an optional per-round jitter: each round's duration is multiplied by a
mean-one log-normal factor exp(sigma z - sigma^2 / 2), drawn from the run's
jitter stream. Fleet files in ``device_profiles/`` list devices; a scenario
with more workers than devices reuses the list cyclically.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sim.yamlio import load_yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sim.churn import Availability


def shipped_dir(folder: str) -> Path:
    """Where a shipped data folder (``device_profiles``, ``scenarios``) is.

    The repository root holds the source of truth; the wheel maps each
    folder into the package (``sim/device_profiles``, ``sim/scenarios``,
    see pyproject.toml), because a wheel cannot install files next to
    ``site-packages``. So: inside the package when installed, at the
    repository root in a checkout or editable install.
    """
    package = Path(__file__).resolve().parent
    for candidate in (package / folder, package.parent / folder):
        if candidate.is_dir():
            return candidate
    return package.parent / folder


#: where the shipped fleet files live, whatever the working directory
PROFILE_DIR = shipped_dir("device_profiles")
#: where the shipped example scenarios live (``asyncsim init`` copies from here)
SCENARIO_DIR = shipped_dir("scenarios")


def scenario_path(name: str | Path) -> Path:
    """A scenario file as given, or a shipped example by its name (``very_heterogeneous``), from any directory.

    A path that exists always wins; only a bare name with no such file here
    is looked up among the shipped examples, so a wheel installed anywhere
    runs them by name.
    """
    path = Path(name)
    if path.exists() or len(path.parts) != 1:
        return path
    shipped = SCENARIO_DIR / f"{path.name.removesuffix('.yaml')}.yaml"
    return shipped if shipped.is_file() else path


class Device(BaseModel):
    """One device's speed model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "device"
    steps_per_second: float | None = Field(None, gt=0, allow_inf_nan=False)
    seconds_per_step: float | None = Field(None, gt=0, allow_inf_nan=False)
    peak_tflops: float | None = Field(None, gt=0, le=1e6, allow_inf_nan=False, description="datasheet peak, TFLOP/s")
    utilization: float = Field(0.4, gt=0, le=1, description="fraction of peak a training step achieves (MFU)")
    jitter: float = Field(0.0, ge=0, le=2, allow_inf_nan=False, description="log-normal sigma per round")
    job_overhead_ms: float | None = Field(
        None, ge=0, allow_inf_nan=False,
        description="fixed real time each job costs besides its steps (starting it, the server's handling of its "
                    "result), as asyncsim calibrate measures a live run")
    # communication and churn (see sim/network.py, sim/churn.py); None: not modelled
    bandwidth_gbps: float | None = Field(None, gt=0, description="the device's link, Gbit/s each way")
    latency_ms: float | None = Field(None, ge=0, allow_inf_nan=False, description="one-way latency of the link")
    region: str | None = Field(None, min_length=1, max_length=100)
    availability: Availability | None = None

    @model_validator(mode="after")
    def _one_speed(self) -> "Device":
        given = [x is not None for x in (self.steps_per_second, self.seconds_per_step, self.peak_tflops)]
        if sum(given) != 1:
            raise ValueError("give exactly one of steps_per_second, seconds_per_step or peak_tflops")
        return self

    #: optional fields that, left out, must not change a scenario's identity (its digest)
    OPTIONAL: ClassVar[tuple[str, ...]] = ("bandwidth_gbps", "latency_ms", "region", "availability", "job_overhead_ms")

    def step_time(self, flops_per_step: float | None = None) -> float:
        """Seconds per local step; FLOP-rated devices need the model's FLOPs per step."""
        if self.seconds_per_step is not None:
            return self.seconds_per_step
        if self.steps_per_second is not None:
            return 1.0 / self.steps_per_second
        if flops_per_step is None:
            raise ValueError(f"device {self.name!r} is rated in FLOP/s: the trainer must report flops_per_step()")
        return flops_per_step / (self.peak_tflops * 1e12 * self.utilization)  # type: ignore[operator]

    def speed(self, flops_per_step: float | None = None) -> float:
        """v(w) in steps per second (Eq. 6)."""
        return 1.0 / self.step_time(flops_per_step)


def jitter_factor(jitter: float, rng: np.random.Generator) -> float:
    """One round's duration multiplier: mean-one log-normal, exp(sigma z - sigma^2 / 2), one draw per round."""
    return math.exp(jitter * float(rng.standard_normal()) - 0.5 * jitter**2)


class Fleet(BaseModel):
    """A named list of devices, as stored in ``device_profiles/NAME.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    devices: list[Device] = Field(min_length=1)


def fleet_path(name: str, base: Path | None = None) -> Path:
    """Resolve a fleet name or path.

    A path (``*.yaml`` or with a ``/``) that is relative is tried first
    against ``base`` (the scenario's folder), so a scenario and its own
    fleet file move together. A bare name is looked up in the working
    directory's ``device_profiles/`` (a user's own fleets win), then in the
    shipped ones (:data:`PROFILE_DIR`), so names work from any directory.
    """
    if name.endswith((".yaml", ".yml")) or "/" in name:
        p = Path(name)
        if not p.is_absolute() and base is not None and (base / p).exists():
            return base / p
        return p
    for folder in (Path.cwd() / "device_profiles", PROFILE_DIR):
        if (folder / f"{name}.yaml").exists():
            return folder / f"{name}.yaml"
    return PROFILE_DIR / f"{name}.yaml"


def shipped_fleet_path(name: str) -> Path:
    """The shipped fleet ``name`` (never a user's file of the same name in the working directory)."""
    return PROFILE_DIR / f"{name}.yaml"


def load_fleet_raw(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return load_yaml(fh.read())


def available_fleets() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
