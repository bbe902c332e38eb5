"""A run folder's ``summary.json``: what made the run, its hash, status and final metrics, and the versions behind it.

A leaf: the runner and a live run (sim/live/session.py) write the same
summary from the run's settings (:class:`sim.build.RunSettings`, which hold
its identity as assembled from the scenario) and its outcome, and the
store and ``compare`` read the versions back to say when a reused run was
made by other software or on other CPU kernels.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from sim.records import run_hash
from trainers.kernels import cpu_capability

if TYPE_CHECKING:  # annotations only
    import pandas as pd

    from sim.build import RunSettings
    from sim.runstate import Outcome


def run_summary(settings: RunSettings, outcome: Outcome, metrics: pd.DataFrame, events: pd.DataFrame) -> dict[str, Any]:
    """A run folder's ``summary.json``: what made the run, its hash, status and final metrics (simulated or live)."""
    final = metrics.iloc[-1].to_dict()
    return {
        "name": settings.scenario_name,
        "method": settings.name,
        "seed": settings.seed,
        "scenario_digest": settings.digest,
        "simulation": settings.simulation,
        "run_hash": run_hash(metrics, events),
        "status": outcome.status,
        "diverged": outcome.diverged,
        **({"stalled": outcome.stalled} if outcome.stalled else {}),
        "final": {k: (v.item() if hasattr(v, "item") else v) for k, v in final.items()},
        "simulated_seconds": outcome.simulated_seconds,
        "jobs": int((events["event"] == "dispatch").sum()),
        "num_params": int(outcome.theta.numel()),  # for the bytes on the wire (sim/traffic.py)
        "versions": software_versions(),
        **({"code": dict(settings.code)} if settings.code else {}),
    }


def software_versions() -> dict[str, str]:
    """Versions that can change a run's bits; recorded in every run's summary (a fresh copy each call)."""
    return dict(_versions())


@functools.cache
def _versions() -> dict[str, str]:
    """Looked up once per process: compare asks for every reused run, and nothing here changes while it runs."""
    from importlib.metadata import PackageNotFoundError, version

    import numpy
    import torch

    try:
        asyncsim = version("asyncsim")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        asyncsim = "unknown"
    return {"asyncsim": asyncsim, "torch": torch.__version__, "numpy": numpy.__version__, "cpu": cpu_capability()}


def made_with_other_versions(summary: dict[str, Any]) -> str | None:
    """``made with torch 2.1, ...`` when a run's recorded versions differ from this software's, else None.

    Only what the run recorded is compared: runs made before the CPU kernels
    were recorded (trainers/kernels.py) say nothing of theirs.
    """
    made = summary.get("versions")
    now = _versions()
    if made and all(now.get(key) == value for key, value in made.items()):
        return None
    return f"made with {versions_text(made)}" if made else "made by an asyncsim that did not record versions"


def versions_text(versions: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
