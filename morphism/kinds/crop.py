"""``crop``: drop ``amount`` pixels on every side; aligns paths of different radius in a pad-once module."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..errors import SpecError
from .base import LayerSpec, need_chw


class CropModule(nn.Module):
    """Drop ``amount`` pixels on every side."""

    def __init__(self, amount: int):
        super().__init__()
        self.amount = amount

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.amount
        return x[:, :, a:x.shape[2] - a, a:x.shape[3] - a] if a else x

    def extra_repr(self) -> str:
        return str(self.amount)


@dataclass(frozen=True)
class Crop(LayerSpec):
    """Drop ``amount`` pixels on every side: aligns paths of different radius in a pad-once module."""

    amount: int
    kind: ClassVar[str] = "crop"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True
    runtime = CropModule

    def out_shape(self, shape):
        need_chw(self.kind, shape)
        h, w = shape[1] - 2 * self.amount, shape[2] - 2 * self.amount
        if h < 1 or w < 1:
            raise SpecError(f"crop by {self.amount} does not fit a {shape[1]}x{shape[2]} input")
        return (shape[0], h, w)

    def is_linear(self):
        return True

    def draw_label(self) -> str:
        return f"crop{self.amount}"
