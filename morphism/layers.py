"""Layer kinds: typed, frozen specs for the edges of the network DAG.

A spec describes a layer's hyper-parameters only; its tensors live in ``Network.params[edge]``.
Each kind knows its output shape, its parameter shapes, its default initialisation and its traits
(``channelwise``, ``keeps_channels``); the ``nn.Module`` computing it lives in :mod:`.runtime`
(torch only, shipped with exports) and the JSON form in :mod:`.layer_json`. A subclass with a
``kind`` registers itself (:meth:`LayerSpec.__init_subclass__`), so adding a layer kind is one class
here plus one builder in :mod:`.runtime`.

Shapes are tuples without the batch dimension: ``(C, H, W)`` for feature maps, ``(F,)`` for flat.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from .errors import SpecError, did_you_mean
from .runtime import ACTIVATIONS, build_layer

Shape = tuple[int, ...]

_KINDS: dict[str, type["LayerSpec"]] = {}   # kind name -> class, filled as subclasses are defined


def registered_kinds() -> dict[str, type["LayerSpec"]]:
    """The kinds registered so far (a copy). Use :func:`morphnas.morphism.kinds.layer_kinds` for
    all of them: it imports every module that defines kinds first."""
    return dict(_KINDS)


class LayerSpec:
    """Base of all layer kinds. Subclasses are frozen dataclasses with a ``kind`` name."""

    kind: ClassVar[str] = ""
    # Traits the ops read instead of keeping lists of classes:
    channelwise: ClassVar[bool] = False     # acts on each channel separately (both ends share the channel axis)
    keeps_channels: ClassVar[bool] = False  # the output has the input's channels, same layout (C, H, W) -> (C, ., .)
    if TYPE_CHECKING:  # every concrete kind is a dataclass (declared for the checker only)
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def out_shape(self, shape: Shape) -> Shape:
        """The output shape for an input of ``shape``; raises ``SpecError`` if it does not fit."""
        return shape

    def param_shapes(self) -> dict[str, Shape]:
        """Learnable parameters and buffers of the layer, by state-dict name."""
        return {}

    def init_params(self, gen: torch.Generator, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """Fresh tensors for a newly built layer (He init for convs, identity BN, ...)."""
        return {}

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        """Register a concrete kind by its ``kind`` name; a second class with the same name is an error.
        ``class X(LayerSpec, register=False)`` opts out (a stand-in that must stay unknown, in tests)."""
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind", "")
        if not kind or not register:
            return   # an abstract helper base (e.g. the pooling base)
        other = _KINDS.get(kind)
        if other is not None:
            raise SpecError(f"layer kind {kind!r} is defined twice ({other.__module__}.{other.__qualname__} and "
                            f"{cls.__module__}.{cls.__qualname__}); give the new class another 'kind'")
        _KINDS[kind] = cls

    def module(self) -> nn.Module:
        """A module computing this layer (:func:`.runtime.build_layer`); its ``state_dict`` keys are
        ``param_shapes()``'s keys."""
        return build_layer({"kind": self.kind, **dataclasses.asdict(self)})

    def is_linear(self) -> bool:
        """True when the layer is a linear map of its input (used by the morph solver)."""
        return False


def _need_chw(kind: str, shape: Shape) -> None:
    if len(shape) != 3:
        raise SpecError(f"{kind} needs a (C, H, W) feature map but got shape {tuple(shape)}")


def _need_channels(kind: str, shape: Shape, channels: int) -> None:
    if shape[0] != channels:
        raise SpecError(f"{kind} expects {channels} input channels but the blob has {shape[0]}")


def _conv_size(size: int, k: int, stride: int, pad: int, dilation: int = 1) -> int:
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


@dataclass(frozen=True)
class Conv2d(LayerSpec):
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    bias: bool = False
    dilation: int = 1
    kind: ClassVar[str] = "conv2d"

    def __post_init__(self) -> None:
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise SpecError(
                f"conv2d channels must be divisible by groups, got in={self.in_channels}, "
                f"out={self.out_channels}, groups={self.groups}")
        if min(self.kernel_size, self.stride, self.groups, self.dilation, self.in_channels, self.out_channels) < 1 or self.padding < 0:
            raise SpecError(f"conv2d sizes must be positive (padding >= 0), got {self}")

    def out_shape(self, shape: Shape) -> Shape:
        _need_chw(self.kind, shape)
        _need_channels(self.kind, shape, self.in_channels)
        h = _conv_size(shape[1], self.kernel_size, self.stride, self.padding, self.dilation)
        w = _conv_size(shape[2], self.kernel_size, self.stride, self.padding, self.dilation)
        if h < 1 or w < 1:
            raise SpecError(f"conv2d with kernel {self.kernel_size} does not fit a {shape[1]}x{shape[2]} input")
        return (self.out_channels, h, w)

    def param_shapes(self) -> dict[str, Shape]:
        k = self.kernel_size
        p: dict[str, Shape] = {"weight": (self.out_channels, self.in_channels // self.groups, k, k)}
        if self.bias:
            p["bias"] = (self.out_channels,)
        return p

    def init_params(self, gen, dtype=torch.float32):
        shape = self.param_shapes()["weight"]
        fan_out = shape[0] * shape[2] * shape[3]
        w = torch.randn(shape, generator=gen, dtype=torch.float64) * math.sqrt(2.0 / fan_out)
        p = {"weight": w.to(dtype)}
        if self.bias:
            p["bias"] = torch.zeros(self.out_channels, dtype=dtype)
        return p

    def is_linear(self) -> bool:
        return True

    @property
    def depthwise(self) -> bool:
        """One filter per channel (``groups == in_channels == out_channels``), as in MobileNets."""
        return self.groups == self.in_channels == self.out_channels and self.groups > 1


@dataclass(frozen=True)
class BatchNorm2d(LayerSpec):
    num_features: int
    eps: float = 1e-5
    momentum: float = 0.1
    kind: ClassVar[str] = "batchnorm2d"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True

    def out_shape(self, shape):
        _need_chw(self.kind, shape)
        _need_channels(self.kind, shape, self.num_features)
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


def _check_fn(fn: str) -> None:
    if fn not in ACTIVATIONS:
        raise SpecError(f"unknown activation function {fn!r}{did_you_mean(fn, ACTIVATIONS)}")


@dataclass(frozen=True)
class Activation(LayerSpec):
    """A fixed element-wise non-linearity."""

    fn: str = "relu"
    kind: ClassVar[str] = "activation"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True

    def __post_init__(self):
        _check_fn(self.fn)


@dataclass(frozen=True)
class PAct(LayerSpec):
    """Parametric activation ``(1-a)·phi + a·id``; ``a`` per channel or a scalar, 1 at insertion."""

    channels: int
    fn: str = "relu"
    per_channel: bool = True
    kind: ClassVar[str] = "pact"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True

    def __post_init__(self):
        _check_fn(self.fn)

    def out_shape(self, shape):
        if self.per_channel:
            _need_channels(self.kind, shape, self.channels)
        return shape

    def param_shapes(self):
        return {"a": (self.channels if self.per_channel else 1,)}

    def init_params(self, gen, dtype=torch.float32):
        return {"a": torch.ones(self.param_shapes()["a"], dtype=dtype)}


@dataclass(frozen=True)
class PReLU(LayerSpec):
    num_parameters: int = 1
    init: float = 0.25
    kind: ClassVar[str] = "prelu"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True

    def out_shape(self, shape):
        if self.num_parameters != 1:
            _need_channels(self.kind, shape, self.num_parameters)
        return shape

    def param_shapes(self):
        return {"weight": (self.num_parameters,)}

    def init_params(self, gen, dtype=torch.float32):
        return {"weight": torch.full((self.num_parameters,), self.init, dtype=dtype)}


@dataclass(frozen=True)
class Identity(LayerSpec):
    """``scale * x``; ``scale = 1`` is a plain identity (a residual shortcut)."""

    scale: float = 1.0
    kind: ClassVar[str] = "identity"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True

    def is_linear(self):
        return True


def _pool_size(size: int, k: int, stride: int, pad: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size, including its ``ceil_mode`` rule (a window must start inside
    the input or its left padding)."""
    if not ceil_mode:
        return _conv_size(size, k, stride, pad)
    out = -(-(size + 2 * pad - k) // stride) + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


@dataclass(frozen=True)
class _Pool2d(LayerSpec):
    kernel_size: int
    stride: int | None = None
    padding: int = 0

    def out_shape(self, shape):
        _need_chw(self.kind, shape)
        s = self.stride or self.kernel_size
        ceil = bool(getattr(self, "ceil_mode", False))
        h, w = (_pool_size(x, self.kernel_size, s, self.padding, ceil) for x in shape[1:])
        if h < 1 or w < 1:
            raise SpecError(f"{self.kind} {self.kernel_size} does not fit a {shape[1]}x{shape[2]} input")
        return (shape[0], h, w)


@dataclass(frozen=True)
class MaxPool2d(_Pool2d):
    ceil_mode: bool = False
    kind: ClassVar[str] = "maxpool2d"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True


@dataclass(frozen=True)
class AvgPool2d(_Pool2d):
    count_include_pad: bool = True
    ceil_mode: bool = False
    kind: ClassVar[str] = "avgpool2d"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True

    def is_linear(self):
        return True


@dataclass(frozen=True)
class GlobalAvgPool(LayerSpec):
    """Average over H and W, keeping ``(C, 1, 1)`` like ``AdaptiveAvgPool2d(1)``."""

    kind: ClassVar[str] = "global_avg_pool"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True

    def out_shape(self, shape):
        _need_chw(self.kind, shape)
        return (shape[0], 1, 1)

    def is_linear(self):
        return True


@dataclass(frozen=True)
class Flatten(LayerSpec):
    kind: ClassVar[str] = "flatten"
    channelwise: ClassVar[bool] = True      # feature c*H*W + r is channel c at pixel r

    def out_shape(self, shape):
        return (math.prod(shape),)

    def is_linear(self):
        return True


@dataclass(frozen=True)
class Linear(LayerSpec):
    in_features: int
    out_features: int
    bias: bool = True
    kind: ClassVar[str] = "linear"

    def out_shape(self, shape):
        if len(shape) != 1:
            raise SpecError(f"linear needs a flat input but got shape {tuple(shape)}; insert a flatten")
        if shape[0] != self.in_features:
            raise SpecError(f"linear expects {self.in_features} input features but the blob has {shape[0]}")
        return (self.out_features,)

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


@dataclass(frozen=True)
class Dropout(LayerSpec):
    p: float = 0.5
    kind: ClassVar[str] = "dropout"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True

    def __post_init__(self):
        if not 0.0 <= self.p < 1.0:
            raise SpecError(f"dropout p must satisfy 0 <= p < 1, got p={self.p}")


@dataclass(frozen=True)
class Pad(LayerSpec):
    """Zero padding by ``amount`` on every side: the entry of a "pad once" chain of unpadded convs."""

    amount: int
    kind: ClassVar[str] = "pad"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True

    def out_shape(self, shape):
        _need_chw(self.kind, shape)
        return (shape[0], shape[1] + 2 * self.amount, shape[2] + 2 * self.amount)

    def is_linear(self):
        return True


@dataclass(frozen=True)
class Crop(LayerSpec):
    """Drop ``amount`` pixels on every side: aligns paths of different radius in a pad-once module."""

    amount: int
    kind: ClassVar[str] = "crop"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True

    def out_shape(self, shape):
        _need_chw(self.kind, shape)
        h, w = shape[1] - 2 * self.amount, shape[2] - 2 * self.amount
        if h < 1 or w < 1:
            raise SpecError(f"crop by {self.amount} does not fit a {shape[1]}x{shape[2]} input")
        return (shape[0], h, w)

    def is_linear(self):
        return True

