"""``pact``: the parametric activation ``(1-a)·phi + a·id`` morphs insert (``a = 1``: the identity)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..runtime import ACTIVATIONS
from .activation import check_fn
from .base import LayerSpec, need_channels


class ParametricActivation(nn.Module):
    """``(1 - a) * phi(x) + a * x``: ``a = 1`` is the identity, ``a = 0`` is ``phi``."""

    def __init__(self, fn: str, channels: int, per_channel: bool):
        super().__init__()
        self.fn = fn
        self.per_channel = per_channel
        self.a = nn.Parameter(torch.ones(channels if per_channel else 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.a.view(1, -1, *([1] * (x.dim() - 2))) if (self.per_channel and x.dim() > 2) else self.a
        return x + (1.0 - a) * (ACTIVATIONS[self.fn](x) - x)

    def extra_repr(self) -> str:
        return f"fn={self.fn}, per_channel={self.per_channel}"


@dataclass(frozen=True)
class PAct(LayerSpec):
    """Parametric activation ``(1-a)·phi + a·id``; ``a`` per channel or a scalar, 1 at insertion."""

    channels: int
    fn: str = "relu"
    per_channel: bool = True
    kind: ClassVar[str] = "pact"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True
    runtime = ParametricActivation

    def __post_init__(self):
        check_fn(self.fn)

    def out_shape(self, shape):
        if self.per_channel:
            need_channels(self.kind, shape, self.channels)
        return shape

    def param_shapes(self):
        return {"a": (self.channels if self.per_channel else 1,)}

    def init_params(self, gen, dtype=torch.float32):
        return {"a": torch.ones(self.param_shapes()["a"], dtype=dtype)}

    def draw_label(self) -> str:
        return f"p-{self.fn}"
