"""Layouts other than NCHW while importing: channels-last views, channel groupings and chunks.

torchvision's ConvNeXt permutes to channels-last (``x.permute(0, 2, 3, 1)``), normalises and applies
linear layers per pixel, then permutes back; ShuffleNet views the channels as (groups, C/groups),
transposes and views back; ``chunk``/``split`` select channel ranges. The IR has NCHW feature maps
only, so each such view is a value of its own that remembers its blob (:class:`Perm`,
:class:`Grouped`, :class:`Chunks`), and only patterns that come back to NCHW become layers:
per-pixel layers on a channels-last view (LayerNorm -> ``channel_layernorm``, Linear -> a 1x1
``conv2d``, element-wise layers as they are), a shuffle -> ``channel_shuffle``, each chunk item ->
``channel_slice``. Anything else on a view is refused with what the pattern allows.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from .import_core import NOOP_METHODS, B, Batch, Call, Handler, Param, Ref, convert_module
from .import_rules import Convert, Unsupported, fn_name
from .kinds.activation import from_function as activation_function
from .kinds.flatten import flatten_view
from .layers import Activation, Conv2d, Dropout, Identity
from .layers_extra import ChannelLayerNorm, ChannelShuffle, ChannelSlice

_PER_PIXEL = (Activation, Dropout, Identity)   # layers that act the same on any layout


@dataclass(frozen=True, repr=False)
class Perm(Ref):
    """A channels-last view ``x.permute(0, 2, 3, 1)`` of blob ``i`` (ConvNeXt): per-pixel layers act on it."""


@dataclass(frozen=True, repr=False)
class Chunks(Ref):
    """``x.chunk(n, 1)`` / ``x.split(s, 1)`` of blob ``i``: the channel ranges its items select."""

    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True, repr=False)
class Grouped(Ref):
    """``x.view(b, g, C // g, H, W)`` of blob ``i``; ``shuffled`` after ``transpose(1, 2)``."""

    groups: int
    shuffled: bool = False


def view_handler(c: Call) -> Handler | None:
    """The handler of a call on a layout view, if an operand is one (channels-last first)."""
    if any(isinstance(a, Perm) for a in c.args) or any(isinstance(a, Perm) for a in c.kwargs.values()):
        return channels_last_function
    if any(isinstance(a, Grouped) for a in c.args):
        return shuffle
    return None


# ------------------------------------------------------------------------- views of a plain map
def permute(c: Call) -> None:
    """``x.permute(0, 2, 3, 1)`` of a feature map: a channels-last view."""
    args, x = c.args, c.args[0]
    dims = list(args[1:]) if not (len(args) == 2 and isinstance(args[1], (list, tuple))) else list(args[1])
    dims = dims or list(c.kwargs.get("dims", []))
    if [d % 4 for d in dims] == [0, 2, 3, 1] and len(c.shape_of(x) or ()) == 3:
        c.set(Perm(x.i))
        return
    c.fail(f"{fn_name(c.target)}{tuple(dims)} (only to channels-last (0, 2, 3, 1) and back)")


def view(c: Call) -> None:
    """``view``/``reshape`` of a feature map: a channel grouping (b, g, C/g, H, W) or a flatten."""
    x = c.args[0]
    dims = list(c.args[1:]) + ([c.kwargs["shape"]] if "shape" in c.kwargs else [])
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = list(dims[0])
    shp = c.shape_of(x)
    if (len(dims) == 5 and isinstance(dims[0], Batch) and shp is not None and len(shp) == 3
            and all(isinstance(d, int) for d in dims[1:]) and dims[1] * dims[2] == shp[0]
            and tuple(dims[3:]) == shp[1:]):
        c.set(Grouped(x.i, dims[1]))
        return
    c.emit(flatten_view(dims, shp, lambda d: isinstance(d, Batch)), x, c.name)


def chunks(c: Call) -> None:
    """``chunk(n, dim=1)`` / ``split(size or sizes, dim=1)`` of a feature map: items become slices."""
    args, kwargs, target = c.args, c.kwargs, c.target
    shape = c.shape_of(args[0])
    is_chunk = target in (torch.chunk, "chunk")
    arg = args[1] if len(args) > 1 else kwargs.get("chunks" if is_chunk else "split_size_or_sections",
                                                   kwargs.get("split_size"))
    dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
    if shape is None or len(shape) != 3 or dim not in (1, -3):
        return c.fail(f"{fn_name(target)}(dim={dim}) (only along the channels of a feature map)")
    ch = shape[0]
    if is_chunk and isinstance(arg, int) and arg > 0:
        size = -(-ch // arg)
        sizes = [min(size, ch - i) for i in range(0, ch, size)]
    elif not is_chunk and isinstance(arg, int) and arg > 0:
        sizes = [min(arg, ch - i) for i in range(0, ch, arg)]
    elif not is_chunk and isinstance(arg, (list, tuple)) and sum(arg) == ch:
        sizes = list(arg)
    else:
        return c.fail(f"{fn_name(target)}({arg!r}) of {ch} channels")
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    c.set(Chunks(args[0].i, tuple((s, s + n) for s, n in zip(starts, sizes))))
    for user in c.node.users:
        if user.target is not operator.getitem:
            return c.fail(f"{fn_name(target)} whose result is used other than item by item")


def chunk_item(c: Call) -> None:
    """``parts[k]`` of a chunk/split: a ``channel_slice``."""
    lo, hi = c.args[0].ranges[c.args[1]]
    c.emit(Convert([ChannelSlice(lo, hi)], [{}]), B(c.args[0].i), c.name)


# ------------------------------------------------------------------------------- channels-last
def channels_last_module(c: Call, mod: nn.Module, qualname: str) -> None:
    """A leaf module on ``x.permute(0, 2, 3, 1)``: LayerNorm over C, Linear over C (a 1x1 conv) or an
    element-wise layer; the result stays channels-last."""
    x = c.args[0]
    shape = c.shape_of(x)
    ch = shape[0] if shape else None
    conv: Convert | Unsupported
    if type(mod) is nn.LayerNorm:
        if ch is None or tuple(mod.normalized_shape) != (ch,) or not mod.elementwise_affine or mod.bias is None:
            return c.fail(f"LayerNorm{tuple(mod.normalized_shape)} on a channels-last map of {ch} channels "
                          f"at {qualname!r} (only an affine LayerNorm over the channels)")
        conv = Convert([ChannelLayerNorm(int(ch), float(mod.eps))],
                       [{"weight": mod.weight.detach().clone(), "bias": mod.bias.detach().clone()}])
    elif type(mod) is nn.Linear:
        if mod.in_features != ch:
            return c.fail(f"Linear({mod.in_features}) on a channels-last map of {ch} channels at {qualname!r}")
        p = {"weight": mod.weight.detach().clone().view(mod.out_features, mod.in_features, 1, 1)}
        if mod.bias is not None:
            p["bias"] = mod.bias.detach().clone()
        conv = Convert([Conv2d(mod.in_features, mod.out_features, 1, bias=mod.bias is not None)], [p])
    else:
        conv = convert_module(mod, shape)
        if isinstance(conv, Convert) and not all(isinstance(layer, _PER_PIXEL) for layer in conv.layers):
            return c.fail(f"{type(mod).__name__} on a channels-last (permuted) tensor at {qualname!r}")
    _stay_channels_last(c, conv, x, qualname)


def channels_last_function(c: Call) -> None:
    """A function on a channels-last view: permute back, ``F.layer_norm`` over C with its module's
    parameters (LayerNorm2d), or an element-wise activation."""
    target, args, kwargs, x = c.target, c.args, c.kwargs, c.args[0]
    if not isinstance(x, Perm):
        return c.fail(f"{fn_name(target)} mixing channels-last and channels-first tensors")
    if target in (torch.permute, "permute"):
        dims = list(args[1]) if len(args) == 2 and isinstance(args[1], (list, tuple)) else list(args[1:])
        dims = dims or list(kwargs.get("dims", []))
        if [d % 4 for d in dims] == [0, 3, 1, 2]:
            c.set(B(x.i))
            return
        return c.fail(f"{fn_name(target)}{tuple(dims)} of a channels-last tensor (only back with (0, 3, 1, 2))")
    if c.node.op == "call_method" and target in NOOP_METHODS:
        c.set(x)
        return
    shape = c.shape_of(x)
    ch = shape[0] if shape else None
    if target is F.layer_norm:
        opts = dict(zip(("normalized_shape", "weight", "bias", "eps"), args[1:]))
        opts.update(kwargs)
        w, bias = opts.get("weight"), opts.get("bias")
        if tuple(opts.get("normalized_shape", ())) != (ch,) or not isinstance(w, Param) or not isinstance(bias, Param):
            return c.fail(f"{fn_name(target)} on a channels-last map (only affine over the {ch} channels)")
        edge = c.scope or c.name
        conv: Convert | Unsupported | None = Convert(
            [ChannelLayerNorm(int(ch or 0), float(opts.get("eps", 1e-5)))], [{"weight": w.tensor, "bias": bias.tensor}])
    else:
        edge = c.name
        conv = activation_function(target, tuple(args[1:]), kwargs)
        if conv is None:
            return c.fail(f"{fn_name(target)} on a channels-last (permuted) tensor")
    _stay_channels_last(c, cast("Convert | Unsupported", conv), x, edge)


def _stay_channels_last(c: Call, conv: Convert | Unsupported, x: Perm, name: str) -> None:
    c.emit(conv, B(x.i), name)
    value = c.b.values[c.node]
    if isinstance(value, B) and c.shape_of(value) is not None:
        c.set(Perm(value.i))


# ----------------------------------------------------------------------------------- shuffles
def shuffle(c: Call) -> None:
    """ShuffleNet's ``view(b, g, C/g, H, W) -> transpose(1, 2) -> contiguous -> view(b, C, H, W)``."""
    target, args, x = c.target, c.args, c.args[0]
    if not isinstance(x, Grouped):
        return c.fail(f"{fn_name(target)} of a grouped (5-d) view")
    if target in (torch.transpose, "transpose") and not x.shuffled and sorted(args[1:3]) == [1, 2]:
        c.set(Grouped(x.i, x.groups, True))
        return
    if c.node.op == "call_method" and target in NOOP_METHODS:
        c.set(x)
        return
    if x.shuffled and (target in ("view", "reshape") or target is torch.reshape):
        dims: list[Any] = list(args[1:])
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = list(dims[0])
        shape = c.shape_of(x) or ()
        if len(dims) == 4 and isinstance(dims[0], Batch) and dims[1] in (shape[0], -1) and tuple(dims[2:]) == shape[1:]:
            return c.emit(Convert([ChannelShuffle(x.groups)], [{}]), B(x.i), c.name)
    c.fail(f"{fn_name(target)} of a grouped (5-d) view (only a channel shuffle: transpose(1, 2), view back)")
