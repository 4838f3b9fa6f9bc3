"""``linear``: a fully connected layer on a flat input ``(F,)``, or on every token of a token blob
``(N, F)`` alike (the features are the last axis), computed by ``nn.Linear``."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..errors import SpecError
from ..import_rules import Convert, Unsupported, tensors
from .base import LayerSpec, Shape


def _from_module(mod: nn.Linear, shape: Shape | None) -> Convert | Unsupported:
    if shape is not None and len(shape) != 1:
        return Unsupported(f"Linear applied to a {len(shape)}-d feature map (flatten it first)")
    return Convert([Linear(mod.in_features, mod.out_features, mod.bias is not None)], [tensors(mod)])


@dataclass(frozen=True)
class Linear(LayerSpec):
    in_features: int
    out_features: int
    bias: bool = True
    kind: ClassVar[str] = "linear"
    runtime = nn.Linear
    import_modules = {nn.Linear: _from_module}

    def out_shape(self, shape):
        if len(shape) not in (1, 2):
            raise SpecError(f"linear needs a flat input (F,) or tokens (N, F) but got shape {tuple(shape)}; "
                            "insert a flatten")
        if shape[-1] != self.in_features:
            raise SpecError(f"linear expects {self.in_features} input features but the blob has {shape[-1]}")
        return (*shape[:-1], self.out_features)

    def param_shapes(self):
        p = {"weight": (self.out_features, self.in_features)}
        if self.bias:
            p["bias"] = (self.out_features,)
        return p

    def init_params(self, gen, dtype=torch.float32):
        bound = 1.0 / math.sqrt(self.in_features)
        w = (torch.rand(self.out_features, self.in_features, generator=gen, dtype=torch.float64) * 2 - 1) * bound
        p = {"weight": w.to(dtype)}
        if self.bias:
            p["bias"] = torch.zeros(self.out_features, dtype=dtype)
        return p

    def is_linear(self):
        return True

    def draw_label(self) -> str:
        return f"fc {self.in_features}→{self.out_features}"
