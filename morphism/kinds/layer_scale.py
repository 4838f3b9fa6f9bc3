"""``layer_scale``: ``weight * x`` with a learnable per-channel weight of shape (C, 1, 1) (ConvNeXt;
the importer makes one from a product with such a parameter, :mod:`..import_joins`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .base import LayerSpec, Shape, need_channels


class LayerScaleModule(nn.Module):
    """``weight * x`` with a learnable per-channel ``weight`` of shape (C, 1, 1) (ConvNeXt)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x


@dataclass(frozen=True)
class LayerScale(LayerSpec):
    """``weight * x`` with a learnable per-channel ``weight`` of shape (C, 1, 1) (ConvNeXt)."""

    channels: int
    kind: ClassVar[str] = "layer_scale"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True
    runtime = LayerScaleModule

    def out_shape(self, shape: Shape) -> Shape:
        need_channels(self.kind, shape, self.channels)
        return shape

    def param_shapes(self) -> dict[str, Shape]:
        return {"weight": (self.channels, 1, 1)}

    def init_params(self, gen, dtype=torch.float32):
        return {"weight": torch.ones(self.channels, 1, 1, dtype=dtype)}

    def is_linear(self) -> bool:
        return True

    def draw_label(self) -> str:
        return "scale"
