"""Outer (server-side) updates: one small class per method, one registry.

Importing this package registers every built-in. To add a method, write one
file with a class decorated by ``@register("name")`` and import it here.
"""
from sim.outer import (  # noqa: F401  (imported for registration)
    adam,
    async_buffer,
    delay_comp,
    delayed_nesterov,
    nesterov,
    poly,
    polythres,
    sgd,
    sgdm,
    work,
)
from sim.outer.base import OuterUpdate, PseudoGradient, StalenessFix
from sim.outer.registry import OUTER_UPDATES, register, resolve

__all__ = ["OUTER_UPDATES", "OuterUpdate", "PseudoGradient", "StalenessFix", "register", "resolve"]
