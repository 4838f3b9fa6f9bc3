"""``channel_shuffle``: ShuffleNet's fixed channel permutation (the importer recognises its
view-transpose-view pattern, :mod:`..import_layout`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..errors import SpecError
from .base import LayerSpec, Shape, need_chw


class ChannelShuffleModule(nn.Module):
    """ShuffleNet's fixed channel permutation: view as (groups, C/groups), transpose, flatten."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.view(b, self.groups, c // self.groups, h, w)
        return torch.transpose(x, 1, 2).contiguous().view(b, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


@dataclass(frozen=True)
class ChannelShuffle(LayerSpec):
    """ShuffleNet's fixed channel permutation: channel ``g*(C/groups) + i`` moves to ``i*groups + g``."""

    groups: int
    kind: ClassVar[str] = "channel_shuffle"
    runtime = ChannelShuffleModule

    def __post_init__(self) -> None:
        if self.groups < 1:
            raise SpecError(f"channel_shuffle groups must be >= 1, got {self.groups}")

    def out_shape(self, shape: Shape) -> Shape:
        need_chw(self.kind, shape)
        if shape[0] % self.groups:
            raise SpecError(f"channel_shuffle with groups={self.groups} needs channels divisible by it, got {shape[0]}")
        return shape

    def permutation(self, channels: int) -> list[int]:
        """``out[j] = in[perm[j]]``."""
        per = channels // self.groups
        return [g * per + i for i in range(per) for g in range(self.groups)]

    def is_linear(self) -> bool:
        return True

    def draw_label(self) -> str:
        return f"shuffle{self.groups}"
