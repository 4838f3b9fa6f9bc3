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
    "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid,
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


class ChannelSlice(nn.Module):
    """Channels ``[start, stop)`` of a feature map (a chunk/split part)."""

    def __init__(self, start: int, stop: int):
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start:self.stop]

    def extra_repr(self) -> str:
        return f"{self.start}:{self.stop}"


class ChannelShuffle(nn.Module):
    """ShuffleNet's fixed channel permutation: view as (groups, C/groups), transpose, flatten."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.view(b, self.groups, c // self.groups, h, w)
        return torch.transpose(x, 1, 2).contiguous().view(b, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of an NCHW map (ConvNeXt's LayerNorm2d), computed
    as torchvision does (permute to channels-last, normalise, permute back) so outputs match."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class LayerScale(nn.Module):
    """``weight * x`` with a learnable per-channel ``weight`` of shape (C, 1, 1) (ConvNeXt)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x


class StochasticDepth(nn.Module):
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


BUILDERS: dict[str, Callable[[dict[str, Any]], nn.Module]] = {
    "conv2d": lambda s: nn.Conv2d(s["in_channels"], s["out_channels"], s["kernel_size"], s.get("stride", 1),
                                  s.get("padding", 0), s.get("dilation", 1), s.get("groups", 1),
                                  s.get("bias", False)),
    "batchnorm2d": lambda s: nn.BatchNorm2d(s["num_features"], s.get("eps", 1e-5), s.get("momentum", 0.1)),
    "activation": lambda s: Elementwise(s.get("fn", "relu")),
    "pact": lambda s: ParametricActivation(s.get("fn", "relu"), s["channels"], s.get("per_channel", True)),
    "prelu": lambda s: nn.PReLU(s.get("num_parameters", 1), s.get("init", 0.25)),
    "identity": lambda s: Scale(float(s.get("scale", 1.0))),
    "maxpool2d": lambda s: nn.MaxPool2d(s["kernel_size"], s.get("stride"), s.get("padding", 0),
                                        ceil_mode=s.get("ceil_mode", False)),
    "avgpool2d": lambda s: nn.AvgPool2d(s["kernel_size"], s.get("stride"), s.get("padding", 0),
                                        ceil_mode=s.get("ceil_mode", False),
                                        count_include_pad=s.get("count_include_pad", True)),
    "adaptive_avgpool2d": lambda s: nn.AdaptiveAvgPool2d((s["height"], s["width"])),
    "adaptive_maxpool2d": lambda s: nn.AdaptiveMaxPool2d((s["height"], s["width"])),
    "channel_slice": lambda s: ChannelSlice(s["start"], s["stop"]),
    "channel_shuffle": lambda s: ChannelShuffle(s["groups"]),
    "channel_layernorm": lambda s: ChannelLayerNorm(s["channels"], eps=s.get("eps", 1e-6)),
    "layer_scale": lambda s: LayerScale(s["channels"]),
    "stochastic_depth": lambda s: StochasticDepth(s.get("p", 0.0), s.get("mode", "row")),
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
