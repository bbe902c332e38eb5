"""Name -> class lookup for outer updates.

Built-ins register themselves with :func:`register`; a user's class is
named by import path (``mypkg.module:MyUpdate``) and resolved the same way,
so nothing needs forking to add a method.
"""
from __future__ import annotations

import importlib
from typing import Callable, TypeVar

T = TypeVar("T", bound=type)

OUTER_UPDATES: dict[str, type] = {}


def register(name: str) -> Callable[[T], T]:
    def wrap(cls: T) -> T:
        if name in OUTER_UPDATES:
            raise ValueError(f"outer update {name!r} registered twice")
        OUTER_UPDATES[name] = cls
        return cls

    return wrap


def import_object(path: str) -> object:
    """Import ``package.module:attribute``; raise ValueError with a clear message."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{path!r} is neither a known name nor an import path like 'pkg.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r} ({exc})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None


def resolve(name: str) -> type:
    """The outer-update class for a registered name or an import path."""
    from sim.outer.base import OuterUpdate

    if name in OUTER_UPDATES:
        return OUTER_UPDATES[name]
    if ":" not in name:
        known = ", ".join(sorted(OUTER_UPDATES))
        raise ValueError(f"unknown outer update {name!r}; known: {known}, or an import path 'pkg.module:Class'")
    cls = import_object(name)
    if not (isinstance(cls, type) and issubclass(cls, OuterUpdate)):
        raise ValueError(f"{name!r} is not a subclass of sim.outer.base.OuterUpdate")
    return cls
