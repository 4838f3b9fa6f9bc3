"""``adaptive_avgpool2d`` and ``adaptive_maxpool2d``: pooling to a fixed ``height x width``.

One file for the two kinds and their import rules; ``nn.AdaptiveAvgPool2d(1)`` imports as a
``global_avg_pool``, and to the input's own size as no layer at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import nn

from ..errors import SpecError
from ..import_rules import Convert, Unsupported
from .base import LayerSpec, Shape, need_chw
from .global_avg_pool import GlobalAvgPool


def adaptive_avgpool2d_module(height: int, width: int) -> nn.Module:
    return nn.AdaptiveAvgPool2d((height, width))


def adaptive_maxpool2d_module(height: int, width: int) -> nn.Module:
    return nn.AdaptiveMaxPool2d((height, width))


def _adaptive(output_size: Any, in_shape: Shape | None, cls: type, what: str) -> Convert | Unsupported:
    """Adaptive pooling to ``output_size`` (an int or (h, w); ``None`` keeps that input size)."""
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size or ())
    if len(size) != 2:
        return Unsupported(what)
    if None in size:
        if in_shape is None or len(in_shape) != 3:
            return Unsupported(f"{what} with a None size on an input of unknown shape")
        size = tuple(in_shape[1 + i] if s is None else s for i, s in enumerate(size))
    return Convert([cls(int(size[0]), int(size[1]))], [{}])


def _average(output_size: Any, in_shape: Shape | None, what: str) -> Convert | Unsupported:
    if output_size in (1, (1, 1), [1, 1]):
        return Convert([GlobalAvgPool()], [{}])
    if in_shape is not None and len(in_shape) == 3 and output_size in (tuple(in_shape[1:]), list(in_shape[1:])):
        return Convert()  # already the requested size: the pool is the identity
    return _adaptive(output_size, in_shape, AdaptiveAvgPool2d, what)


def _avg_module(mod: nn.AdaptiveAvgPool2d, shape: Shape | None) -> Convert | Unsupported:
    return _average(mod.output_size, shape, f"AdaptiveAvgPool2d(output_size={mod.output_size})")


def _max_module(mod: nn.AdaptiveMaxPool2d, shape: Shape | None) -> Convert | Unsupported:
    if mod.return_indices:
        return Unsupported("AdaptiveMaxPool2d with return_indices")
    return _adaptive(mod.output_size, shape, AdaptiveMaxPool2d, f"AdaptiveMaxPool2d({mod.output_size})")


def _avg_function(target: Any, args: tuple, kwargs: dict, shape: Shape | None) -> Convert | Unsupported:
    size = args[0] if args else kwargs.get("output_size")
    return _average(size, shape, f"F.adaptive_avg_pool2d(output_size={size})")


def _max_function(target: Any, args: tuple, kwargs: dict, shape: Shape | None) -> Convert | Unsupported | None:
    if kwargs.get("return_indices") or len(args) >= 2:
        return None
    size = args[0] if args else kwargs.get("output_size")
    return _adaptive(size, shape, AdaptiveMaxPool2d, f"F.adaptive_max_pool2d(output_size={size})")


@dataclass(frozen=True)
class _AdaptivePool2d(LayerSpec):
    height: int
    width: int

    def __post_init__(self) -> None:
        if min(self.height, self.width) < 1:
            raise SpecError(f"{self.kind} output size must be positive, got {self.height}x{self.width}")

    def out_shape(self, shape: Shape) -> Shape:
        need_chw(self.kind, shape)
        return (shape[0], self.height, self.width)


@dataclass(frozen=True)
class AdaptiveAvgPool2d(_AdaptivePool2d):
    """Average pooling to a fixed ``height x width`` (GlobalAvgPool stays the 1x1 case)."""

    kind: ClassVar[str] = "adaptive_avgpool2d"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True
    runtime = adaptive_avgpool2d_module
    import_modules = {nn.AdaptiveAvgPool2d: _avg_module}
    import_functions = {F.adaptive_avg_pool2d: _avg_function}

    def is_linear(self) -> bool:
        return True

    def draw_label(self) -> str:
        return f"avgpool→{self.height}x{self.width}"


@dataclass(frozen=True)
class AdaptiveMaxPool2d(_AdaptivePool2d):
    """Max pooling to a fixed ``height x width``."""

    kind: ClassVar[str] = "adaptive_maxpool2d"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True
    runtime = adaptive_maxpool2d_module
    import_modules = {nn.AdaptiveMaxPool2d: _max_module}
    import_functions = {F.adaptive_max_pool2d: _max_function}

    def draw_label(self) -> str:
        return f"maxpool→{self.height}x{self.width}"
