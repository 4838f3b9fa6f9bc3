"""``channel_slice``: channels ``[start, stop)`` of a feature map, one part of a ``chunk``/``split``
(the importer makes them from those calls, :mod:`..import_layout`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..errors import SpecError
from .base import LayerSpec, Shape, need_chw


class ChannelSliceModule(nn.Module):
    """Channels ``[start, stop)`` of a feature map (a chunk/split part)."""

    def __init__(self, start: int, stop: int):
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start:self.stop]

    def extra_repr(self) -> str:
        return f"{self.start}:{self.stop}"


@dataclass(frozen=True)
class ChannelSlice(LayerSpec):
    """Channels ``[start, stop)`` of a feature map: one part of ``chunk``/``split``."""

    start: int
    stop: int
    kind: ClassVar[str] = "channel_slice"
    runtime = ChannelSliceModule

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.stop:
            raise SpecError(f"channel_slice needs 0 <= start < stop, got start={self.start}, stop={self.stop}")

    def out_shape(self, shape: Shape) -> Shape:
        need_chw(self.kind, shape)
        if self.stop > shape[0]:
            raise SpecError(f"channel_slice {self.start}:{self.stop} exceeds the blob's {shape[0]} channels")
        return (self.stop - self.start, *shape[1:])

    def is_linear(self) -> bool:
        return True

    def draw_label(self) -> str:
        return f"ch[{self.start}:{self.stop}]"
