"""Simulated time: exact integer ticks decide order and ties; float seconds are what the records show.

Rounds that end together mathematically must end together here. DyLU (Eq. 6)
sizes rounds so that devices finish at the same time, and Algorithm 5 syncs
every arrival within the grace period of the first. In floats they often do
not: 3 x 7 x 2.824 s and a sum of other rounds that equals it exactly end
5e-13 s apart, so with a zero grace period one worker is synced alone and the
other gets a newer model. A :class:`Time` therefore carries two numbers:

- ``ticks``, an integer count of picoseconds. Each quantity a scenario gives
  (a step time, a transfer, a grace period, an availability instant) becomes
  ticks once, rounded to the nearest picosecond; everything built from them
  (sums, multiples, maxima) is integer arithmetic, hence exact. A decimal
  with up to 12 places is represented exactly, so products and sums of the
  scenario's decimal values that are equal compare equal. Order, equality
  and hashing use ticks alone.
- ``seconds``, the same time as a float, computed with the same float
  operations as before time was exact. Events and metrics record seconds,
  so a run in which no exact tie occurs keeps its bytes and its run hash.

When the clock reaches a time equal in ticks to the current one it does not
move (:func:`later`), so events at one exact instant record the same seconds.
"""
from __future__ import annotations

from fractions import Fraction

#: resolution of exact time: one tick is a picosecond
TICKS_PER_SECOND = 10**12


class Time:
    """A simulated instant or duration: exact ``ticks`` for comparisons, float ``seconds`` for the records."""

    __slots__ = ("ticks", "seconds")

    def __init__(self, ticks: int, seconds: float):
        self.ticks = ticks
        self.seconds = seconds

    @classmethod
    def of(cls, seconds: float) -> Time:
        """A quantity the scenario gives in seconds, rounded once to the nearest tick."""
        return cls(round(Fraction(seconds) * TICKS_PER_SECOND), seconds)

    def __add__(self, other: Time) -> Time:
        return Time(self.ticks + other.ticks, self.seconds + other.seconds)

    def __mul__(self, n: int) -> Time:
        """``n`` back-to-back copies (``n`` local steps of one step time)."""
        return Time(self.ticks * n, self.seconds * n)

    def scaled(self, factor: float) -> Time:
        """Stretched by a float factor (a round's jitter): the only operation that rounds ticks again."""
        return Time(round(self.ticks * factor), self.seconds * factor)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Time) and self.ticks == other.ticks

    def __hash__(self) -> int:
        return hash(self.ticks)

    def __lt__(self, other: Time) -> bool:
        return self.ticks < other.ticks

    def __le__(self, other: Time) -> bool:
        return self.ticks <= other.ticks

    def __gt__(self, other: Time) -> bool:
        return self.ticks > other.ticks

    def __ge__(self, other: Time) -> bool:
        return self.ticks >= other.ticks

    def __repr__(self) -> str:
        return f"Time({self.seconds!r} s)"

    def plain(self) -> list[int | float]:
        """Plain data for a checkpoint (loads with ``torch.load(weights_only=True)``)."""
        return [self.ticks, self.seconds]

    @classmethod
    def from_plain(cls, value: list[int | float]) -> Time:
        ticks, seconds = value
        return cls(int(ticks), float(seconds))


ZERO = Time(0, 0.0)


def later(now: Time, t: Time) -> Time:
    """The clock moved from ``now`` to ``t``; at the same exact instant it keeps ``now`` (and its seconds)."""
    return now if t == now else t
