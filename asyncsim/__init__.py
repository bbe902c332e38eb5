"""asyncsim from Python: the CLI's commands as functions that return pandas frames.

A thin package over :mod:`sim` (where everything lives): one run with
``load_scenario`` / ``simulate`` / ``run`` (sim's own exports); studies with
``compare``, ``sweep`` and ``reproduce``, which mirror the CLI commands of
those names and share their run store; any run folder with ``load_run``::

    import asyncsim
    study = asyncsim.compare("very_heterogeneous", methods="diloco,dn_dylu", seeds=[0, 1],
                             sets={"schedule.t_max": 400})
    study.table                               # final loss per method: mean, std, n
    asyncsim.load_run(study.runs.folder[0]).metrics.plot(x="tau", y="loss")

Names are imported on first use, so ``import asyncsim`` is quick and loads
neither torch nor pandas.
"""
from __future__ import annotations

from typing import Any

import sim

#: the study functions of :mod:`asyncsim.api`; every other name is one of ``sim.__all__``
_API = ("compare", "sweep", "reproduce", "load_run", "Run", "Comparison")

__all__ = sorted({*_API, *sim.__all__})


def __getattr__(name: str) -> Any:
    if name in _API:
        from asyncsim import api

        return getattr(api, name)
    if name in sim.__all__:
        return getattr(sim, name)
    raise AttributeError(f"module 'asyncsim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
