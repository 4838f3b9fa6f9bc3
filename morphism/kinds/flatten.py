"""``flatten``: a feature map as one vector per sample (``nn.Flatten()``, from dim 1 to the end)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from ..import_rules import Convert, Unsupported, fn_name
from .base import LayerSpec, Shape


def _flatten(start: int, end: int, in_shape: Shape | None, what: str) -> Convert | Unsupported:
    if start == 1 and end == -1:
        return Convert([Flatten()], [{}])
    if in_shape is not None and start == 1 and end in (len(in_shape), -1):
        return Convert([Flatten()], [{}])
    return Unsupported(f"{what}(start_dim={start}, end_dim={end}) (only flatten from dim 1 to the end)")


def _from_module(mod: nn.Flatten, shape: Shape | None) -> Convert | Unsupported:
    return _flatten(mod.start_dim, mod.end_dim, shape, "nn.Flatten")


def _from_function(target: Any, args: tuple, kwargs: dict, shape: Shape | None) -> Convert | Unsupported:
    """``torch.flatten(x, ...)`` / ``x.flatten(...)``."""
    start = args[0] if args else kwargs.get("start_dim", 0)
    end = args[1] if len(args) > 1 else kwargs.get("end_dim", -1)
    return _flatten(start, end, shape, fn_name(target))


def flatten_view(dims: list[Any], in_shape: Shape | None, is_batch: Callable[[Any], bool]) -> Convert | Unsupported:
    """``x.view(x.size(0), -1)``, ``x.reshape(b, n)`` or ``x.view(-1, n)``: a flatten from dim 1
    (the importer's ``view``/``reshape`` handler asks this when the view is not a channel grouping)."""
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = list(dims[0])
    if len(dims) == 2 and (is_batch(dims[0]) or dims[0] == -1):
        n = dims[1]
        if n == -1 and is_batch(dims[0]):
            return Convert([Flatten()], [{}])
        if isinstance(n, int) and in_shape is not None and n == math.prod(in_shape):
            return Convert([Flatten()], [{}])
    return Unsupported(f"view/reshape to {dims!r} (only flattening to (batch, -1) is supported)")


@dataclass(frozen=True)
class Flatten(LayerSpec):
    kind: ClassVar[str] = "flatten"
    channelwise: ClassVar[bool] = True      # feature c*H*W + r is channel c at pixel r
    runtime = nn.Flatten
    import_modules = {nn.Flatten: _from_module}
    import_functions = {torch.flatten: _from_function, "flatten": _from_function}

    def out_shape(self, shape):
        return (math.prod(shape),)

    def is_linear(self):
        return True

    def draw_label(self) -> str:
        return "flatten"
