"""``prelu``: PyTorch's parametric ReLU, computed by ``nn.PReLU``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..import_rules import Convert, Unsupported, tensors
from .base import LayerSpec, Shape, need_channels


def _from_module(mod: nn.PReLU, shape: Shape | None) -> Convert | Unsupported:
    return Convert([PReLU(mod.num_parameters, float(mod.init))], [tensors(mod)])


@dataclass(frozen=True)
class PReLU(LayerSpec):
    num_parameters: int = 1
    init: float = 0.25
    kind: ClassVar[str] = "prelu"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True
    runtime = nn.PReLU
    import_modules = {nn.PReLU: _from_module}

    def out_shape(self, shape):
        if self.num_parameters != 1:
            need_channels(self.kind, shape, self.num_parameters)
        return shape

    def param_shapes(self):
        return {"weight": (self.num_parameters,)}

    def init_params(self, gen, dtype=torch.float32):
        return {"weight": torch.full((self.num_parameters,), self.init, dtype=dtype)}

    def draw_label(self) -> str:
        return "prelu"
