"""``channel_layernorm``: LayerNorm over the channels at each pixel (ConvNeXt's ``LayerNorm2d``; the
importer recognises it on channels-last views, :mod:`..import_layout`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .base import LayerSpec, Shape, need_channels, need_chw


class ChannelLayerNormModule(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of an NCHW map (ConvNeXt's LayerNorm2d), computed
    as torchvision does (permute to channels-last, normalise, permute back) so outputs match."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


@dataclass(frozen=True)
class ChannelLayerNorm(LayerSpec):
    """LayerNorm over the channels at each pixel (ConvNeXt's ``LayerNorm2d``); weight and bias (C,).
    Not channel-wise: every channel's output depends on all channels' statistics."""

    channels: int
    eps: float = 1e-6
    kind: ClassVar[str] = "channel_layernorm"
    keeps_channels: ClassVar[bool] = True
    runtime = ChannelLayerNormModule

    def out_shape(self, shape: Shape) -> Shape:
        need_chw(self.kind, shape)
        need_channels(self.kind, shape, self.channels)
        return shape

    def param_shapes(self) -> dict[str, Shape]:
        return {"weight": (self.channels,), "bias": (self.channels,)}

    def init_params(self, gen, dtype=torch.float32):
        return {"weight": torch.ones(self.channels, dtype=dtype), "bias": torch.zeros(self.channels, dtype=dtype)}

    def draw_label(self) -> str:
        return "ln"
