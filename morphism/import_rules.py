"""How each traced ``torch`` module or function maps onto an IR layer (used by :mod:`.importer`).

A rule returns a :class:`Convert`: the layer specs to chain (empty = the op is a no-op alias),
their tensors, and whether the op worked in place; or :class:`Unsupported` with a reason that names
the op and the offending setting. Only settings the IR computes exactly are accepted: e.g. a
``LeakyReLU`` with a non-default slope or a non-square kernel is refused, not approximated.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .layers import (Activation, AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool,
                     LayerSpec, Linear, MaxPool2d, PReLU, Shape)
from .layers_extra import AdaptiveAvgPool2d, AdaptiveMaxPool2d


@dataclass
class Convert:
    layers: list[LayerSpec] = field(default_factory=list)
    params: list[dict[str, torch.Tensor]] = field(default_factory=list)
    inplace: bool = False


@dataclass
class Unsupported:
    reason: str


# --------------------------------------------------------------------------------------- helpers
def _square(value: Any, what: str, owner: str) -> int:
    """``3`` or ``(3, 3)`` -> 3; anything else is unsupported (the IR has square kernels only)."""
    if isinstance(value, int):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2 and value[0] == value[1] and isinstance(value[0], int):
        return value[0]
    if isinstance(value, (tuple, list)) and len(value) == 1 and isinstance(value[0], int):
        return value[0]
    raise ValueError(f"{owner} with non-square {what} {value!r}")


def _tensors(mod: nn.Module) -> dict[str, torch.Tensor]:
    return {k: t.detach().clone() for k, t in mod.state_dict().items()}


_ACT_MODULES: dict[type, tuple[str, Callable[[nn.Module], str | None]]] = {
    # module type -> (IR fn, check returning a reason when a setting differs from the IR's)
    nn.ReLU: ("relu", lambda m: None),
    nn.ReLU6: ("relu6", lambda m: None),
    nn.Tanh: ("tanh", lambda m: None),
    nn.Sigmoid: ("sigmoid", lambda m: None),
    nn.SiLU: ("silu", lambda m: None),
    nn.GELU: ("gelu", lambda m: None if m.approximate == "none" else f"approximate={m.approximate!r}"),
    nn.ELU: ("elu", lambda m: None if m.alpha == 1.0 else f"alpha={m.alpha}"),
    nn.Softplus: ("softplus", lambda m: None if (m.beta, m.threshold) == (1.0, 20.0) else f"beta={m.beta}, threshold={m.threshold}"),
    nn.LeakyReLU: ("leaky_relu", lambda m: None if m.negative_slope == 0.01 else f"negative_slope={m.negative_slope} (use nn.PReLU)"),
    nn.Hardswish: ("hardswish", lambda m: None),
    nn.Hardsigmoid: ("hardsigmoid", lambda m: None),
    nn.Hardtanh: ("hardtanh", lambda m: None if (m.min_val, m.max_val) == (-1.0, 1.0) else f"min_val={m.min_val}, max_val={m.max_val}"),
}


def convert_module(mod: nn.Module, in_shape: Shape | None) -> Convert | Unsupported:
    """The IR layer(s) computing leaf module ``mod`` (``in_shape`` is its input's shape, if known)."""
    tname = type(mod).__name__
    try:
        if isinstance(mod, nn.Conv2d) and type(mod) is nn.Conv2d:
            if mod.padding_mode != "zeros":
                return Unsupported(f"Conv2d with padding_mode={mod.padding_mode!r}")
            k = _square(mod.kernel_size, "kernel", tname)
            d = _square(mod.dilation, "dilation", tname)
            s = _square(mod.stride, "stride", tname)
            if mod.padding == "valid":
                pad = 0
            elif mod.padding == "same":
                if (d * (k - 1)) % 2:
                    return Unsupported("Conv2d padding='same' with an even kernel (asymmetric padding)")
                pad = d * (k - 1) // 2
            else:
                pad = _square(mod.padding, "padding", tname)
            spec = Conv2d(mod.in_channels, mod.out_channels, k, s, pad, mod.groups, mod.bias is not None, d)
            return Convert([spec], [_tensors(mod)])
        if type(mod) is nn.BatchNorm2d:
            if not (mod.affine and mod.track_running_stats):
                return Unsupported("BatchNorm2d without affine parameters or running statistics")
            if mod.momentum is None:
                return Unsupported("BatchNorm2d with momentum=None (cumulative average)")
            return Convert([BatchNorm2d(mod.num_features, float(mod.eps), float(mod.momentum))], [_tensors(mod)])
        if type(mod) in _ACT_MODULES:
            fn, check = _ACT_MODULES[type(mod)]
            bad = check(mod)
            if bad:
                return Unsupported(f"{tname}({bad})")
            return Convert([Activation(fn)], [{}], inplace=bool(getattr(mod, "inplace", False)))
        if type(mod) is nn.PReLU:
            return Convert([PReLU(mod.num_parameters, float(mod.init))], [_tensors(mod)])
        if type(mod) in (nn.MaxPool2d, nn.AvgPool2d):
            k = _square(mod.kernel_size, "kernel", tname)
            s = _square(mod.stride, "stride", tname) if mod.stride is not None else k
            pad = _square(mod.padding, "padding", tname)
            if isinstance(mod, nn.MaxPool2d):
                if _square(mod.dilation, "dilation", tname) != 1 or mod.return_indices:
                    return Unsupported("MaxPool2d with dilation or return_indices")
                return Convert([MaxPool2d(k, s, pad, ceil_mode=bool(mod.ceil_mode))], [{}])
            if mod.divisor_override is not None:
                return Unsupported("AvgPool2d with divisor_override")
            return Convert([AvgPool2d(k, s, pad, bool(mod.count_include_pad), ceil_mode=bool(mod.ceil_mode))], [{}])
        if type(mod) is nn.AdaptiveAvgPool2d:
            return _global_pool(mod.output_size, in_shape, f"AdaptiveAvgPool2d(output_size={mod.output_size})")
        if type(mod) is nn.AdaptiveMaxPool2d:
            if mod.return_indices:
                return Unsupported("AdaptiveMaxPool2d with return_indices")
            return _adaptive(mod.output_size, in_shape, AdaptiveMaxPool2d, f"AdaptiveMaxPool2d({mod.output_size})")
        if type(mod) is nn.Flatten:
            return _flatten(mod.start_dim, mod.end_dim, in_shape, "nn.Flatten")
        if type(mod) is nn.Linear:
            if in_shape is not None and len(in_shape) != 1:
                return Unsupported(f"Linear applied to a {len(in_shape)}-d feature map (flatten it first)")
            return Convert([Linear(mod.in_features, mod.out_features, mod.bias is not None)], [_tensors(mod)])
        if type(mod) is nn.Dropout:
            return Convert([Dropout(float(mod.p))], [{}], inplace=mod.inplace)
        if type(mod) is nn.Identity:
            return Convert()
    except ValueError as e:
        return Unsupported(str(e))
    return Unsupported(f"{type(mod).__module__}.{type(mod).__qualname__}")


def _global_pool(output_size: Any, in_shape: Shape | None, what: str) -> Convert | Unsupported:
    if output_size in (1, (1, 1), [1, 1]):
        return Convert([GlobalAvgPool()], [{}])
    if in_shape is not None and len(in_shape) == 3 and output_size in (tuple(in_shape[1:]), list(in_shape[1:])):
        return Convert()  # already the requested size: the pool is the identity
    return _adaptive(output_size, in_shape, AdaptiveAvgPool2d, what)


def _adaptive(output_size: Any, in_shape: Shape | None, cls: type, what: str) -> Convert | Unsupported:
    """Adaptive pooling to ``output_size`` (an int or (h, w); ``None`` keeps that input size)."""
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size or ())
    if len(size) != 2:
        return Unsupported(what)
    if None in size:
        if in_shape is None or len(in_shape) != 3:
            return Unsupported(f"{what} with a None size on an input of unknown shape")
        size = tuple(in_shape[1 + i] if s is None else s for i, s in enumerate(size))
    return Convert([cls(int(size[0]), int(size[1]))], [{}])


def _flatten(start: int, end: int, in_shape: Shape | None, what: str) -> Convert | Unsupported:
    if start == 1 and end == -1:
        return Convert([Flatten()], [{}])
    if in_shape is not None and start == 1 and end in (len(in_shape), -1):
        return Convert([Flatten()], [{}])
    return Unsupported(f"{what}(start_dim={start}, end_dim={end}) (only flatten from dim 1 to the end)")


# ------------------------------------------------------------------------------- functions
# fn -> (IR activation, names of its extra arguments with the values the IR computes)
_ACT_FUNCS: dict[Any, tuple[str, tuple[tuple[str, Any], ...]]] = {
    F.relu: ("relu", (("inplace", None),)),
    torch.relu: ("relu", ()),
    torch.relu_: ("relu", ()),
    F.relu6: ("relu6", (("inplace", None),)),
    torch.tanh: ("tanh", ()),
    torch.sigmoid: ("sigmoid", ()),
    F.silu: ("silu", (("inplace", None),)),
    F.gelu: ("gelu", (("approximate", "none"),)),
    F.elu: ("elu", (("alpha", 1.0), ("inplace", None))),
    F.softplus: ("softplus", (("beta", 1.0), ("threshold", 20.0))),
    F.leaky_relu: ("leaky_relu", (("negative_slope", 0.01), ("inplace", None))),
    F.hardswish: ("hardswish", (("inplace", None),)),
    F.hardsigmoid: ("hardsigmoid", (("inplace", None),)),
    F.hardtanh: ("hardtanh", (("min_val", -1.0), ("max_val", 1.0), ("inplace", None))),
}
_ACT_METHODS = {"relu": "relu", "relu_": "relu", "tanh": "tanh", "tanh_": "tanh", "sigmoid": "sigmoid",
                "sigmoid_": "sigmoid"}
ADD = {operator.add, operator.iadd, torch.add}
ADD_METHODS = {"add", "add_"}
MUL = {operator.mul, operator.imul, torch.mul}
MUL_METHODS = {"mul", "mul_"}
NOOP_METHODS = {"contiguous"}


def fn_name(target: Any) -> str:
    """A readable name for a traced function target (``torch.cat``, ``operator.mul``)."""
    if isinstance(target, str):
        return f"Tensor.{target}"
    mod = getattr(target, "__module__", None) or ""
    mod = {"_operator": "operator", "torch._C._nn": "torch.nn.functional",
           "torch._C._VariableFunctions": "torch"}.get(mod, mod)
    return f"{mod}.{getattr(target, '__name__', repr(target))}".lstrip(".")


def _extra(args: tuple, kwargs: dict, names: tuple[tuple[str, Any], ...], what: str) -> tuple[bool, str | None]:
    """Check a function's extra arguments against the IR's values; returns (inplace, problem)."""
    given = dict(zip((n for n, _ in names), args))
    if len(args) > len(names):
        return False, f"{what} with extra arguments {args[len(names):]!r}"
    given.update(kwargs)
    allowed = dict(names)
    inplace = False
    for k, v in given.items():
        if k not in allowed:
            return False, f"{what}({k}={v!r})"
        if k == "inplace":
            inplace = bool(v)
        elif v != allowed[k]:
            return False, f"{what}({k}={v!r})"
    return inplace, None


def convert_activation_function(target: Any, args: tuple, kwargs: dict) -> Convert | Unsupported | None:
    """An element-wise activation call, or ``None`` when ``target`` is not one."""
    if target in _ACT_FUNCS:
        fn, names = _ACT_FUNCS[target]
        inplace, bad = _extra(args, kwargs, names, fn_name(target))
        if bad:
            return Unsupported(bad)
        return Convert([Activation(fn)], [{}], inplace=inplace or target is torch.relu_)
    if isinstance(target, str) and target in _ACT_METHODS:
        if args or kwargs:
            return Unsupported(f"Tensor.{target} with arguments")
        return Convert([Activation(_ACT_METHODS[target])], [{}], inplace=target.endswith("_"))
    return None


def convert_pool_function(target: Any, args: tuple, kwargs: dict, in_shape: Shape | None) -> Convert | Unsupported | None:
    """F.max_pool2d / F.avg_pool2d / F.adaptive_avg_pool2d / F.dropout / torch.flatten, or ``None``."""
    try:
        if target is F.adaptive_avg_pool2d:
            size = args[0] if args else kwargs.get("output_size")
            return _global_pool(size, in_shape, f"F.adaptive_avg_pool2d(output_size={size})")
        if target is F.adaptive_max_pool2d and not kwargs.get("return_indices") and len(args) < 2:
            size = args[0] if args else kwargs.get("output_size")
            return _adaptive(size, in_shape, AdaptiveMaxPool2d, f"F.adaptive_max_pool2d(output_size={size})")
        if target in (F.max_pool2d, F.avg_pool2d):
            names = ("kernel_size", "stride", "padding")
            opts = dict(zip(names, args))
            opts.update(kwargs)
            what = fn_name(target)
            k = _square(opts.get("kernel_size"), "kernel", what)
            stride = opts.get("stride")
            s = _square(stride, "stride", what) if stride not in (None, [], ()) else k
            pad = _square(opts.get("padding", 0), "padding", what)
            ceil = bool(opts.get("ceil_mode", False))
            if target is F.max_pool2d:
                if opts.get("return_indices") or opts.get("dilation", 1) not in (1, (1, 1)):
                    return Unsupported(f"{what} with dilation or return_indices")
                if len(args) > 3:
                    return Unsupported(f"{what} with extra positional arguments")
                return Convert([MaxPool2d(k, s, pad, ceil_mode=ceil)], [{}])
            if opts.get("divisor_override") is not None or len(args) > 3:
                return Unsupported(f"{what} with divisor_override or extra positional arguments")
            return Convert([AvgPool2d(k, s, pad, bool(opts.get("count_include_pad", True)), ceil_mode=ceil)], [{}])
        if target is F.dropout:
            names = ("p", "training", "inplace")
            opts = dict(zip(names, args))
            opts.update(kwargs)
            return Convert([Dropout(float(opts.get("p", 0.5)))], [{}], inplace=bool(opts.get("inplace", False)))
        if target is torch.flatten or target == "flatten":
            start = args[0] if args else kwargs.get("start_dim", 0)
            end = args[1] if len(args) > 1 else kwargs.get("end_dim", -1)
            return _flatten(start, end, in_shape, fn_name(target))
    except ValueError as e:
        return Unsupported(str(e))
    return None


def flatten_view(dims: list[Any], in_shape: Shape | None, is_batch: Callable[[Any], bool]) -> Convert | Unsupported:
    """``x.view(x.size(0), -1)``, ``x.reshape(b, n)`` or ``x.view(-1, n)``: a flatten from dim 1."""
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = list(dims[0])
    if len(dims) == 2 and (is_batch(dims[0]) or dims[0] == -1):
        n = dims[1]
        if n == -1 and is_batch(dims[0]):
            return Convert([Flatten()], [{}])
        if isinstance(n, int) and in_shape is not None and n == math.prod(in_shape):
            return Convert([Flatten()], [{}])
    return Unsupported(f"view/reshape to {dims!r} (only flattening to (batch, -1) is supported)")
