"""Where jobs are computed. Results never depend on the executor, only speed does.

A job is a pure function of its dispatch-time inputs, so the engine submits
it at dispatch and asks for the result at its simulated completion.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol


class JobFuture(Protocol):
    def result(self) -> Any: ...


class LazyFuture:
    """Computes on first ``result()`` and then forgets its inputs.

    Deferring the work to the simulated completion keeps at most one job's
    inner-optimizer state alive at a time in a serial run.
    """

    __slots__ = ("_fn", "_args", "_value", "_done")

    def __init__(self, fn: Callable[..., Any], *args: Any):
        self._fn, self._args = fn, args
        self._value: Any = None
        self._done = False

    def result(self) -> Any:
        if not self._done:
            self._value = self._fn(*self._args)
            self._done = True
            self._fn, self._args = None, ()  # type: ignore[assignment]
        return self._value

    def cancel(self) -> None:
        """Drop a job whose result will never be needed (budget reached)."""
        if not self._done:
            self._fn, self._args = None, ()  # type: ignore[assignment]


class SerialExecutor:
    """Computes each job in this process, when its result is first needed."""

    name = "serial"

    def submit(self, fn: Callable[..., Any], *args: Any) -> LazyFuture:
        return LazyFuture(fn, *args)

    def close(self) -> None:
        pass


EXECUTORS: dict[str, Callable[[], Any]] = {"serial": SerialExecutor}


def make_executor(name: str) -> Any:
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; expected one of {', '.join(EXECUTORS)}")
    return EXECUTORS[name]()
