"""``global_avg_pool``: the average over H and W, keeping ``(C, 1, 1)`` like ``AdaptiveAvgPool2d(1)``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..import_rules import Convert, Unsupported, fn_name
from .base import LayerSpec, Shape, need_chw
from .flatten import Flatten


def global_avg_pool_module() -> nn.Module:
    return nn.AdaptiveAvgPool2d(1)


def _from_mean(target: Any, args: tuple, kwargs: dict, shape: Shape | None) -> Convert | Unsupported:
    """``x.mean((2, 3))`` / ``torch.mean(x, (2, 3), keepdim)``: the pool, then a flatten unless kept."""
    dims = args[0] if args else kwargs.get("dim")
    keep = args[1] if len(args) > 1 else kwargs.get("keepdim", False)
    if shape is not None and len(shape) == 3 and isinstance(dims, (tuple, list)) and sorted(d % 4 for d in dims) == [2, 3]:
        return Convert([GlobalAvgPool()] + ([] if keep else [Flatten()]), [{}] * (1 if keep else 2))
    return Unsupported(f"{fn_name(target)}(dim={dims!r}) (only the spatial mean over dims (2, 3))")


@dataclass(frozen=True)
class GlobalAvgPool(LayerSpec):
    """Average over H and W, keeping ``(C, 1, 1)`` like ``AdaptiveAvgPool2d(1)``."""

    kind: ClassVar[str] = "global_avg_pool"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True
    runtime = global_avg_pool_module
    import_functions = {torch.mean: _from_mean, "mean": _from_mean}

    def out_shape(self, shape):
        need_chw(self.kind, shape)
        return (shape[0], 1, 1)

    def is_linear(self):
        return True

    def draw_label(self) -> str:
        return "avgpool"
