"""``pos_embed``: a learned positional embedding added to a token blob, ``(N, d) -> (N, d)``; its
tensor ``embedding`` is ``(N, d)``. Channel-wise: feature ``c`` of the output reads feature ``c``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..errors import SpecError
from .base import LayerSpec, Shape


class PositionEmbedding(nn.Module):
    """``x + embedding`` for tokens ``(B, N, d)``."""

    def __init__(self, tokens: int, features: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(tokens, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.embedding


@dataclass(frozen=True)
class PosEmbed(LayerSpec):
    tokens: int
    features: int
    kind: ClassVar[str] = "pos_embed"
    channelwise: ClassVar[bool] = True
    runtime = PositionEmbedding

    def out_shape(self, shape: Shape) -> Shape:
        if tuple(shape) != (self.tokens, self.features):
            raise SpecError(f"pos_embed expects tokens of shape ({self.tokens}, {self.features}) but the blob has "
                            f"{tuple(shape)}")
        return shape

    def param_shapes(self) -> dict[str, Shape]:
        return {"embedding": (self.tokens, self.features)}

    def init_params(self, gen, dtype=torch.float32):
        # ViT's initialisation: N(0, 0.02)
        e = torch.randn(self.tokens, self.features, generator=gen, dtype=torch.float64) * 0.02
        return {"embedding": e.to(dtype)}

    def draw_label(self) -> str:
        return "+pos"
