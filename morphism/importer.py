"""Import a user's ``nn.Module`` into the IR by ``torch.fx`` symbolic tracing.

Each traced leaf module becomes an edge named by its module path, so the IR's state-dict keys
equal the module's (``layer1.0.conv1.weight`` for torchvision). A module called twice (torchvision's
shared ``relu``) gets ``<path>_1``, ``<path>_2`` (a shared module with weights gets a copy of
them per call: IR edges own their tensors); parameter-free functional calls are named
``<enclosing module>.<fx node name>``. ``a + b`` becomes a blob with both producers as in-edges
when a producer feeds only the sum; otherwise (e.g. a residual shortcut reading the block input)
an identity edge ``<block>.shortcut`` carries the operand. Unsupported operations are collected
over the whole graph and reported together by name (:class:`ImportUnsupported`).

After building, the import is checked numerically: the IR and the module (both in eval mode,
the module's flags restored afterwards) must agree on a random batch.
"""
from __future__ import annotations

import copy
import operator
import re
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import fx, nn

from .errors import ImportUnsupported, MorphnasError, SpecError
from .graph import Network
from .import_rules import (ADD, ADD_METHODS, MUL, MUL_METHODS, NOOP_METHODS, Convert, Unsupported,
                           convert_activation_function, convert_module, convert_pool_function, flatten_view,
                           fn_name)
from .joins import CONCAT, MUL as MUL_JOIN, SUM, join_shape
from .layers import Activation, Conv2d, Dropout, Flatten, GlobalAvgPool, Identity, LayerSpec, Shape
from .layers_extra import ChannelLayerNorm, ChannelShuffle, ChannelSlice, LayerScale, StochasticDepth


@dataclass
class _Blob:
    owner: fx.Node | None      # the node whose value the blob is (None for the input)
    shape: Shape | None        # None when an unsupported op produced it
    hint: str
    join: str = SUM            # how the blob's in-edges combine (joins.py)
    parts: list[int] = field(default_factory=list)   # a concat's in-edges (pending edge ids) in order


@dataclass
class _PendingEdge:
    base: str
    src: int
    dst: int
    layer: LayerSpec
    params: dict[str, torch.Tensor]


@dataclass(frozen=True)
class _B:
    """A reference to a blob (a distinct type: traced code passes plain ints as constants)."""

    i: int


class _Batch:
    """The batch size (``x.size(0)``, ``x.shape[0]``): only meaningful inside a flattening view."""

    def __repr__(self) -> str:
        return "batch"


@dataclass(frozen=True)
class _ShapeOf:
    """``x.shape`` / ``x.size()`` of a blob: the batch, then the blob's (static) sizes."""

    shape: Shape | None


@dataclass(frozen=True)
class _Param:
    """A parameter or buffer read directly (``self.layer_scale``, LayerNorm2d's ``self.weight``)."""

    path: str
    tensor: torch.Tensor


@dataclass(frozen=True)
class _Perm:
    """A channels-last view ``x.permute(0, 2, 3, 1)`` of blob ``i`` (ConvNeXt): per-pixel layers act on it."""

    i: int


@dataclass(frozen=True)
class _Chunks:
    """``x.chunk(n, 1)`` / ``x.split(s, 1)`` of blob ``i``: the channel ranges its items select."""

    i: int
    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class _Grouped:
    """``x.view(b, g, C // g, H, W)`` of blob ``i``; ``shuffled`` after ``transpose(1, 2)``."""

    i: int
    groups: int
    shuffled: bool = False


@dataclass
class _Builder:
    input_shape: Shape
    blobs: list[_Blob] = field(default_factory=list)
    parent: list[int] = field(default_factory=list)
    edges: list[_PendingEdge] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)   # in graph order: the first one is reported
    adds: list[tuple[str, int, list[int]]] = field(default_factory=list)  # (scope, sum blob, shortcut edge ids)

    def new_blob(self, owner: fx.Node | None, shape: Shape | None, hint: str) -> int:
        self.blobs.append(_Blob(owner, shape, hint))
        self.parent.append(len(self.parent))
        return len(self.blobs) - 1

    def find(self, b: int) -> int:
        while self.parent[b] != b:
            self.parent[b] = self.parent[self.parent[b]]
            b = self.parent[b]
        return b


def from_torch(module: nn.Module, input_shape: Shape, verify: bool = True, seed: int = 0) -> Network:
    """The IR network computing ``module`` on inputs of ``input_shape`` (no batch dimension).

    ``module`` is not modified. With ``verify`` the result is compared with the module on a random
    batch (eval mode) and a mismatch raises :class:`MorphnasError`.
    """
    if not isinstance(module, nn.Module):
        raise MorphnasError(f"from_torch needs an nn.Module, got {type(module).__name__}")
    input_shape = tuple(int(s) for s in input_shape)
    if not input_shape or min(input_shape) < 1:
        raise MorphnasError(f"input_shape must be positive sizes without the batch dimension, got {input_shape}")
    # Trace a copy in eval mode: train-only branches (GoogLeNet's aux heads, stochastic depth) are
    # not part of the function the IR must compute, and the caller's module stays untouched.
    try:
        module = copy.deepcopy(module)
    except Exception:  # an uncopyable module: trace it in place, restoring its flags afterwards
        pass
    flags = {m: m.training for m in module.modules()}
    try:
        module.eval()
        gm = fx.symbolic_trace(module)
    except Exception as e:  # fx raises many types (TraceError, TypeError, ...) for data-dependent code
        first = _plain((str(e).strip().splitlines() or [type(e).__name__])[0])
        raise ImportUnsupported([f"code torch.fx cannot trace ({type(e).__name__}: {first})"]) from None
    finally:
        for m, t in flags.items():
            m.training = t
    gm.graph.eliminate_dead_code()
    b = _Builder(input_shape)
    val: dict[fx.Node, Any] = {}
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    out_node = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if b.blobs:  # the input is blob 0; the IR has exactly one input
                b.unsupported.append(f"a second input argument {node.target!r}")
                val[node] = _B(b.new_blob(node, None, node.name))
            else:
                val[node] = _B(b.new_blob(None, input_shape, "input"))
        elif node.op == "output":
            out_node = node
        elif node.op == "get_attr":
            path = cast(str, node.target)
            try:
                val[node] = _Param(path, _fetch_attr(gm, path).detach().clone())
            except (AttributeError, TypeError):
                b.unsupported.append(f"direct use of attribute self.{path}")
                val[node] = _B(b.new_blob(node, None, node.name))
        else:
            _visit(gm, node, val, b, order)
    if b.unsupported:
        raise ImportUnsupported([_plain(u, 400) for u in b.unsupported])
    result = out_node.args[0] if out_node is not None else None
    if isinstance(result, fx.Node) and isinstance(val.get(result), _Perm):
        raise ImportUnsupported([f"a model whose output is channels-last (permuted) at {result.name!r}"])
    if not isinstance(result, fx.Node) or not isinstance(val.get(result), _B):
        raise ImportUnsupported([f"a model output that is not a single tensor ({type(result).__name__})"])
    net = _build(b, b.find(val[result].i), module)
    if verify:
        _verify(module, net, seed)
    return net


# ------------------------------------------------------------------------------------ visiting
def _scope(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack.values()))[0] if stack else ""


def _visit(gm: fx.GraphModule, node: fx.Node, val: dict, b: _Builder, order: dict) -> None:
    # map_arg also reaches nodes nested in lists (view(x, [x.size(0), -1]), cat([a, b])).
    # The mapped values are the importer's own (_B, _Batch, _ShapeOf, _Param, ...), not fx Arguments.
    args: list[Any] = list(fx.node.map_arg(node.args, lambda n: val[n]))
    kwargs: dict[str, Any] = dict(fx.node.map_arg(node.kwargs, lambda n: val[n]))
    tensor_args = [a for a in node.args if isinstance(a, fx.Node) and isinstance(val[a], _B)]
    scope = _scope(node)
    where = f" at {scope!r}" if scope else " at the top level"

    def shape_of(v: Any) -> Shape | None:
        return b.blobs[b.find(v.i)].shape if isinstance(v, (_B, _Perm, _Chunks, _Grouped)) else None

    def fail(what: str) -> None:
        params = [a.path for a in list(args) + list(kwargs.values()) if isinstance(a, _Param)]
        reads = f" (reads parameter self.{params[0]})" if params else ""
        b.unsupported.append(f"{what}{reads}{'' if ' at ' in what else where}")
        val[node] = _B(b.new_blob(node, None, node.name))

    conv: Convert | Unsupported | None
    target = node.target
    name = f"{scope}.{node.name}" if scope else node.name
    if node.op == "call_module":
        qualname = cast(str, node.target)   # fx types targets as str | callable; call_module's are names
        mod = gm.get_submodule(qualname)
        if len(node.args) != 1 or node.kwargs or not isinstance(args[0], (_B, _Perm)):
            return fail(f"{qualname} ({type(mod).__name__}) called with {len(node.args)} arguments at {qualname!r}")
        if isinstance(args[0], _Perm):
            return _channels_last_module(b, node, val, mod, args[0], qualname, order, fail)
        conv = convert_module(mod, shape_of(args[0]))
        return _emit(b, node, val, conv, args[0], qualname, order, name=qualname)
    if node.op == "call_method" and target == "size":
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        so = _ShapeOf(shape_of(args[0]))
        val[node] = so if dim is None else _size_item(so, dim)
        if val[node] is None:
            return fail(f"Tensor.size({dim}) of a tensor of unknown shape")
        return
    if target is getattr and len(args) == 2 and args[1] == "shape" and isinstance(args[0], _B):
        val[node] = _ShapeOf(shape_of(args[0]))
        return
    if target is operator.getitem and isinstance(args[0], _ShapeOf):
        val[node] = _size_item(args[0], args[1])
        if val[node] is None:
            return fail(f"shape[{args[1]!r}] (only single sizes of a tensor of known shape)")
        return
    if target is operator.getitem and isinstance(args[0], _Chunks):
        lo, hi = args[0].ranges[args[1]]
        conv = Convert([ChannelSlice(lo, hi)], [{}])
        return _emit(b, node, val, conv, _B(args[0].i), name, order, name=name)
    if node.op == "call_function" and target in _CONST_OPS and not any(
            isinstance(a, (_B, _Perm, _Chunks, _Grouped, _Param, _Batch, _ShapeOf)) for a in args):
        val[node] = None if target is torch._assert else cast(Any, target)(*args)   # static sizes, e.g. C // groups
        return
    if any(isinstance(a, (_Batch, _ShapeOf)) for a in args) and target not in ("view", "reshape", torch.reshape):
        return fail(f"{fn_name(target)} on a tensor's shape")
    if target is torch.cat or target is torch.concat:
        return _join_cat(b, node, val, args, kwargs, name, fail)
    if any(isinstance(a, _Perm) for a in args) or any(isinstance(a, _Perm) for a in kwargs.values()):
        return _channels_last_function(b, node, val, args, kwargs, name, order, fail)
    if any(isinstance(a, _Grouped) for a in args):
        return _shuffle(b, node, val, args, kwargs, name, order, fail)
    if target in MUL or (node.op == "call_method" and target in MUL_METHODS):
        params = [a for a in args if isinstance(a, _Param)]
        if len(args) == 2 and len(params) == 1 and len(tensor_args) == 1 and not kwargs:
            return _layer_scale(b, node, val, params[0], next(a for a in args if isinstance(a, _B)), name, fail)
    if not tensor_args:  # e.g. a function of a parameter alone
        return fail(fn_name(target))
    x = args[0]
    if target in ADD or (node.op == "call_method" and target in ADD_METHODS):
        return _add(b, node, val, args, kwargs, scope, order)
    if target in MUL or (node.op == "call_method" and target in MUL_METHODS) or target is operator.truediv:
        nums = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        if (target is not operator.truediv and len(args) == 2 and len(tensor_args) == 2 and not kwargs
                and all(isinstance(a, _B) for a in args)):
            return _join_mul(b, node, val, args, name, order)
        if (len(args) != 2 or len(nums) != 1 or kwargs or len(tensor_args) != 1
                or (target is operator.truediv and not isinstance(args[0], _B))):
            return fail(f"{fn_name(target)} of two tensors (only scaling by a constant, or a product of maps)")
        scale = float(nums[0]) if target is not operator.truediv else 1.0 / float(nums[0])
        t = next(a for a in args if isinstance(a, _B))
        conv = Convert([Identity(scale)], [{}], inplace=target in (operator.imul, "mul_"))
        return _emit(b, node, val, conv, t, name, order, name=name)
    if not isinstance(x, _B):
        return fail(f"{fn_name(target)} whose first argument is not a tensor")
    if node.op == "call_method" and target in NOOP_METHODS:
        return _emit(b, node, val, Convert(), x, name, order, name=name)
    if target in (torch.permute, "permute"):
        dims = list(args[1:]) if not (len(args) == 2 and isinstance(args[1], (list, tuple))) else list(args[1])
        dims = dims or list(kwargs.get("dims", []))
        if [d % 4 for d in dims] == [0, 2, 3, 1] and len(shape_of(x) or ()) == 3:
            val[node] = _Perm(x.i)
            return
        return fail(f"{fn_name(target)}{tuple(dims)} (only to channels-last (0, 2, 3, 1) and back)")
    if target in (torch.chunk, "chunk", torch.split, "split"):
        return _chunks(b, node, val, args, kwargs, shape_of(x), fail)
    if node.op == "call_method" and target in ("view", "reshape") or target is torch.reshape:
        dims = list(args[1:]) + ([kwargs["shape"]] if "shape" in kwargs else [])
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = list(dims[0])
        shp = shape_of(x)
        if (len(dims) == 5 and isinstance(dims[0], _Batch) and shp is not None and len(shp) == 3
                and all(isinstance(d, int) for d in dims[1:]) and dims[1] * dims[2] == shp[0]
                and tuple(dims[3:]) == shp[1:]):
            val[node] = _Grouped(x.i, dims[1])
            return
        conv = flatten_view(dims, shp, lambda d: isinstance(d, _Batch))
        return _emit(b, node, val, conv, x, name, order, name=name)
    if _is_stochastic_depth(target):
        opts = dict(zip(("p", "mode", "training"), args[1:]))
        opts.update(kwargs)
        conv = Convert([StochasticDepth(float(opts.get("p", 0.0)), str(opts.get("mode", "row")))], [{}])
        return _emit(b, node, val, conv, x, scope or name, order, name=scope or name)
    conv = convert_activation_function(target, tuple(args[1:]), kwargs)
    if conv is None:
        conv = convert_pool_function(target, tuple(args[1:]), kwargs, shape_of(x))
    if conv is None and (target is torch.mean or (node.op == "call_method" and target == "mean")):
        mean_dims = args[1] if len(args) > 1 else kwargs.get("dim")
        keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
        shp = shape_of(x)
        if (shp is not None and len(shp) == 3 and isinstance(mean_dims, (tuple, list))
                and sorted(d % 4 for d in mean_dims) == [2, 3]):
            conv = Convert([GlobalAvgPool()] + ([] if keep else [Flatten()]), [{}] * (1 if keep else 2))
        else:
            conv = Unsupported(f"{fn_name(target)}(dim={mean_dims!r}) (only the spatial mean over dims (2, 3))")
    if conv is None:
        what = fn_name(target) if node.op == "call_function" else f"Tensor.{target}"
        return fail(what)
    return _emit(b, node, val, conv, x, name, order, name=name)


# Functions of static sizes (never of tensors) the importer evaluates while tracing shape code.
_CONST_OPS: set[Any] = {operator.floordiv, operator.mul, operator.add, operator.sub, operator.truediv, operator.mod,
              operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge, torch._assert}


def _size_item(shp: _ShapeOf, dim: Any) -> Any:
    """``x.shape[dim]``: the batch marker for 0, the static size otherwise (None if unknown)."""
    if not isinstance(dim, int) or shp.shape is None or not -len(shp.shape) - 1 <= dim <= len(shp.shape):
        return None
    dim = dim % (len(shp.shape) + 1)
    return _Batch() if dim == 0 else shp.shape[dim - 1]


def _fetch_attr(gm: nn.Module, path: str) -> torch.Tensor:
    obj: Any = gm
    for part in path.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, torch.Tensor):
        raise TypeError(path)
    return obj


def _is_stochastic_depth(target: Any) -> bool:
    return (getattr(target, "__name__", "") == "stochastic_depth"
            and str(getattr(target, "__module__", "")).startswith("torchvision"))


def _plain(text: str, limit: int = 160) -> str:
    """An error text without internal reprs (``<... object at 0x...>``), cut to ``limit`` characters."""
    text = re.sub(r"<([\w.]+) object at 0x[0-9a-fA-F]+>", r"\1", text)
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _emit(b: _Builder, node: fx.Node, val: dict, conv: Convert | Unsupported, ref: _B, hint: str,
          order: dict, name: str) -> None:
    if isinstance(conv, Unsupported):
        b.unsupported.append(conv.reason if f"{name!r}" in conv.reason else f"{conv.reason} at {name!r}")
        val[node] = _B(b.new_blob(node, None, hint))
        return
    if conv.inplace:
        _check_inplace(b, node, order, name)
    if not conv.layers:
        val[node] = ref  # a no-op: the same blob
        return
    shape = b.blobs[b.find(ref.i)].shape
    cur = ref.i
    for i, (layer, params) in enumerate(zip(conv.layers, conv.params)):
        if shape is not None:
            try:
                shape = tuple(layer.out_shape(shape))
            except SpecError as e:
                raise MorphnasError(f"import: {name!r} does not fit its input (shape {b.blobs[b.find(cur)].shape}): "
                                    f"{e}; check input_shape") from None
        base = name if i == 0 else f"{name}_{layer.kind}"
        dst = b.new_blob(node if i == len(conv.layers) - 1 else None, shape, base)
        b.edges.append(_PendingEdge(base, cur, dst, layer, params))
        cur = dst
    val[node] = _B(cur)


def _check_inplace(b: _Builder, node: fx.Node, order: dict, name: str) -> None:
    """An in-place op changes its input for every later reader; the IR (out of place) cannot."""
    first = node.args[0] if node.args else None
    if isinstance(first, fx.Node):
        later = [u for u in first.users if u is not node and order[u] > order[node]]
        if later:
            b.unsupported.append(f"in-place {name!r} modifies a tensor that {later[0].name!r} reads afterwards")


def _add(b: _Builder, node: fx.Node, val: dict, args: list, kwargs: dict, scope: str, order: dict) -> None:
    name = f"{scope}.{node.name}" if scope else node.name
    if kwargs.get("alpha", 1) != 1 or len(args) != 2 or not all(isinstance(a, _B) for a in args):
        b.unsupported.append(f"{fn_name(node.target)} at {name!r} (only tensor + tensor)")
        val[node] = _B(b.new_blob(node, None, name))
        return
    if node.target in (operator.iadd, "add_"):
        _check_inplace(b, node, order, name)
    sa, sb = (b.blobs[b.find(a.i)].shape for a in args)
    if sa is not None and sb is not None and sa != sb:
        raise MorphnasError(f"import: {name!r} adds tensors of shapes {sa} and {sb} (broadcasting is not supported)")
    dst = b.new_blob(node, sa if sa is not None else sb, f"{scope}.sum" if scope else name)
    repeated = args[0] == args[1]
    shortcuts = []
    for operand, a in zip(node.args, args):
        blob = b.blobs[b.find(a.i)]
        mergeable = (not repeated and blob.owner is operand and isinstance(operand, fx.Node)
                     and len(operand.users) == 1 and blob.join == SUM)
        if mergeable:
            b.parent[b.find(a.i)] = dst  # the producer writes straight into the sum
        else:
            b.edges.append(_PendingEdge(f"{scope}.shortcut" if scope else f"{node.name}_shortcut",
                                        b.find(a.i), dst, Identity(), {}))
            shortcuts.append(len(b.edges) - 1)
    b.adds.append((scope, dst, shortcuts))
    val[node] = _B(dst)


# ------------------------------------------------------------------ channels-last, shuffles, chunks
_PER_PIXEL = (Activation, Dropout, Identity)   # layers that act the same on any layout


def _channels_last_module(b: _Builder, node: fx.Node, val: dict, mod: nn.Module, x: _Perm, qualname: str,
                          order: dict, fail: Any) -> None:
    """A leaf module on ``x.permute(0, 2, 3, 1)``: LayerNorm over C, Linear over C (a 1x1 conv) or an
    element-wise layer; the result stays channels-last."""
    shape = b.blobs[b.find(x.i)].shape
    c = shape[0] if shape else None
    conv: Convert | Unsupported
    if type(mod) is nn.LayerNorm:
        if c is None or tuple(mod.normalized_shape) != (c,) or not mod.elementwise_affine or mod.bias is None:
            return fail(f"LayerNorm{tuple(mod.normalized_shape)} on a channels-last map of {c} channels "
                        f"at {qualname!r} (only an affine LayerNorm over the channels)")
        conv = Convert([ChannelLayerNorm(int(c), float(mod.eps))],
                       [{"weight": mod.weight.detach().clone(), "bias": mod.bias.detach().clone()}])
    elif type(mod) is nn.Linear:
        if mod.in_features != c:
            return fail(f"Linear({mod.in_features}) on a channels-last map of {c} channels at {qualname!r}")
        p = {"weight": mod.weight.detach().clone().view(mod.out_features, mod.in_features, 1, 1)}
        if mod.bias is not None:
            p["bias"] = mod.bias.detach().clone()
        conv = Convert([Conv2d(mod.in_features, mod.out_features, 1, bias=mod.bias is not None)], [p])
    else:
        conv = convert_module(mod, shape)
        if isinstance(conv, Convert) and not all(isinstance(layer, _PER_PIXEL) for layer in conv.layers):
            return fail(f"{type(mod).__name__} on a channels-last (permuted) tensor at {qualname!r}")
    _emit(b, node, val, conv, _B(x.i), qualname, order, name=qualname)
    if isinstance(val[node], _B) and b.blobs[b.find(val[node].i)].shape is not None:
        val[node] = _Perm(val[node].i)


def _channels_last_function(b: _Builder, node: fx.Node, val: dict, args: list, kwargs: dict, name: str,
                            order: dict, fail: Any) -> None:
    """A function on a channels-last view: permute back, ``F.layer_norm`` over C with its module's
    parameters (LayerNorm2d), or an element-wise activation."""
    target, x = node.target, args[0]
    scope = _scope(node)
    if not isinstance(x, _Perm):
        return fail(f"{fn_name(target)} mixing channels-last and channels-first tensors")
    if target in (torch.permute, "permute"):
        dims = list(args[1]) if len(args) == 2 and isinstance(args[1], (list, tuple)) else list(args[1:])
        dims = dims or list(kwargs.get("dims", []))
        if [d % 4 for d in dims] == [0, 3, 1, 2]:
            val[node] = _B(x.i)
            return
        return fail(f"{fn_name(target)}{tuple(dims)} of a channels-last tensor (only back with (0, 3, 1, 2))")
    if node.op == "call_method" and target in NOOP_METHODS:
        val[node] = x
        return
    shape = b.blobs[b.find(x.i)].shape
    c = shape[0] if shape else None
    if target is F.layer_norm:
        opts = dict(zip(("normalized_shape", "weight", "bias", "eps"), args[1:]))
        opts.update(kwargs)
        w, bias = opts.get("weight"), opts.get("bias")
        if (tuple(opts.get("normalized_shape", ())) != (c,) or not isinstance(w, _Param)
                or not isinstance(bias, _Param)):
            return fail(f"{fn_name(target)} on a channels-last map (only affine over the {c} channels)")
        edge = scope or name
        conv: Convert | Unsupported | None = Convert(
            [ChannelLayerNorm(int(c or 0), float(opts.get("eps", 1e-5)))],
            [{"weight": w.tensor, "bias": bias.tensor}])
    else:
        edge = name
        conv = convert_activation_function(target, tuple(args[1:]), kwargs)
        if conv is None:
            return fail(f"{fn_name(target)} on a channels-last (permuted) tensor")
    _emit(b, node, val, cast("Convert | Unsupported", conv), _B(x.i), edge, order, name=edge)
    if isinstance(val[node], _B) and b.blobs[b.find(val[node].i)].shape is not None:
        val[node] = _Perm(val[node].i)


def _shuffle(b: _Builder, node: fx.Node, val: dict, args: list, kwargs: dict, name: str, order: dict,
             fail: Any) -> None:
    """ShuffleNet's ``view(b, g, C/g, H, W) -> transpose(1, 2) -> contiguous -> view(b, C, H, W)``."""
    target, x = node.target, args[0]
    if not isinstance(x, _Grouped):
        return fail(f"{fn_name(target)} of a grouped (5-d) view")
    if target in (torch.transpose, "transpose") and not x.shuffled and sorted(args[1:3]) == [1, 2]:
        val[node] = _Grouped(x.i, x.groups, True)
        return
    if node.op == "call_method" and target in NOOP_METHODS:
        val[node] = x
        return
    if x.shuffled and (target in ("view", "reshape") or target is torch.reshape):
        dims = list(args[1:])
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = list(dims[0])
        shape = b.blobs[b.find(x.i)].shape or ()
        if len(dims) == 4 and isinstance(dims[0], _Batch) and dims[1] in (shape[0], -1) and tuple(dims[2:]) == shape[1:]:
            return _emit(b, node, val, Convert([ChannelShuffle(x.groups)], [{}]), _B(x.i), name, order, name=name)
    return fail(f"{fn_name(target)} of a grouped (5-d) view (only a channel shuffle: transpose(1, 2), view back)")


def _chunks(b: _Builder, node: fx.Node, val: dict, args: list, kwargs: dict, shape: Shape | None, fail: Any) -> None:
    """``chunk(n, dim=1)`` / ``split(size or sizes, dim=1)`` of a feature map: items become slices."""
    target = node.target
    is_chunk = target in (torch.chunk, "chunk")
    arg = args[1] if len(args) > 1 else kwargs.get("chunks" if is_chunk else "split_size_or_sections",
                                                   kwargs.get("split_size"))
    dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
    if shape is None or len(shape) != 3 or dim not in (1, -3):
        return fail(f"{fn_name(target)}(dim={dim}) (only along the channels of a feature map)")
    c = shape[0]
    if is_chunk and isinstance(arg, int) and arg > 0:
        size = -(-c // arg)
        sizes = [min(size, c - i) for i in range(0, c, size)]
    elif not is_chunk and isinstance(arg, int) and arg > 0:
        sizes = [min(arg, c - i) for i in range(0, c, arg)]
    elif not is_chunk and isinstance(arg, (list, tuple)) and sum(arg) == c:
        sizes = list(arg)
    else:
        return fail(f"{fn_name(target)}({arg!r}) of {c} channels")
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    val[node] = _Chunks(args[0].i, tuple((s, s + n) for s, n in zip(starts, sizes)))
    for user in node.users:
        if user.target is not operator.getitem:
            val[node] = None
            return fail(f"{fn_name(target)} whose result is used other than item by item")


def _layer_scale(b: _Builder, node: fx.Node, val: dict, p: _Param, x: _B, name: str, fail: Any) -> None:
    """``self.gamma * x`` with ``gamma`` of shape (C, 1, 1): a LayerScale edge named by the parameter."""
    shape = b.blobs[b.find(x.i)].shape
    if shape is None or len(shape) != 3 or tuple(p.tensor.shape) != (shape[0], 1, 1):
        return fail(f"{fn_name(node.target)} by parameter self.{p.path} of shape {tuple(p.tensor.shape)} "
                    "(only a per-channel (C, 1, 1) layer scale)")
    _emit(b, node, val, Convert([LayerScale(shape[0])], [{"weight": p.tensor}]), x, p.path, {}, name=p.path)


# ------------------------------------------------------------------------------------------ joins
def _in_count(b: _Builder, root: int) -> int:
    return sum(1 for e in b.edges if b.find(e.dst) == root)


def _operand_edge(b: _Builder, node: fx.Node, operand: Any, a: _B, repeated: bool, dst: int, base: str) -> int:
    """The pending edge carrying ``operand`` into join blob ``dst``: its producer's edge when the
    producer feeds only this join (the producer then writes straight into the join), else a new
    identity edge from the operand's blob."""
    root = b.find(a.i)
    blob = b.blobs[root]
    if (not repeated and isinstance(operand, fx.Node) and blob.owner is operand and len(operand.users) == 1
            and blob.join == SUM and root != b.find(0) and _in_count(b, root) == 1):
        idx = next(i for i, e in enumerate(b.edges) if b.find(e.dst) == root)
        b.parent[root] = dst
        return idx
    b.edges.append(_PendingEdge(base, root, dst, Identity(), {}))
    return len(b.edges) - 1


def _join_cat(b: _Builder, node: fx.Node, val: dict, args: list, kwargs: dict, name: str, fail: Any) -> None:
    parts = args[0] if args else kwargs.get("tensors")
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    operands = node.args[0] if node.args else node.kwargs.get("tensors")
    if not isinstance(parts, (list, tuple)) or not parts or not all(isinstance(p, _B) for p in parts):
        return fail(f"{fn_name(node.target)} of values that are not feature maps")
    shapes = [b.blobs[b.find(p.i)].shape for p in parts]
    if dim not in (1, -3) or any(s is None or len(s) != 3 for s in shapes):
        return fail(f"{fn_name(node.target)}(dim={dim}) (only along the channels of feature maps)")
    try:
        shape = join_shape(CONCAT, cast("list[Shape]", shapes))
    except SpecError as e:
        raise MorphnasError(f"import: {name!r} {e}") from None
    dst = b.new_blob(node, shape, name)
    b.blobs[dst].join = CONCAT
    roots = [b.find(p.i) for p in parts]
    for i, (operand, p) in enumerate(zip(cast(list, operands), parts)):
        b.blobs[dst].parts.append(_operand_edge(b, node, operand, p, roots.count(b.find(p.i)) > 1, dst,
                                                f"{name}_in{i}"))
    val[node] = _B(dst)


def _join_mul(b: _Builder, node: fx.Node, val: dict, args: list, name: str, order: dict) -> None:
    """``a * b`` of two maps (a gate): a mul blob; shapes broadcast (C, 1, 1) against (C, H, W)."""
    shapes = [b.blobs[b.find(a.i)].shape for a in args]
    shape = None
    if all(s is not None for s in shapes):
        try:
            shape = join_shape(MUL_JOIN, cast("list[Shape]", shapes))
        except SpecError as e:
            raise MorphnasError(f"import: {name!r} {e}") from None
    if node.target in (operator.imul, "mul_"):
        _check_inplace(b, node, order, name)
    dst = b.new_blob(node, shape, name)
    b.blobs[dst].join = MUL_JOIN
    repeated = args[0] == args[1]
    for i, (operand, a) in enumerate(zip(node.args, args)):
        _operand_edge(b, node, operand, a, repeated, dst, f"{name}_in{i}")
    val[node] = _B(dst)


# ------------------------------------------------------------------------------------ building
def _build(b: _Builder, out_root: int, module: nn.Module) -> Network:
    in_root = b.find(0)
    if out_root == in_root:
        raise ImportUnsupported(["a model whose output is its input"])
    net = Network(b.input_shape)
    names = {in_root: net.input_blob, out_root: net.output_blob}

    def blob_name(i: int) -> str:
        r = b.find(i)
        if r not in names:
            names[r] = net.add_blob(net.fresh_name(_clean(b.blobs[r].hint), blob=True))
        return names[r]

    edge_names = []
    renamed = {}
    for e in b.edges:
        base = _clean(e.base)
        n = net.fresh_name(base)
        if base != e.base:
            renamed[n] = e.base
        net.add_edge(blob_name(e.src), blob_name(e.dst), e.layer, n, params=e.params)
        edge_names.append(n)
    for r, blob in enumerate(b.blobs):
        if blob.join != SUM and b.find(r) == r and r in names:
            net.set_join(names[r], blob.join, [edge_names[i] for i in blob.parts] if blob.join == CONCAT else None)
    net.meta["source"] = f"torch:{type(module).__module__}.{type(module).__qualname__}"
    if renamed:  # module paths the IR cannot spell (e.g. 'block1-0'): new edge name -> original path
        net.meta["renamed"] = renamed
    blocks = _blocks(b, net, names, edge_names)
    if blocks:
        net.meta["blocks"] = blocks
    from .lint import lint
    lint(net)
    return net


def _clean(name: str) -> str:
    """A module path as an IR name: characters other than letters, digits, '_' and '.' become '_'."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", name)


_BLOCK = re.compile(r"^layer(\d+)\.(\d+)$")


def _blocks(b: _Builder, net: Network, names: dict, edge_names: list[str]) -> list[dict]:
    """Residual blocks (an add inside a module scope) in the layout the builders record."""
    blocks = []
    for scope, dst, shortcuts in b.adds:
        if not scope or len(shortcuts) > 1:
            continue
        inside = [n for n in edge_names if n.startswith(scope + ".")]
        if not inside:
            continue
        s = names[b.find(dst)]
        outs = net.out_edges(s)
        out = outs[0].dst if len(outs) == 1 and outs[0].name.startswith(scope + ".") else s
        m = _BLOCK.match(scope)
        blocks.append({"name": scope, "stage": int(m.group(1)) if m else None,
                       "index": int(m.group(2)) if m else None, "in": net.edge(inside[0]).src, "sum": s,
                       "out": out, "shortcut": edge_names[shortcuts[0]] if shortcuts else None})
    return blocks


@torch.no_grad()
def _verify(module: nn.Module, net: Network, seed: int) -> None:
    from .compile import compile_network
    flags = {m: m.training for m in module.modules()}
    try:
        module.eval()
        dtype = net.dtype
        x = torch.randn((2, *net.input_shape), generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64).to(dtype)
        want = module(x)
        got = compile_network(net).eval()(x)
    finally:
        for m, t in flags.items():
            m.training = t
    if not isinstance(want, torch.Tensor) or want.shape != got.shape:
        raise MorphnasError(f"import check: the model's output {getattr(want, 'shape', type(want).__name__)} "
                            f"differs in shape from the imported network's {tuple(got.shape)}")
    scale = want.abs().max().item() or 1.0
    rel = (want - got).abs().max().item() / scale
    tol = 1e-4 if dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-9
    if not rel <= tol:
        raise MorphnasError(f"import check: the imported network differs from the model (relative error "
                            f"{rel:.2e} > {tol:g}); the model probably uses an operation the tracer misread")
