"""``conv2d``: a 2-d convolution with a square kernel, computed by ``nn.Conv2d``."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..errors import SpecError
from ..import_rules import Convert, Unsupported, square, tensors
from .base import LayerSpec, Shape, conv_size, need_channels, need_chw


def _from_module(mod: nn.Conv2d, shape: Shape | None) -> Convert | Unsupported:
    """Zero padding and square sizes only; ``padding='same'`` when it pads both sides alike."""
    tname = type(mod).__name__
    if mod.padding_mode != "zeros":
        return Unsupported(f"Conv2d with padding_mode={mod.padding_mode!r}")
    k = square(mod.kernel_size, "kernel", tname)
    d = square(mod.dilation, "dilation", tname)
    s = square(mod.stride, "stride", tname)
    if mod.padding == "valid":
        pad = 0
    elif mod.padding == "same":
        if (d * (k - 1)) % 2:
            return Unsupported("Conv2d padding='same' with an even kernel (asymmetric padding)")
        pad = d * (k - 1) // 2
    else:
        pad = square(mod.padding, "padding", tname)
    spec = Conv2d(mod.in_channels, mod.out_channels, k, s, pad, mod.groups, mod.bias is not None, d)
    return Convert([spec], [tensors(mod)])


@dataclass(frozen=True)
class Conv2d(LayerSpec):
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    bias: bool = False
    dilation: int = 1
    kind: ClassVar[str] = "conv2d"
    runtime = nn.Conv2d
    import_modules = {nn.Conv2d: _from_module}

    def __post_init__(self) -> None:
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise SpecError(
                f"conv2d channels must be divisible by groups, got in={self.in_channels}, "
                f"out={self.out_channels}, groups={self.groups}")
        if min(self.kernel_size, self.stride, self.groups, self.dilation, self.in_channels, self.out_channels) < 1 or self.padding < 0:
            raise SpecError(f"conv2d sizes must be positive (padding >= 0), got {self}")

    def out_shape(self, shape: Shape) -> Shape:
        need_chw(self.kind, shape)
        need_channels(self.kind, shape, self.in_channels)
        h = conv_size(shape[1], self.kernel_size, self.stride, self.padding, self.dilation)
        w = conv_size(shape[2], self.kernel_size, self.stride, self.padding, self.dilation)
        if h < 1 or w < 1:
            raise SpecError(f"conv2d with kernel {self.kernel_size} does not fit a {shape[1]}x{shape[2]} input")
        return (self.out_channels, h, w)

    def param_shapes(self) -> dict[str, Shape]:
        k = self.kernel_size
        p: dict[str, Shape] = {"weight": (self.out_channels, self.in_channels // self.groups, k, k)}
        if self.bias:
            p["bias"] = (self.out_channels,)
        return p

    def init_params(self, gen, dtype=torch.float32):
        shape = self.param_shapes()["weight"]
        fan_out = shape[0] * shape[2] * shape[3]
        w = torch.randn(shape, generator=gen, dtype=torch.float64) * math.sqrt(2.0 / fan_out)
        p = {"weight": w.to(dtype)}
        if self.bias:
            p["bias"] = torch.zeros(self.out_channels, dtype=dtype)
        return p

    def is_linear(self) -> bool:
        return True

    def draw_label(self) -> str:
        s = f"conv{self.kernel_size}x{self.kernel_size}"
        s += f"/{self.stride}" if self.stride > 1 else ""
        s += (" dw" if self.depthwise else f" g{self.groups}") if self.groups > 1 else ""
        return s + (f" {self.out_channels}" if self.out_channels != self.in_channels else "")

    @property
    def depthwise(self) -> bool:
        """One filter per channel (``groups == in_channels == out_channels``), as in MobileNets."""
        return self.groups == self.in_channels == self.out_channels and self.groups > 1
