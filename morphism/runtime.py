"""The runtime ``nn.Module``s of every layer kind, in one torch-only file.

Why one file that imports nothing but torch: the same code must build a layer inside morphnas
(``LayerSpec.module()``, used by :mod:`.compile`) and inside an exported model, where morphnas is
not installed. ``morphnas export`` copies this file beside ``load_model.py``, so the two can never
compute a layer differently. Do not import morphnas here.

:func:`build_layer` maps a layer's JSON form (``{"kind": ..., fields}``) to its module; a new
layer kind adds one builder to ``BUILDERS``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

# The export format written by ``morphnas export`` and read by the standalone loader.
EXPORT_FORMAT = "morphnas-export"
EXPORT_VERSION = 1

ACTIVATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "elu": F.elu,
    "gelu": F.gelu,
    "silu": F.silu,
    "softplus": F.softplus,
    "leaky_relu": F.leaky_relu,
    "relu6": F.relu6,
    "hardtanh": F.hardtanh,
}


class Elementwise(nn.Module):
    """A fixed element-wise non-linearity ``phi(x)`` by name."""

    def __init__(self, fn: str):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ACTIVATIONS[self.fn](x)

    def extra_repr(self) -> str:
        return self.fn


class ParametricActivation(nn.Module):
    """``(1 - a) * phi(x) + a * x``: ``a = 1`` is the identity, ``a = 0`` is ``phi``."""

    def __init__(self, fn: str, channels: int, per_channel: bool):
        super().__init__()
        self.fn = fn
        self.per_channel = per_channel
        self.a = nn.Parameter(torch.ones(channels if per_channel else 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.a.view(1, -1, *([1] * (x.dim() - 2))) if (self.per_channel and x.dim() > 2) else self.a
        return x + (1.0 - a) * (ACTIVATIONS[self.fn](x) - x)

    def extra_repr(self) -> str:
        return f"fn={self.fn}, per_channel={self.per_channel}"


class Scale(nn.Module):
    """``scale * x`` (a residual shortcut when ``scale = 1``)."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.scale == 1.0 else x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class Pad(nn.Module):
    """Zero padding by ``amount`` on every side."""

    def __init__(self, amount: int):
        super().__init__()
        self.amount = amount

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (self.amount,) * 4)

    def extra_repr(self) -> str:
        return str(self.amount)


class Crop(nn.Module):
    """Drop ``amount`` pixels on every side."""

    def __init__(self, amount: int):
        super().__init__()
        self.amount = amount

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.amount
        return x[:, :, a:x.shape[2] - a, a:x.shape[3] - a] if a else x

    def extra_repr(self) -> str:
        return str(self.amount)


BUILDERS: dict[str, Callable[[dict[str, Any]], nn.Module]] = {
    "conv2d": lambda s: nn.Conv2d(s["in_channels"], s["out_channels"], s["kernel_size"], s.get("stride", 1),
                                  s.get("padding", 0), s.get("dilation", 1), s.get("groups", 1),
                                  s.get("bias", False)),
    "batchnorm2d": lambda s: nn.BatchNorm2d(s["num_features"], s.get("eps", 1e-5), s.get("momentum", 0.1)),
    "activation": lambda s: Elementwise(s.get("fn", "relu")),
    "pact": lambda s: ParametricActivation(s.get("fn", "relu"), s["channels"], s.get("per_channel", True)),
    "prelu": lambda s: nn.PReLU(s.get("num_parameters", 1), s.get("init", 0.25)),
    "identity": lambda s: Scale(float(s.get("scale", 1.0))),
    "maxpool2d": lambda s: nn.MaxPool2d(s["kernel_size"], s.get("stride"), s.get("padding", 0)),
    "avgpool2d": lambda s: nn.AvgPool2d(s["kernel_size"], s.get("stride"), s.get("padding", 0),
                                        count_include_pad=s.get("count_include_pad", True)),
    "global_avg_pool": lambda s: nn.AdaptiveAvgPool2d(1),
    "flatten": lambda s: nn.Flatten(1),
    "linear": lambda s: nn.Linear(s["in_features"], s["out_features"], s.get("bias", True)),
    "dropout": lambda s: nn.Dropout(s.get("p", 0.5)),
    "pad": lambda s: Pad(s["amount"]),
    "crop": lambda s: Crop(s["amount"]),
}


def build_layer(spec: dict[str, Any]) -> nn.Module:
    """The module for one layer's JSON form (``kind`` plus its fields); state-dict keys are the
    layer's parameter names."""
    fields = dict(spec)
    kind = fields.pop("kind", None)
    builder = BUILDERS.get(str(kind))
    if builder is None:
        raise ValueError(f"unknown layer kind {kind!r}; known: {', '.join(sorted(BUILDERS))}")
    return builder(fields)
