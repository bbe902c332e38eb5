"""Schedules: when workers train and what an arrival does, one policy per file (like sim/outer/).

A scenario's ``method.schedule`` names one of :data:`SCHEDULES`. A new
schedule is a subclass of :class:`sim.schedules.base.Schedule` in its own
module and one line here. Names map to import paths, so validating a
scenario imports no schedule (and no torch).
"""
from __future__ import annotations

from typing import Any

from sim.outer.registry import import_object

SCHEDULES: dict[str, str] = {
    "async": "sim.schedules.asynchronous:Asynchronous",  # Algorithm 2 + 5 (grace period)
    "sync": "sim.schedules.synchronous:Synchronous",  # Algorithm 1 (DiLoCo)
    "single": "sim.schedules.single:SingleWorker",  # the 1-worker k x batch baseline
    "halos": "sim.schedules.hierarchical:Hierarchical",  # HALoS: a server per region under a global one
    "streaming": "sim.schedules.streaming:Streaming",  # Streaming DiLoCo: fragments synced in turn, overlapped
    "eager": "sim.schedules.overlapped:Eager",  # DiLoCo, outer step overlapped, own fresh share stands in
    "delayed": "sim.schedules.overlapped:Delayed",  # DiLoCo, outer step overlapped, the average a round late
}


def schedule_class(name: str) -> Any:
    """The :class:`~sim.schedules.base.Schedule` subclass registered as ``name``."""
    return import_object(SCHEDULES[name])
