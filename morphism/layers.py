"""Layer kinds: typed, frozen specs for the edges of the network DAG.

A spec describes a layer's hyper-parameters only; its tensors live in ``Network.params[edge]``.
Each kind knows its output shape, its parameter shapes, its default initialisation and the
``nn.Module`` that computes it. Kind names appear only in JSON (``spec_to_json`` /
``spec_from_json``), where unknown kinds get close-match suggestions.

Shapes are tuples without the batch dimension: ``(C, H, W)`` for feature maps, ``(F,)`` for flat.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .errors import SpecError

Shape = tuple[int, ...]

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


class LayerSpec:
    """Base of all layer kinds. Subclasses are frozen dataclasses with a ``kind`` name."""

    kind: ClassVar[str] = ""
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

    def module(self) -> nn.Module:
        """A module computing this layer; its ``state_dict`` keys are ``param_shapes()``'s keys."""
        raise NotImplementedError

    def is_linear(self) -> bool:
        """True when the layer is a linear map of its input (used by the morph solver)."""
        return False

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}


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

    def module(self) -> nn.Module:
        return nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride,
                         self.padding, self.dilation, self.groups, self.bias)

    def is_linear(self) -> bool:
        return True


@dataclass(frozen=True)
class BatchNorm2d(LayerSpec):
    num_features: int
    eps: float = 1e-5
    momentum: float = 0.1
    kind: ClassVar[str] = "batchnorm2d"

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

    def module(self):
        return nn.BatchNorm2d(self.num_features, self.eps, self.momentum)

    def is_linear(self) -> bool:  # affine in eval mode
        return True


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


def _check_fn(fn: str) -> None:
    if fn not in ACTIVATIONS:
        close = difflib.get_close_matches(fn, ACTIVATIONS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(ACTIVATIONS)}"
        raise SpecError(f"unknown activation function {fn!r}{hint}")


@dataclass(frozen=True)
class Activation(LayerSpec):
    """A fixed element-wise non-linearity."""

    fn: str = "relu"
    kind: ClassVar[str] = "activation"

    def __post_init__(self):
        _check_fn(self.fn)

    def module(self):
        return _Elementwise(self.fn)


class _Elementwise(nn.Module):
    def __init__(self, fn: str):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return ACTIVATIONS[self.fn](x)

    def extra_repr(self):
        return self.fn


@dataclass(frozen=True)
class PAct(LayerSpec):
    """Parametric activation ``(1-a)·phi + a·id``; ``a`` per channel or a scalar, 1 at insertion."""

    channels: int
    fn: str = "relu"
    per_channel: bool = True
    kind: ClassVar[str] = "pact"

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

    def module(self):
        return ParametricActivation(self.fn, self.channels, self.per_channel)


@dataclass(frozen=True)
class PReLU(LayerSpec):
    num_parameters: int = 1
    init: float = 0.25
    kind: ClassVar[str] = "prelu"

    def out_shape(self, shape):
        if self.num_parameters != 1:
            _need_channels(self.kind, shape, self.num_parameters)
        return shape

    def param_shapes(self):
        return {"weight": (self.num_parameters,)}

    def init_params(self, gen, dtype=torch.float32):
        return {"weight": torch.full((self.num_parameters,), self.init, dtype=dtype)}

    def module(self):
        return nn.PReLU(self.num_parameters, self.init)


@dataclass(frozen=True)
class Identity(LayerSpec):
    """``scale * x``; ``scale = 1`` is a plain identity (a residual shortcut)."""

    scale: float = 1.0
    kind: ClassVar[str] = "identity"

    def module(self):
        return _Scale(self.scale)

    def is_linear(self):
        return True


class _Scale(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return x * self.scale

    def extra_repr(self):
        return f"scale={self.scale}"


@dataclass(frozen=True)
class _Pool2d(LayerSpec):
    kernel_size: int
    stride: int | None = None
    padding: int = 0

    def out_shape(self, shape):
        _need_chw(self.kind, shape)
        s = self.stride or self.kernel_size
        h, w = (_conv_size(x, self.kernel_size, s, self.padding) for x in shape[1:])
        if h < 1 or w < 1:
            raise SpecError(f"{self.kind} {self.kernel_size} does not fit a {shape[1]}x{shape[2]} input")
        return (shape[0], h, w)


@dataclass(frozen=True)
class MaxPool2d(_Pool2d):
    kind: ClassVar[str] = "maxpool2d"

    def module(self):
        return nn.MaxPool2d(self.kernel_size, self.stride, self.padding)


@dataclass(frozen=True)
class AvgPool2d(_Pool2d):
    count_include_pad: bool = True
    kind: ClassVar[str] = "avgpool2d"

    def module(self):
        return nn.AvgPool2d(self.kernel_size, self.stride, self.padding, count_include_pad=self.count_include_pad)

    def is_linear(self):
        return True


@dataclass(frozen=True)
class GlobalAvgPool(LayerSpec):
    """Average over H and W, keeping ``(C, 1, 1)`` like ``AdaptiveAvgPool2d(1)``."""

    kind: ClassVar[str] = "global_avg_pool"

    def out_shape(self, shape):
        _need_chw(self.kind, shape)
        return (shape[0], 1, 1)

    def module(self):
        return nn.AdaptiveAvgPool2d(1)

    def is_linear(self):
        return True


@dataclass(frozen=True)
class Flatten(LayerSpec):
    kind: ClassVar[str] = "flatten"

    def out_shape(self, shape):
        return (math.prod(shape),)

    def module(self):
        return nn.Flatten(1)

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

    def module(self):
        return nn.Linear(self.in_features, self.out_features, self.bias)

    def is_linear(self):
        return True


@dataclass(frozen=True)
class Dropout(LayerSpec):
    p: float = 0.5
    kind: ClassVar[str] = "dropout"

    def __post_init__(self):
        if not 0.0 <= self.p < 1.0:
            raise SpecError(f"dropout p must satisfy 0 <= p < 1, got p={self.p}")

    def module(self):
        return nn.Dropout(self.p)


@dataclass(frozen=True)
class Pad(LayerSpec):
    """Zero padding by ``amount`` on every side: the entry of a "pad once" chain of unpadded convs."""

    amount: int
    kind: ClassVar[str] = "pad"

    def out_shape(self, shape):
        _need_chw(self.kind, shape)
        return (shape[0], shape[1] + 2 * self.amount, shape[2] + 2 * self.amount)

    def module(self):
        return _Pad(self.amount)

    def is_linear(self):
        return True


class _Pad(nn.Module):
    def __init__(self, amount: int):
        super().__init__()
        self.amount = amount

    def forward(self, x):
        return F.pad(x, (self.amount,) * 4)

    def extra_repr(self):
        return str(self.amount)


@dataclass(frozen=True)
class Crop(LayerSpec):
    """Drop ``amount`` pixels on every side: aligns paths of different radius in a pad-once module."""

    amount: int
    kind: ClassVar[str] = "crop"

    def out_shape(self, shape):
        _need_chw(self.kind, shape)
        h, w = shape[1] - 2 * self.amount, shape[2] - 2 * self.amount
        if h < 1 or w < 1:
            raise SpecError(f"crop by {self.amount} does not fit a {shape[1]}x{shape[2]} input")
        return (shape[0], h, w)

    def module(self):
        return _Crop(self.amount)

    def is_linear(self):
        return True


class _Crop(nn.Module):
    def __init__(self, amount: int):
        super().__init__()
        self.amount = amount

    def forward(self, x):
        a = self.amount
        return x[:, :, a:x.shape[2] - a, a:x.shape[3] - a] if a else x

    def extra_repr(self):
        return str(self.amount)


KINDS: dict[str, type[LayerSpec]] = {
    cls.kind: cls
    for cls in (Conv2d, BatchNorm2d, Activation, PAct, PReLU, Identity, MaxPool2d, AvgPool2d,
                GlobalAvgPool, Flatten, Linear, Dropout, Pad, Crop)
}


def spec_to_json(spec: LayerSpec) -> dict[str, Any]:
    return spec.to_json()


def spec_from_json(data: Any, where: str = "layer") -> LayerSpec:
    """Build a spec from its JSON form, with errors that name ``where``, the field and the fix."""
    if not isinstance(data, dict) or "kind" not in data:
        raise SpecError(f"{where}: expected an object with a 'kind' field, got {data!r}")
    kind = data["kind"]
    cls = KINDS.get(kind)
    if cls is None:
        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known kinds: {', '.join(sorted(KINDS))}"
        raise SpecError(f"{where}: unknown layer kind {kind!r}{hint}")
    fields = {f.name for f in dataclasses.fields(cls)}
    extra = set(data) - fields - {"kind"}
    if extra:
        raise SpecError(f"{where}: {kind} has no field(s) {sorted(extra)}; its fields are {sorted(fields)}")
    try:
        return cls(**{k: v for k, v in data.items() if k != "kind"})
    except TypeError as e:
        raise SpecError(f"{where}: bad fields for {kind}: {e}") from None
