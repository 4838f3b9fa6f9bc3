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

import operator
import re
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import fx, nn

from .errors import ImportUnsupported, MorphnasError, SpecError
from .graph import Network
from .import_rules import (ADD, ADD_METHODS, MUL, MUL_METHODS, NOOP_METHODS, Convert, Unsupported,
                           convert_activation_function, convert_module, convert_pool_function, flatten_view,
                           fn_name)
from .layers import Flatten, GlobalAvgPool, Identity, LayerSpec, Shape


@dataclass
class _Blob:
    owner: fx.Node | None      # the node whose value the blob is (None for the input)
    shape: Shape | None        # None when an unsupported op produced it
    hint: str


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


class _ShapeOf:
    """``x.shape`` / ``x.size()`` of a blob."""


@dataclass
class _Builder:
    input_shape: Shape
    blobs: list[_Blob] = field(default_factory=list)
    parent: list[int] = field(default_factory=list)
    edges: list[_PendingEdge] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
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
    try:
        gm = fx.symbolic_trace(module)
    except Exception as e:  # fx raises many types (TraceError, TypeError, ...) for data-dependent code
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ImportUnsupported([f"code torch.fx cannot trace ({type(e).__name__}: {first})"]) from None
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
            b.unsupported.append(f"direct use of parameter/buffer self.{node.target}")
            val[node] = _B(b.new_blob(node, None, node.name))
        else:
            _visit(gm, node, val, b, order)
    if b.unsupported:
        raise ImportUnsupported(b.unsupported)
    result = out_node.args[0] if out_node is not None else None
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
    # The mapped values are the importer's own (_B, _Batch, _ShapeOf, constants), not fx Arguments.
    args: list[Any] = list(fx.node.map_arg(node.args, lambda n: val[n]))
    kwargs: dict[str, Any] = dict(fx.node.map_arg(node.kwargs, lambda n: val[n]))
    tensor_args = [a for a in node.args if isinstance(a, fx.Node) and isinstance(val[a], _B)]
    scope = _scope(node)

    def shape_of(v: Any) -> Shape | None:
        return b.blobs[b.find(v.i)].shape if isinstance(v, _B) else None

    def fail(what: str) -> None:
        b.unsupported.append(what)
        val[node] = _B(b.new_blob(node, None, node.name))

    conv: Convert | Unsupported | None
    if node.op == "call_module":
        qualname = cast(str, node.target)   # fx types targets as str | callable; call_module's are names
        mod = gm.get_submodule(qualname)
        if len(node.args) != 1 or node.kwargs or not isinstance(args[0], _B):
            return fail(f"{qualname} ({type(mod).__name__}) called with {len(node.args)} arguments")
        conv = convert_module(mod, shape_of(args[0]))
        return _emit(b, node, val, conv, args[0], qualname, order, name=qualname)
    target = node.target
    name = f"{scope}.{node.name}" if scope else node.name
    if node.op == "call_method" and target == "size":
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        val[node] = _ShapeOf() if dim is None else (_Batch() if dim == 0 else dim)
        if dim not in (None, 0):
            return fail(f"Tensor.size({dim}) (only the batch size x.size(0) inside a flattening view)")
        return
    if target is getattr and len(args) == 2 and args[1] == "shape" and isinstance(args[0], _B):
        val[node] = _ShapeOf()
        return
    if target is operator.getitem and isinstance(args[0], _ShapeOf):
        val[node] = _Batch() if args[1] == 0 else None
        if args[1] != 0:
            return fail(f"shape[{args[1]!r}] (only the batch size inside a flattening view)")
        return
    if any(isinstance(a, (_Batch, _ShapeOf)) for a in args) and target not in ("view", "reshape", torch.reshape):
        return fail(f"{fn_name(target)} on a tensor's shape")
    if not tensor_args:  # e.g. torch.cat([a, b]): tensors inside a list
        return fail(fn_name(target))
    x = args[0]
    if target in ADD or (node.op == "call_method" and target in ADD_METHODS):
        return _add(b, node, val, args, kwargs, scope, order)
    if target in MUL or (node.op == "call_method" and target in MUL_METHODS) or target is operator.truediv:
        nums = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        if (len(args) != 2 or len(nums) != 1 or kwargs or len(tensor_args) != 1
                or (target is operator.truediv and not isinstance(args[0], _B))):
            return fail(f"{fn_name(target)} of two tensors (only scaling by a constant)")
        scale = float(nums[0]) if target is not operator.truediv else 1.0 / float(nums[0])
        t = next(a for a in args if isinstance(a, _B))
        conv = Convert([Identity(scale)], [{}], inplace=target in (operator.imul, "mul_"))
        return _emit(b, node, val, conv, t, name, order, name=name)
    if not isinstance(x, _B):
        return fail(f"{fn_name(target)} whose first argument is not a tensor")
    if node.op == "call_method" and target in NOOP_METHODS:
        return _emit(b, node, val, Convert(), x, name, order, name=name)
    if node.op == "call_method" and target in ("view", "reshape") or target is torch.reshape:
        dims = list(args[1:]) + ([kwargs["shape"]] if "shape" in kwargs else [])
        conv = flatten_view(dims, shape_of(x), lambda d: isinstance(d, _Batch))
        return _emit(b, node, val, conv, x, name, order, name=name)
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


def _emit(b: _Builder, node: fx.Node, val: dict, conv: Convert | Unsupported, ref: _B, hint: str,
          order: dict, name: str) -> None:
    if isinstance(conv, Unsupported):
        b.unsupported.append(f"{conv.reason} at {name!r}" if name not in conv.reason else conv.reason)
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
                     and len(operand.users) == 1)
        if mergeable:
            b.parent[b.find(a.i)] = dst  # the producer writes straight into the sum
        else:
            b.edges.append(_PendingEdge(f"{scope}.shortcut" if scope else f"{node.name}_shortcut",
                                        b.find(a.i), dst, Identity(), {}))
            shortcuts.append(len(b.edges) - 1)
    b.adds.append((scope, dst, shortcuts))
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
