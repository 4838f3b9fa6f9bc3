"""Layer kinds beyond ResNets: channel slices and shuffles, channel LayerNorm, layer scale,
stochastic depth and adaptive pooling (issue 14). They register themselves like every kind
(:class:`.layers.LayerSpec`); this module is imported by :mod:`.layers` so the registry is complete
whenever layers are.

Why these exist as kinds: torchvision's DenseNets, ShuffleNets, EfficientNets and ConvNeXts are
built from them, and the IR must compute each exactly so an import matches the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .errors import SpecError
from .layers import LayerSpec, Shape, _need_channels, _need_chw


@dataclass(frozen=True)
class ChannelSlice(LayerSpec):
    """Channels ``[start, stop)`` of a feature map: one part of ``chunk``/``split``."""

    start: int
    stop: int
    kind: ClassVar[str] = "channel_slice"

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.stop:
            raise SpecError(f"channel_slice needs 0 <= start < stop, got start={self.start}, stop={self.stop}")

    def out_shape(self, shape: Shape) -> Shape:
        _need_chw(self.kind, shape)
        if self.stop > shape[0]:
            raise SpecError(f"channel_slice {self.start}:{self.stop} exceeds the blob's {shape[0]} channels")
        return (self.stop - self.start, *shape[1:])

    def is_linear(self) -> bool:
        return True


@dataclass(frozen=True)
class ChannelShuffle(LayerSpec):
    """ShuffleNet's fixed channel permutation: channel ``g*(C/groups) + i`` moves to ``i*groups + g``."""

    groups: int
    kind: ClassVar[str] = "channel_shuffle"

    def __post_init__(self) -> None:
        if self.groups < 1:
            raise SpecError(f"channel_shuffle groups must be >= 1, got {self.groups}")

    def out_shape(self, shape: Shape) -> Shape:
        _need_chw(self.kind, shape)
        if shape[0] % self.groups:
            raise SpecError(f"channel_shuffle with groups={self.groups} needs channels divisible by it, got {shape[0]}")
        return shape

    def permutation(self, channels: int) -> list[int]:
        """``out[j] = in[perm[j]]``."""
        per = channels // self.groups
        return [g * per + i for i in range(per) for g in range(self.groups)]

    def is_linear(self) -> bool:
        return True


@dataclass(frozen=True)
class ChannelLayerNorm(LayerSpec):
    """LayerNorm over the channels at each pixel (ConvNeXt's ``LayerNorm2d``); weight and bias (C,).
    Not channel-wise: every channel's output depends on all channels' statistics."""

    channels: int
    eps: float = 1e-6
    kind: ClassVar[str] = "channel_layernorm"
    keeps_channels: ClassVar[bool] = True

    def out_shape(self, shape: Shape) -> Shape:
        _need_chw(self.kind, shape)
        _need_channels(self.kind, shape, self.channels)
        return shape

    def param_shapes(self) -> dict[str, Shape]:
        return {"weight": (self.channels,), "bias": (self.channels,)}

    def init_params(self, gen, dtype=torch.float32):
        return {"weight": torch.ones(self.channels, dtype=dtype), "bias": torch.zeros(self.channels, dtype=dtype)}


@dataclass(frozen=True)
class LayerScale(LayerSpec):
    """``weight * x`` with a learnable per-channel ``weight`` of shape (C, 1, 1) (ConvNeXt)."""

    channels: int
    kind: ClassVar[str] = "layer_scale"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True

    def out_shape(self, shape: Shape) -> Shape:
        _need_channels(self.kind, shape, self.channels)
        return shape

    def param_shapes(self) -> dict[str, Shape]:
        return {"weight": (self.channels, 1, 1)}

    def init_params(self, gen, dtype=torch.float32):
        return {"weight": torch.ones(self.channels, 1, 1, dtype=dtype)}

    def is_linear(self) -> bool:
        return True


@dataclass(frozen=True)
class StochasticDepth(LayerSpec):
    """Drops a residual branch with probability ``p`` in training (``row``: per sample, ``batch``:
    for the whole batch); the identity in eval, which is where morphs and imports are checked."""

    p: float = 0.0
    mode: str = "row"
    kind: ClassVar[str] = "stochastic_depth"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise SpecError(f"stochastic_depth p must satisfy 0 <= p <= 1, got p={self.p}")
        if self.mode not in ("row", "batch"):
            raise SpecError(f"stochastic_depth mode must be 'row' or 'batch', got {self.mode!r}")


@dataclass(frozen=True)
class _AdaptivePool2d(LayerSpec):
    height: int
    width: int

    def __post_init__(self) -> None:
        if min(self.height, self.width) < 1:
            raise SpecError(f"{self.kind} output size must be positive, got {self.height}x{self.width}")

    def out_shape(self, shape: Shape) -> Shape:
        _need_chw(self.kind, shape)
        return (shape[0], self.height, self.width)


@dataclass(frozen=True)
class AdaptiveAvgPool2d(_AdaptivePool2d):
    """Average pooling to a fixed ``height x width`` (GlobalAvgPool stays the 1x1 case)."""

    kind: ClassVar[str] = "adaptive_avgpool2d"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True

    def is_linear(self) -> bool:
        return True


@dataclass(frozen=True)
class AdaptiveMaxPool2d(_AdaptivePool2d):
    """Max pooling to a fixed ``height x width``."""

    kind: ClassVar[str] = "adaptive_maxpool2d"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True
