"""``dropout``: element-wise dropout in training, the identity in eval; computed by ``nn.Dropout``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import nn

from ..errors import SpecError
from ..import_rules import Convert, Unsupported
from .base import LayerSpec, Shape


def _from_module(mod: nn.Dropout, shape: Shape | None) -> Convert | Unsupported:
    return Convert([Dropout(float(mod.p))], [{}], inplace=mod.inplace)


def _from_function(target: Any, args: tuple, kwargs: dict, shape: Shape | None) -> Convert | Unsupported:
    opts = dict(zip(("p", "training", "inplace"), args))
    opts.update(kwargs)
    return Convert([Dropout(float(opts.get("p", 0.5)))], [{}], inplace=bool(opts.get("inplace", False)))


@dataclass(frozen=True)
class Dropout(LayerSpec):
    p: float = 0.5
    kind: ClassVar[str] = "dropout"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True
    runtime = nn.Dropout
    import_modules = {nn.Dropout: _from_module}
    import_functions = {F.dropout: _from_function}

    def __post_init__(self):
        if not 0.0 <= self.p < 1.0:
            raise SpecError(f"dropout p must satisfy 0 <= p < 1, got p={self.p}")

    def draw_label(self) -> str:
        return "dropout"
