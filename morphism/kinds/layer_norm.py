"""``layer_norm``: LayerNorm over the features of each token (or of a flat vector), with an affine
weight and bias of ``(features,)``. Not channel-wise: each output reads every feature's mean and
variance. Widening duplicates every feature the same number of times, which keeps both statistics
(``widen`` refuses other factors on a group holding one)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..errors import SpecError
from .base import LayerSpec, Shape


class FeatureLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last axis, built from the kind's fields."""

    def __init__(self, features: int, eps: float = 1e-6):
        super().__init__(features, eps=eps)


def check_tokens(kind: str, shape: Shape, features: int) -> None:
    """Refuse anything but a token blob ``(N, features)`` or a vector ``(features,)``."""
    if len(shape) not in (1, 2):
        raise SpecError(f"{kind} needs token features (N, d) or a vector (d,) but got shape {tuple(shape)}; "
                        "turn a feature map into tokens first")
    if shape[-1] != features:
        raise SpecError(f"{kind} expects {features} features but the blob has {shape[-1]}")


@dataclass(frozen=True)
class LayerNorm(LayerSpec):
    features: int
    eps: float = 1e-6
    kind: ClassVar[str] = "layer_norm"
    runtime = FeatureLayerNorm

    def __post_init__(self):
        if not (isinstance(self.features, int) and self.features >= 1):
            raise SpecError(f"layer_norm: features must be a positive integer, got {self.features!r}")
        if not self.eps > 0:
            raise SpecError(f"layer_norm: eps must be > 0, got {self.eps!r}")

    def out_shape(self, shape: Shape) -> Shape:
        check_tokens(self.kind, shape, self.features)
        return shape

    def param_shapes(self) -> dict[str, Shape]:
        return {"weight": (self.features,), "bias": (self.features,)}

    def init_params(self, gen, dtype=torch.float32):
        return {"weight": torch.ones(self.features, dtype=dtype), "bias": torch.zeros(self.features, dtype=dtype)}

    def draw_label(self) -> str:
        return "ln"
