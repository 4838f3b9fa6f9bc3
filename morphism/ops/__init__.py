"""Morph operations, one module each; ``default_registry()`` discovers and holds them all.

Each public op module registers its op by decorating its class with ``@register_op``; see :mod:`.base`.
"""
from __future__ import annotations

from .base import (MorphOp, MorphRecord, OpRegistrationError, OpRegistry, apply_op, default_registry, register_op,
                   registered, replay, zero_fraction)

__all__ = ["MorphOp", "MorphRecord", "OpRegistrationError", "OpRegistry", "apply_op", "default_registry",
           "register_op", "registered", "replay", "zero_fraction"]
