"""asyncsim: a deterministic discrete-event simulator for asynchronous Local-SGD.

Notebook use::

    from sim import load_scenario, simulate
    sc = load_scenario("scenarios/very_heterogeneous.yaml", method="diloco",
                       overrides={"schedule.t_max": 8000})
    result = simulate(sc)
    result.metrics.plot(x="t_local", y="loss")   # pandas DataFrames
    result.events.query("event == 'sync'").staleness.describe()
"""
from sim.runner import RunResult, run, simulate
from sim.scenario import Scenario, ScenarioError, load_scenario, scenario_from_dict

__all__ = ["RunResult", "Scenario", "ScenarioError", "load_scenario", "run", "scenario_from_dict", "simulate"]
