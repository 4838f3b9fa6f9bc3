"""``identity``: ``scale * x``, a residual shortcut when ``scale = 1`` (the importer makes one for a
shortcut operand of a sum and for scaling by a constant, :mod:`..import_joins`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .base import LayerSpec


class Scale(nn.Module):
    """``scale * x`` (a residual shortcut when ``scale = 1``)."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.scale == 1.0 else x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


@dataclass(frozen=True)
class Identity(LayerSpec):
    """``scale * x``; ``scale = 1`` is a plain identity (a residual shortcut)."""

    scale: float = 1.0
    kind: ClassVar[str] = "identity"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True
    runtime = Scale

    def is_linear(self):
        return True

    def draw_label(self) -> str:
        return "id" if self.scale == 1.0 else f"{self.scale:g}·id"
