"""Import a user's ``nn.Module`` into the IR by ``torch.fx`` symbolic tracing.

Each traced leaf module becomes an edge named by its module path, so the IR's state-dict keys
equal the module's (``layer1.0.conv1.weight`` for torchvision). A module called twice (torchvision's
shared ``relu``) gets ``<path>_1``, ``<path>_2`` (a shared module with weights gets a copy of
them per call: IR edges own their tensors); parameter-free functional calls are named
``<enclosing module>.<fx node name>``. ``a + b`` becomes a blob with both producers as in-edges
when a producer feeds only the sum; otherwise (e.g. a residual shortcut reading the block input)
an identity edge ``<block>.shortcut`` carries the operand. Unsupported operations are collected
over the whole graph and reported together by name (:class:`ImportUnsupported`).

How: :class:`_Importer` walks the traced graph in the manner of ``torch.fx.Interpreter``, one
method per node kind (``placeholder``, ``get_attr``, ``call_module``, ``call_function``,
``call_method``, ``output``). A module call goes by the layout of its input to the module's kind
rule (:mod:`.kinds`) or to :mod:`.import_layout`; a function or method call goes through the
target tables below, stage by stage (:func:`_call`): shape code, concatenation, layout views,
joins, tensor views, then the layer kinds' own rules. After building, the import is checked
numerically: the IR and the module (both in eval mode, the module's flags restored afterwards)
must agree on a random batch.
"""
from __future__ import annotations

import copy
import operator
import re
from typing import Any, cast

import torch
from torch import fx, nn

from . import import_joins as joins
from . import import_layout as layout
from .compile import compile_network
from .errors import ImportUnsupported, MorphnasError
from .graph import Network
from .import_core import (NOOP_METHODS, PASS, B, Batch, Builder, Call, Handler, Param, Ref, ShapeOf, convert_call,
                          convert_module)
from .import_rules import Convert, fn_name
from .import_vit import from_structure, is_structural
from .joins import CONCAT, SUM
from .kinds import imported_module_types
from .layers import Shape
from .lint import lint


def from_torch(module: nn.Module, input_shape: Shape, verify: bool = True, seed: int = 0) -> Network:
    """The IR network computing ``module`` on inputs of ``input_shape`` (no batch dimension).

    ``module`` is not modified. With ``verify`` the result is compared with the module on a random
    batch (eval mode) and a mismatch raises :class:`MorphnasError`. A transformer is also checked on
    a float64 copy (its own dtype above ``PROBE_FLOAT64_MAX_PARAMS``) with its all-zero parameters
    drawn at random (:func:`_probe_copy`: a fresh torchvision ViT's head is zero, which would make the
    first comparison zeros with zeros).
    """
    if not isinstance(module, nn.Module):
        raise MorphnasError(f"from_torch needs an nn.Module, got {type(module).__name__}")
    input_shape = tuple(int(s) for s in input_shape)
    if not input_shape or min(input_shape) < 1:
        raise MorphnasError(f"input_shape must be positive sizes without the batch dimension, got {input_shape}")
    if is_structural(module):   # transformers: read off their modules (import_vit.py), checked like the rest
        net = from_structure(module, input_shape)
        if verify:
            _verify(module, net, seed)
            probe = _probe_copy(module, seed)   # and on a copy where no part of the model can hide
            _verify(probe, from_structure(probe, input_shape), seed,
                    f"on a {str(next(probe.parameters()).dtype).removeprefix('torch.')} copy of the model with "
                    f"its all-zero parameters drawn at random", batch=1)
        return net
    # Trace a copy in eval mode: train-only branches (GoogLeNet's aux heads, stochastic depth) are
    # not part of the function the IR must compute, and the caller's module stays untouched.
    try:
        module = copy.deepcopy(module)
    except Exception:  # an uncopyable module: trace it in place, restoring its flags afterwards
        pass
    flags = {m: m.training for m in module.modules()}
    try:
        module.eval()
        gm = _trace(module)
    except Exception as e:  # fx raises many types (TraceError, TypeError, ...) for data-dependent code
        first = _plain((str(e).strip().splitlines() or [type(e).__name__])[0])
        raise ImportUnsupported([f"code torch.fx cannot trace ({type(e).__name__}: {first})"]) from None
    finally:
        for m, t in flags.items():
            m.training = t
    gm.graph.eliminate_dead_code()
    walk = _Importer(gm, input_shape)
    walk.run()
    b = walk.b
    if b.unsupported:
        raise ImportUnsupported([_plain(u, 400) for u in b.unsupported])
    result = walk.output_node.args[0] if walk.output_node is not None else None
    if isinstance(result, fx.Node) and isinstance(b.values.get(result), layout.Perm):
        raise ImportUnsupported([f"a model whose output is channels-last (permuted) at {result.name!r}"])
    if not isinstance(result, fx.Node) or not isinstance(b.values.get(result), B):
        raise ImportUnsupported([f"a model output that is not a single tensor ({type(result).__name__})"])
    net = _build(b, b.find(b.values[result].i), module)
    if verify:
        _verify(module, net, seed)
    return net


class _Tracer(fx.Tracer):
    """fx's tracer, keeping each module type a layer kind imports as one call (a leaf), as it keeps
    torch.nn's own modules."""

    def __init__(self) -> None:
        super().__init__()
        self.kept = imported_module_types()

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return type(m) in self.kept or super().is_leaf_module(m, module_qualified_name)


def _trace(module: nn.Module) -> fx.GraphModule:
    tracer = _Tracer()
    graph = tracer.trace(module)
    return fx.GraphModule(tracer.root, graph, type(module).__name__)


# ------------------------------------------------------------------------------------ walking
class _Importer:
    """One import: each node of the traced graph goes to the method named by its ``op``."""

    def __init__(self, gm: fx.GraphModule, input_shape: Shape):
        self.gm = gm
        self.b = Builder(input_shape, order={n: i for i, n in enumerate(gm.graph.nodes)})
        self.output_node: fx.Node | None = None

    def run(self) -> None:
        for node in self.gm.graph.nodes:
            getattr(self, node.op)(node)

    def placeholder(self, node: fx.Node) -> None:
        b = self.b
        if b.blobs:  # the input is blob 0; the IR has exactly one input
            b.unsupported.append(f"a second input argument {node.target!r}")
            b.values[node] = B(b.new_blob(node, None, node.name))
        else:
            b.values[node] = B(b.new_blob(None, b.input_shape, "input"))

    def get_attr(self, node: fx.Node) -> None:
        path = cast(str, node.target)
        try:
            self.b.values[node] = Param(path, _fetch_attr(self.gm, path).detach().clone())
        except (AttributeError, TypeError):
            self.b.unsupported.append(f"direct use of attribute self.{path}")
            self.b.values[node] = B(self.b.new_blob(node, None, node.name))

    def call_module(self, node: fx.Node) -> None:
        c = Call.of(self.b, node)
        qualname = cast(str, node.target)   # fx types targets as str | callable; call_module's are names
        mod = self.gm.get_submodule(qualname)
        on = MODULE_INPUTS.get(type(c.args[0])) if len(node.args) == 1 and not node.kwargs else None
        if on is None:
            return c.fail(f"{qualname} ({type(mod).__name__}) called with {len(node.args)} arguments at {qualname!r}")
        on(c, mod, qualname)

    def call_function(self, node: fx.Node) -> None:
        _call(Call.of(self.b, node))

    def call_method(self, node: fx.Node) -> None:
        _call(Call.of(self.b, node))

    def output(self, node: fx.Node) -> None:
        self.output_node = node


def _module_on_map(c: Call, mod: nn.Module, qualname: str) -> None:
    """A leaf module on a plain feature map: its kind's rule."""
    c.emit(convert_module(mod, c.shape_of(c.args[0])), c.args[0], qualname)


def _call(c: Call) -> None:
    """A ``call_function`` / ``call_method`` node, stage by stage; each stage looks the target up in
    its table, and a handler may pass (``PASS``) when the call's values are not its case."""
    if _dispatch(SHAPE_CODE, c):                      # sizes and static arithmetic, never tensors
        return
    if any(isinstance(a, (Batch, ShapeOf)) for a in c.args) and c.target not in RESHAPES:
        return c.fail(f"{fn_name(c.target)} on a tensor's shape")
    if _dispatch(CONCATS, c):                         # lists of maps
        return
    on_view = layout.view_handler(c)                  # a channels-last view or a channel grouping
    if on_view is not None:
        on_view(c)
        return
    if not c.tensor_args:                             # e.g. a function of a parameter alone
        return c.fail(fn_name(c.target))
    if _dispatch(JOINS, c):                           # sums and products, of maps in any position
        return
    x = c.args[0]
    if not isinstance(x, B):
        return c.fail(f"{fn_name(c.target)} whose first argument is not a tensor")
    if _dispatch(TENSOR_OPS, c):                      # views of the map (no-ops, permute, chunk, view)
        return
    conv = convert_call(c.target, tuple(c.args[1:]), c.kwargs, c.shape_of(x))   # the layer kinds' rules
    if conv is None:
        return c.fail(fn_name(c.target) if c.node.op == "call_function" else f"Tensor.{c.target}")
    c.emit(conv, x, (c.scope or c.name) if isinstance(conv, Convert) and conv.by_scope else c.name)


def _dispatch(table: dict[Any, Handler], c: Call) -> bool:
    handler = table.get(c.target)
    return handler is not None and handler(c) is not PASS


# ---------------------------------------------------------------------------------- shape code
def _size(c: Call) -> None:
    """``x.size()`` / ``x.size(dim)``."""
    dim = c.args[1] if len(c.args) > 1 else c.kwargs.get("dim")
    shape = ShapeOf(c.shape_of(c.args[0]))
    value = shape if dim is None else _size_item(shape, dim)
    c.set(value)
    if value is None:
        c.fail(f"Tensor.size({dim}) of a tensor of unknown shape")


def _shape_attribute(c: Call) -> object:
    """``x.shape``."""
    if len(c.args) == 2 and c.args[1] == "shape" and isinstance(c.args[0], B):
        c.set(ShapeOf(c.shape_of(c.args[0])))
        return None
    return PASS


def _item(c: Call) -> object:
    """``x.shape[k]`` or ``parts[k]`` of a chunk/split (any other item is no shape code)."""
    of = ITEMS.get(type(c.args[0]))
    return of(c) if of is not None else PASS


def _shape_item(c: Call) -> None:
    value = _size_item(c.args[0], c.args[1])
    c.set(value)
    if value is None:
        c.fail(f"shape[{c.args[1]!r}] (only single sizes of a tensor of known shape)")


def _static(c: Call) -> object:
    """Arithmetic of static sizes, e.g. ``C // groups`` (evaluated), and ``torch._assert`` (dropped)."""
    if any(isinstance(a, (Ref, Param, Batch, ShapeOf)) for a in c.args):
        return PASS
    c.set(None if c.target is torch._assert else c.target(*c.args))
    return None


def _size_item(shp: ShapeOf, dim: Any) -> Any:
    """``x.shape[dim]``: the batch marker for 0, the static size otherwise (None if unknown)."""
    if not isinstance(dim, int) or shp.shape is None or not -len(shp.shape) - 1 <= dim <= len(shp.shape):
        return None
    dim = dim % (len(shp.shape) + 1)
    return Batch() if dim == 0 else shp.shape[dim - 1]


def _no_op(c: Call) -> None:
    c.emit(Convert(), c.args[0], c.name)


# ------------------------------------------------------------------------------ target tables
# Functions of static sizes (never of tensors) the importer evaluates while tracing shape code.
_STATIC_OPS: set[Any] = {operator.floordiv, operator.mul, operator.add, operator.sub, operator.truediv, operator.mod,
                         operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge, torch._assert}
# Keys are functions (call_function targets) and method names (call_method targets, strings).
SHAPE_CODE: dict[Any, Handler] = {"size": _size, getattr: _shape_attribute, operator.getitem: _item,
                                  **dict.fromkeys(_STATIC_OPS, _static)}
ITEMS: dict[type, Handler] = {ShapeOf: _shape_item, layout.Chunks: layout.chunk_item}
RESHAPES = ("view", "reshape", torch.reshape)   # the calls that may read a tensor's shape
CONCATS: dict[Any, Handler] = {torch.cat: joins.concat, torch.concat: joins.concat}
JOINS: dict[Any, Handler] = {**dict.fromkeys(joins.ADD_TARGETS, joins.add),
                             **dict.fromkeys(joins.MUL_TARGETS | {operator.truediv}, joins.product)}
TENSOR_OPS: dict[Any, Handler] = {**dict.fromkeys(NOOP_METHODS, _no_op),
                                  **dict.fromkeys((torch.permute, "permute"), layout.permute),
                                  **dict.fromkeys((torch.chunk, "chunk", torch.split, "split"), layout.chunks),
                                  **dict.fromkeys(RESHAPES, layout.view)}
# A leaf module's handler, by the kind of value it is called on.
MODULE_INPUTS: dict[type, Any] = {B: _module_on_map, layout.Perm: layout.channels_last_module}


def _fetch_attr(gm: nn.Module, path: str) -> torch.Tensor:
    obj: Any = gm
    for part in path.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, torch.Tensor):
        raise TypeError(path)
    return obj


def _plain(text: str, limit: int = 160) -> str:
    """An error text without internal reprs (``<... object at 0x...>``), cut to ``limit`` characters."""
    text = re.sub(r"<([\w.]+) object at 0x[0-9a-fA-F]+>", r"\1", text)
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ------------------------------------------------------------------------------------ building
def _build(b: Builder, out_root: int, module: nn.Module) -> Network:
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
    lint(net)
    return net


def _clean(name: str) -> str:
    """A module path as an IR name: characters other than letters, digits, '_' and '.' become '_'."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", name)


_BLOCK = re.compile(r"^layer(\d+)\.(\d+)$")


def _blocks(b: Builder, net: Network, names: dict, edge_names: list[str]) -> list[dict]:
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


PROBE_FLOAT64_MAX_PARAMS = 100_000_000   # larger models are probed in their own dtype (memory: two copies)


@torch.no_grad()
def _probe_copy(module: nn.Module, seed: int) -> nn.Module:
    """A float64 copy of ``module`` whose all-zero parameters are drawn at random.

    torchvision zero-initialises a ViT's classification head, so a fresh model outputs zeros for any
    input and the plain check compares zeros with zeros: a wrong LayerNorm eps or swapped q and k would
    pass. Zero biases hide their own mapping the same way. In the copy every parameter counts, and
    float64 resolves differences far below float32's rounding (a LayerNorm eps of 1e-5 for 1e-6).
    A model of more than ``PROBE_FLOAT64_MAX_PARAMS`` parameters (vit_l_16 and up) keeps its dtype."""
    probe = copy.deepcopy(module)
    if sum(p.numel() for p in probe.parameters()) <= PROBE_FLOAT64_MAX_PARAMS:
        probe = probe.double()
    gen = torch.Generator().manual_seed(seed + 1)
    for p in probe.parameters():
        if p.numel() and not bool(p.detach().any()):
            std = p.shape[-1] ** -0.5 if p.ndim >= 2 else 0.5
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) * std)
    return probe


@torch.no_grad()
def _verify(module: nn.Module, net: Network, seed: int, what: str = "", batch: int = 2) -> None:
    flags = {m: m.training for m in module.modules()}
    try:
        module.eval()
        dtype = net.dtype
        x = torch.randn((batch, *net.input_shape), generator=torch.Generator().manual_seed(seed),
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
        raise MorphnasError(f"import check{' ' + what if what else ''}: the imported network differs from the "
                            f"model (relative error {rel:.2e} > {tol:g}); the model probably uses an operation the "
                            f"importer misread")
