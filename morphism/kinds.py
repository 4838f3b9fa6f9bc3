"""Every layer kind, by name: the one place that knows which modules define kinds.

Layer kinds register themselves when their class is defined (:class:`.layers.LayerSpec`'s
``__init_subclass__``). This module imports each module that defines kinds, so code that resolves
a kind by name (JSON loading, lint) sees all of them, whatever the caller imported before. A new
module of kinds is added to the import list below.
"""
from __future__ import annotations

from . import layers, layers_extra  # noqa: F401  (importing them registers their kinds)
from .layers import LayerSpec


def layer_kinds() -> dict[str, type[LayerSpec]]:
    """Every registered layer kind by name (a copy: register by subclassing :class:`.layers.LayerSpec`)."""
    return layers.registered_kinds()
