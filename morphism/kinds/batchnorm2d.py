"""``batchnorm2d``: batch normalisation of a feature map's channels, computed by ``nn.BatchNorm2d``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..import_rules import Convert, Unsupported, tensors
from .base import LayerSpec, Shape, need_channels, need_chw


def _from_module(mod: nn.BatchNorm2d, shape: Shape | None) -> Convert | Unsupported:
    if not (mod.affine and mod.track_running_stats):
        return Unsupported("BatchNorm2d without affine parameters or running statistics")
    if mod.momentum is None:
        return Unsupported("BatchNorm2d with momentum=None (cumulative average)")
    return Convert([BatchNorm2d(mod.num_features, float(mod.eps), float(mod.momentum))], [tensors(mod)])


@dataclass(frozen=True)
class BatchNorm2d(LayerSpec):
    num_features: int
    eps: float = 1e-5
    momentum: float = 0.1
    kind: ClassVar[str] = "batchnorm2d"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True
    runtime = nn.BatchNorm2d
    import_modules = {nn.BatchNorm2d: _from_module}

    def out_shape(self, shape):
        need_chw(self.kind, shape)
        need_channels(self.kind, shape, self.num_features)
        return shape

    def param_shapes(self):
        c = (self.num_features,)
        return {"weight": c, "bias": c, "running_mean": c, "running_var": c, "num_batches_tracked": ()}

    def init_params(self, gen, dtype=torch.float32):
        c = self.num_features
        return {"weight": torch.ones(c, dtype=dtype), "bias": torch.zeros(c, dtype=dtype),
                "running_mean": torch.zeros(c, dtype=dtype), "running_var": torch.ones(c, dtype=dtype),
                "num_batches_tracked": torch.tensor(0, dtype=torch.long)}

    def is_linear(self) -> bool:  # affine in eval mode
        return True

    def draw_label(self) -> str:
        return "bn"
