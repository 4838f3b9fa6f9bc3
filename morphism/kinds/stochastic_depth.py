"""``stochastic_depth``: drops a residual branch in training; the identity in eval (torchvision's
``stochastic_depth`` function, which its ``StochasticDepth`` module calls, imports as one)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import SpecError
from ..import_rules import Convert
from .base import LayerSpec, NamedFunction, Shape


class StochasticDepthModule(nn.Module):
    """Drops the whole residual branch of a sample (``row``) or of the batch with probability ``p``
    in training, scaling survivors by 1/(1-p); the identity in eval."""

    def __init__(self, p: float, mode: str):
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.dim() - 1) if self.mode == "row" else [1] * x.dim()
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * noise.div_(keep) if keep > 0.0 else x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


def _from_function(target: Any, args: tuple, kwargs: dict, shape: Shape | None) -> Convert:
    """``torchvision.ops.stochastic_depth(x, p, mode, training)``: named after the calling module."""
    opts = dict(zip(("p", "mode", "training"), args))
    opts.update(kwargs)
    return Convert([StochasticDepth(float(opts.get("p", 0.0)), str(opts.get("mode", "row")))], [{}], by_scope=True)


@dataclass(frozen=True)
class StochasticDepth(LayerSpec):
    """Drops a residual branch with probability ``p`` in training (``row``: per sample, ``batch``:
    for the whole batch); the identity in eval, which is where morphs and imports are checked."""

    p: float = 0.0
    mode: str = "row"
    kind: ClassVar[str] = "stochastic_depth"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True
    runtime = StochasticDepthModule
    import_functions = {NamedFunction("torchvision", "stochastic_depth"): _from_function}

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise SpecError(f"stochastic_depth p must satisfy 0 <= p <= 1, got p={self.p}")
        if self.mode not in ("row", "batch"):
            raise SpecError(f"stochastic_depth mode must be 'row' or 'batch', got {self.mode!r}")

    def draw_label(self) -> str:
        return "sd"
