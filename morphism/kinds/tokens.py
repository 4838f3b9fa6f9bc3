"""``tokens``: a ``(C, H, W)`` feature map as a sequence of ``H·W`` tokens of ``C`` features.

A token blob has shape ``(N, d)``: ``N`` tokens (row-major over the map's pixels), ``d`` features
each, and its tensor is ``(batch, N, d)``. A ViT's patch embedding is a strided conv followed by
this edge. Channel-wise: feature ``c`` of every token is channel ``c`` of the map, so widening the
conv widens the tokens (the feature axis of a token blob is its last one).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .base import LayerSpec, Shape, need_chw


class PatchTokens(nn.Module):
    """``(B, C, H, W) -> (B, H·W, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


@dataclass(frozen=True)
class Tokens(LayerSpec):
    kind: ClassVar[str] = "tokens"
    channelwise: ClassVar[bool] = True      # feature c of each token is channel c of the map
    runtime = PatchTokens

    def out_shape(self, shape: Shape) -> Shape:
        need_chw(self.kind, shape)
        c, h, w = shape
        return (h * w, c)

    def is_linear(self) -> bool:
        return True

    def draw_label(self) -> str:
        return "tokens"
