"""asyncsim: a deterministic discrete-event simulator for asynchronous Local-SGD.

Notebook use::

    from sim import load_scenario, simulate
    sc = load_scenario("scenarios/very_heterogeneous.yaml", method="diloco",
                       overrides={"schedule.t_max": 8000})
    result = simulate(sc)
    result.metrics.plot(x="t_local", y="loss")   # pandas DataFrames
    result.events.query("event == 'sync'").staleness.describe()
"""
from __future__ import annotations

import importlib
from typing import Any

import trainers  # noqa: F401  (pins torch's CPU kernels before torch loads: trainers/kernels.py)

#: public name -> the module that defines it; imported on first use, so that
#: ``import sim.errors`` (or the CLI's --help) does not pull in torch
_EXPORTS = {
    "RunResult": "sim.runner",
    "run": "sim.runner",
    "simulate": "sim.runner",
    "Scenario": "sim.scenario",
    "ScenarioError": "sim.errors",
    "UserError": "sim.errors",
    "load_scenario": "sim.scenario",
    "scenario_from_dict": "sim.scenario",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
