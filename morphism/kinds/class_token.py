"""``class_token``: prepend one learned token to a token blob, ``(N, d) -> (N + 1, d)``; its tensor
``token`` is ``(d,)``. Channel-wise: feature ``c`` of every output token reads feature ``c``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..errors import SpecError
from .base import LayerSpec, Shape
from .layer_norm import check_tokens


class ClassTokenModule(nn.Module):
    """``cat([token, x], dim=1)`` for tokens ``(B, N, d)``."""

    def __init__(self, features: int):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.token.to(x.dtype).view(1, 1, -1).expand(x.shape[0], 1, -1)
        return torch.cat([t, x], dim=1)


@dataclass(frozen=True)
class ClassToken(LayerSpec):
    features: int
    kind: ClassVar[str] = "class_token"
    channelwise: ClassVar[bool] = True
    runtime = ClassTokenModule

    def out_shape(self, shape: Shape) -> Shape:
        if len(shape) != 2:
            raise SpecError(f"class_token needs a token blob (N, d) but got shape {tuple(shape)}")
        check_tokens(self.kind, shape, self.features)
        return (shape[0] + 1, shape[1])

    def param_shapes(self) -> dict[str, Shape]:
        return {"token": (self.features,)}

    def init_params(self, gen, dtype=torch.float32):
        return {"token": torch.zeros(self.features, dtype=dtype)}

    def draw_label(self) -> str:
        return "+cls"
