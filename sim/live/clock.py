"""Simulated seconds on the real clock.

A live run at time scale S maps simulated time t to the real instant
``start + S * t``. Real instants are ``time.time()`` seconds, which every
process on one machine shares, so a worker actor can stamp when its result
left and the server can place that stamp on the simulated axis. (Across
machines the stamps are only as good as the machines' clock sync.)
"""
from __future__ import annotations

import math
import time


class RealClock:
    """Maps simulated seconds to real ones at ``scale`` real seconds per simulated second."""

    def __init__(self, scale: float):
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"the time scale must be a positive number of real seconds per simulated second, not {scale}")
        self.scale = scale
        self.start: float | None = None

    def begin(self) -> None:
        """Simulated time 0 is now."""
        self.start = time.time()

    @property
    def started(self) -> float:
        if self.start is None:
            raise RuntimeError("the live clock has not started")
        return self.start

    def real_at(self, sim_seconds: float) -> float:
        """The real instant of simulated time ``sim_seconds``."""
        return self.started + self.scale * sim_seconds

    def sim_of(self, real: float) -> float:
        """The simulated time of real instant ``real``."""
        return (real - self.started) / self.scale

    def sim_now(self) -> float:
        return self.sim_of(time.time())
