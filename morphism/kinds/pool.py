"""``maxpool2d`` and ``avgpool2d``: square-window pooling, computed by ``nn.MaxPool2d`` / ``nn.AvgPool2d``.

One file for the two kinds: they share the window fields, PyTorch's output-size rule and the
import rules of the modules and of ``F.max_pool2d`` / ``F.avg_pool2d``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import nn

from ..errors import SpecError
from ..import_rules import Convert, Unsupported, fn_name, square
from .base import LayerSpec, Shape, conv_size, need_chw


def _pool_size(size: int, k: int, stride: int, pad: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size, including its ``ceil_mode`` rule (a window must start inside
    the input or its left padding)."""
    if not ceil_mode:
        return conv_size(size, k, stride, pad)
    out = -(-(size + 2 * pad - k) // stride) + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _from_module(mod: nn.Module, shape: Shape | None) -> Convert | Unsupported:
    tname = type(mod).__name__
    k = square(mod.kernel_size, "kernel", tname)
    s = square(mod.stride, "stride", tname) if mod.stride is not None else k
    pad = square(mod.padding, "padding", tname)
    if isinstance(mod, nn.MaxPool2d):
        if square(mod.dilation, "dilation", tname) != 1 or mod.return_indices:
            return Unsupported("MaxPool2d with dilation or return_indices")
        return Convert([MaxPool2d(k, s, pad, ceil_mode=bool(mod.ceil_mode))], [{}])
    if mod.divisor_override is not None:
        return Unsupported("AvgPool2d with divisor_override")
    return Convert([AvgPool2d(k, s, pad, bool(mod.count_include_pad), ceil_mode=bool(mod.ceil_mode))], [{}])


def _from_function(target: Any, args: tuple, kwargs: dict, shape: Shape | None) -> Convert | Unsupported:
    """``F.max_pool2d`` / ``F.avg_pool2d`` (``args``: the arguments after the input)."""
    names = ("kernel_size", "stride", "padding")
    opts = dict(zip(names, args))
    opts.update(kwargs)
    what = fn_name(target)
    k = square(opts.get("kernel_size"), "kernel", what)
    stride = opts.get("stride")
    s = square(stride, "stride", what) if stride not in (None, [], ()) else k
    pad = square(opts.get("padding", 0), "padding", what)
    ceil = bool(opts.get("ceil_mode", False))
    if target is F.max_pool2d:
        if opts.get("return_indices") or opts.get("dilation", 1) not in (1, (1, 1)):
            return Unsupported(f"{what} with dilation or return_indices")
        if len(args) > 3:
            return Unsupported(f"{what} with extra positional arguments")
        return Convert([MaxPool2d(k, s, pad, ceil_mode=ceil)], [{}])
    if opts.get("divisor_override") is not None or len(args) > 3:
        return Unsupported(f"{what} with divisor_override or extra positional arguments")
    return Convert([AvgPool2d(k, s, pad, bool(opts.get("count_include_pad", True)), ceil_mode=ceil)], [{}])


@dataclass(frozen=True)
class _Pool2d(LayerSpec):
    kernel_size: int
    stride: int | None = None
    padding: int = 0

    def out_shape(self, shape):
        need_chw(self.kind, shape)
        s = self.stride or self.kernel_size
        ceil = bool(getattr(self, "ceil_mode", False))
        h, w = (_pool_size(x, self.kernel_size, s, self.padding, ceil) for x in shape[1:])
        if h < 1 or w < 1:
            raise SpecError(f"{self.kind} {self.kernel_size} does not fit a {shape[1]}x{shape[2]} input")
        return (shape[0], h, w)


@dataclass(frozen=True)
class MaxPool2d(_Pool2d):
    ceil_mode: bool = False
    kind: ClassVar[str] = "maxpool2d"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True
    runtime = nn.MaxPool2d
    import_modules = {nn.MaxPool2d: _from_module}
    import_functions = {F.max_pool2d: _from_function}

    def draw_label(self) -> str:
        return f"maxpool{self.kernel_size}"


@dataclass(frozen=True)
class AvgPool2d(_Pool2d):
    count_include_pad: bool = True
    ceil_mode: bool = False
    kind: ClassVar[str] = "avgpool2d"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True
    runtime = nn.AvgPool2d
    import_modules = {nn.AvgPool2d: _from_module}
    import_functions = {F.avg_pool2d: _from_function}

    def is_linear(self):
        return True

    def draw_label(self) -> str:
        return f"avgpool{self.kernel_size}"
