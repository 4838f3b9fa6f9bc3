"""``token_pool``: a token blob ``(N, d)`` to one vector ``(d,)``: the first token (a class token,
``mode="first"``) or the mean over the tokens (``mode="mean"``). Channel-wise."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..errors import SpecError
from .base import LayerSpec, Shape


class TokenPoolModule(nn.Module):
    def __init__(self, mode: str = "first"):
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "first":
            return x[:, 0]
        return x.mean(dim=1)

    def extra_repr(self) -> str:
        return self.mode


@dataclass(frozen=True)
class TokenPool(LayerSpec):
    mode: str = "first"
    kind: ClassVar[str] = "token_pool"
    channelwise: ClassVar[bool] = True
    runtime = TokenPoolModule

    def __post_init__(self):
        if self.mode not in ("first", "mean"):
            raise SpecError(f"token_pool: mode must be 'first' (the class token) or 'mean', got {self.mode!r}")

    def out_shape(self, shape: Shape) -> Shape:
        if len(shape) != 2:
            raise SpecError(f"token_pool needs a token blob (N, d) but got shape {tuple(shape)}")
        return (shape[1],)

    def is_linear(self) -> bool:
        return True

    def draw_label(self) -> str:
        return "cls" if self.mode == "first" else "mean"
