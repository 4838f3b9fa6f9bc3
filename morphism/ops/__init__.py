"""Morph operations, one module each; ``default_registry()`` discovers and holds them all.

Each public op module registers its op by decorating its class with ``@register_op``; see :mod:`.base`.
A user's own op, outside this package, is loaded by its import path with :func:`load_op`
(``"package.module:ClassName"``) and checked before a search with :func:`check_conformance`.
"""
from __future__ import annotations

from ._conformance import ConformanceError, check_conformance
from ._user import OpLoadError, load_op, load_ops
from .base import (
                   MorphOp,
                   MorphRecord,
                   OpRegistrationError,
                   OpRegistry,
                   apply_op,
                   default_registry,
                   register_op,
                   registered,
                   replay,
                   zero_fraction,
)

__all__ = ["ConformanceError", "MorphOp", "MorphRecord", "OpLoadError", "OpRegistrationError", "OpRegistry",
           "apply_op", "check_conformance", "default_registry", "load_op", "load_ops", "register_op",
           "registered", "replay", "zero_fraction"]
