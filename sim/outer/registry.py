"""Name -> class lookup for outer updates (and the import-path lookup schedules and trainers share).

Built-ins register themselves with :func:`register`; a user's class is
named by import path (``mypkg.module:MyUpdate``) and resolved the same way,
so nothing needs forking to add a method.
"""
from __future__ import annotations

import hashlib
import importlib
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

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


def outer_arguments(spec: dict[str, Any], k: int) -> dict[str, Any]:
    """An outer update's constructor arguments from its scenario spec, ``"k"`` read as the number of workers.

    Presets write ``N: k`` (Algorithm 3's N, the async buffer's size): one
    value that follows the fleet instead of a number to keep in step with it.
    """
    return {key: (k if value == "k" else value) for key, value in spec.items() if key != "name"}


def construct(spec: dict[str, Any], k: int, base: Any = None) -> Any:
    """The outer update (or, with ``base``, the staleness fix wrapping it) that ``spec`` names."""
    cls = resolve(str(spec["name"]))
    return cls(**outer_arguments(spec, k)) if base is None else cls(base, **outer_arguments(spec, k))


def build_outer(outer: dict[str, Any] | None, fix: dict[str, Any] | None, k: int) -> Any:
    """A method's outer update, wrapped in its staleness fix if it has one (None: the 1-worker baseline)."""
    if outer is None:
        return None
    update = construct(outer, k)
    return update if fix is None else construct(fix, k, base=update)


def source_digest(path: str) -> str:
    """sha256 of the source code behind an import path ``pkg.module:Class``.

    Covers every ``.py`` file of the top-level package (a model's code is
    rarely in one module), or the single module file. It goes into a run's
    identity, so editing your own trainer or outer update makes a new run
    instead of serving the old result.
    """
    module_name = path.partition(":")[0]
    import_object(path)  # imported (and checked) already when a scenario names it
    top = sys.modules[module_name.split(".")[0]]
    if getattr(top, "__path__", None):  # a package: all its Python files
        files = sorted(f for folder in top.__path__ for f in Path(folder).rglob("*.py"))
        root = Path(next(iter(top.__path__)))
    else:
        files = [Path(top.__file__)] if getattr(top, "__file__", None) else []
        root = files[0].parent if files else Path(".")
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root) if f.is_relative_to(root) else f.name).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()
