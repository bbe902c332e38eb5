"""A scenario's trainer name -> its class and its settings model.

Built-in trainers are named (``toy``, ``lm``, ``null``: :data:`trainers.BUILTIN_TRAINERS`),
a user's by import path (``mypkg.module:MyTrainer``). Validating a scenario
reads a built-in's settings model without importing the trainer (and torch);
a user's trainer is imported and checked against the protocol at validation,
so a broken one fails there and not minutes into a run.
"""
from __future__ import annotations

from sim.outer.registry import import_object
from trainers import BUILTIN_TRAINERS
from trainers.base import TRAINER_METHODS
from trainers import configs


def resolve_trainer_class(name: str) -> type:
    """Trainer class for a built-in name or an import path; checked against the protocol."""
    target = BUILTIN_TRAINERS.get(name, name)
    if ":" not in target:
        raise ValueError(f"unknown trainer {name!r}; expected one of {', '.join(BUILTIN_TRAINERS)} or 'pkg.module:Class'")
    cls = import_object(target)
    missing = [m for m in TRAINER_METHODS if not callable(getattr(cls, m, None))]
    if not isinstance(cls, type) or missing:
        raise ValueError(f"{name!r} does not implement the Trainer protocol (missing: {', '.join(missing) or 'a class'})")
    return cls


def trainer_config_class(name: str) -> type | None:
    """The settings model (:class:`trainers.base.TrainerClass`'s ``Config``) a trainer validates its ``config`` with.

    Built-in trainers' models come from :mod:`trainers.configs` without
    importing the trainers (and torch); a user's trainer is imported and
    checked against the protocol here, so a broken one fails at validation.
    """
    if name in BUILTIN_TRAINERS:
        return getattr(configs, configs.BUILTIN_CONFIGS[name])
    return getattr(resolve_trainer_class(name), "Config", None)
