"""``pad``: zero padding by ``amount`` on every side, the entry of a "pad once" chain of unpadded convs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .base import LayerSpec, need_chw


class PadModule(nn.Module):
    """Zero padding by ``amount`` on every side."""

    def __init__(self, amount: int):
        super().__init__()
        self.amount = amount

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (self.amount,) * 4)

    def extra_repr(self) -> str:
        return str(self.amount)


@dataclass(frozen=True)
class Pad(LayerSpec):
    """Zero padding by ``amount`` on every side: the entry of a "pad once" chain of unpadded convs."""

    amount: int
    kind: ClassVar[str] = "pad"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True
    runtime = PadModule

    def out_shape(self, shape):
        need_chw(self.kind, shape)
        return (shape[0], shape[1] + 2 * self.amount, shape[2] + 2 * self.amount)

    def is_linear(self):
        return True

    def draw_label(self) -> str:
        return f"pad{self.amount}"
