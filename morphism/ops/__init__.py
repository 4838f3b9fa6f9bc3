"""Morph operations, one module each; ``default_registry()`` holds them all.

Each op module defines ``OP``, an instance of a :class:`~.base.MorphOp` subclass.
"""
from __future__ import annotations

import importlib

from .base import MorphOp, MorphRecord, OpRegistry, apply_op, replay, zero_fraction

# Module names in the order ops are listed to users.
OP_MODULES = (
    "deepen", "insert_layer", "split", "widen", "enlarge_kernel", "activation", "insert_bn",
    "split_identity", "insert_path", "morph_block", "module",
)

_DEFAULT: OpRegistry | None = None


def default_registry() -> OpRegistry:
    """The registry of every op shipped with morphnas (built once, on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        reg = OpRegistry()
        for name in OP_MODULES:
            try:
                mod = importlib.import_module(f"{__name__}.{name}")
            except ModuleNotFoundError as e:
                if e.name == f"{__name__}.{name}":
                    continue  # not written yet
                raise
            reg.register(mod.OP)
        _DEFAULT = reg
    return _DEFAULT


__all__ = ["MorphOp", "MorphRecord", "OpRegistry", "apply_op", "replay", "zero_fraction", "default_registry"]
