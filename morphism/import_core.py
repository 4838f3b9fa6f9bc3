"""The importer's state and what its handlers share (:mod:`.importer`, :mod:`.import_layout`,
:mod:`.import_joins`).

While the traced graph is walked, each fx node gets a *value*: a :class:`B` (a blob of the network
being built), a layout view of one (:mod:`.import_layout`), a :class:`Param` read directly, the
:class:`Batch` marker or a :class:`ShapeOf` (shape code), or a plain constant. A handler reads the
values of its node's arguments from a :class:`Call` and either records the node's value, adding
edges on the way (:meth:`Call.emit`), or refuses the node (:meth:`Call.fail`): that records a blob
of unknown shape, so the walk goes on and every unsupported operation is reported together.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, cast

import torch
from torch import fx, nn

from .errors import MorphnasError, SpecError
from .import_rules import Convert, Unsupported
from .joins import SUM
from .kinds import function_rule, module_rule
from .layers import LayerSpec, Shape

NOOP_METHODS = {"contiguous"}     # Tensor methods that return their input's value
NOOP_MODULES = (nn.Identity,)     # leaf modules that do


@dataclass
class Blob:
    owner: fx.Node | None      # the node whose value the blob is (None for the input)
    shape: Shape | None        # None when an unsupported op produced it
    hint: str
    join: str = SUM            # how the blob's in-edges combine (joins.py)
    parts: list[int] = field(default_factory=list)   # a concat's in-edges (pending edge ids) in order


@dataclass
class PendingEdge:
    base: str
    src: int
    dst: int
    layer: LayerSpec
    params: dict[str, torch.Tensor]


class Value:
    """Base of the importer's own values. Refusals may quote one (a view to ``[batch, _B(i=2)]``),
    so they keep the spelling those messages have always had."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(cast(Any, self)))
        return f"_{type(self).__name__}({fields})"


@dataclass(frozen=True, repr=False)
class Ref(Value):
    """A value made from blob ``i``: the blob itself (:class:`B`) or a layout view of it."""

    i: int


@dataclass(frozen=True, repr=False)
class B(Ref):
    """A reference to a blob (a distinct type: traced code passes plain ints as constants)."""


class Batch:
    """The batch size (``x.size(0)``, ``x.shape[0]``): only meaningful inside a flattening view."""

    def __repr__(self) -> str:
        return "batch"


@dataclass(frozen=True, repr=False)
class ShapeOf(Value):
    """``x.shape`` / ``x.size()`` of a blob: the batch, then the blob's (static) sizes."""

    shape: Shape | None


@dataclass(frozen=True, repr=False)
class Param(Value):
    """A parameter or buffer read directly (``self.layer_scale``, LayerNorm2d's ``self.weight``)."""

    path: str
    tensor: torch.Tensor


@dataclass
class Builder:
    """The network being built: blobs (merged by union-find when a producer writes straight into a
    join), pending edges, and what could not be imported."""

    input_shape: Shape
    order: dict[fx.Node, int]                           # graph position of each node (in-place checks)
    values: dict[fx.Node, Any] = field(default_factory=dict)
    blobs: list[Blob] = field(default_factory=list)
    parent: list[int] = field(default_factory=list)
    edges: list[PendingEdge] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)   # in graph order: the first one is reported
    adds: list[tuple[str, int, list[int]]] = field(default_factory=list)  # (scope, sum blob, shortcut edge ids)

    def new_blob(self, owner: fx.Node | None, shape: Shape | None, hint: str) -> int:
        self.blobs.append(Blob(owner, shape, hint))
        self.parent.append(len(self.parent))
        return len(self.blobs) - 1

    def find(self, b: int) -> int:
        while self.parent[b] != b:
            self.parent[b] = self.parent[self.parent[b]]
            b = self.parent[b]
        return b

    def shape(self, i: int) -> Shape | None:
        return self.blobs[self.find(i)].shape


def scope_of(node: fx.Node) -> str:
    """The path of the module whose code made ``node`` ('' at the top level)."""
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack.values()))[0] if stack else ""


class _Pass:
    def __repr__(self) -> str:
        return "PASS"


PASS = _Pass()   # what a handler returns when the call is not its case: the next stage looks at it


@dataclass
class Call:
    """One call node being imported: its arguments as importer values, and where it is."""

    b: Builder
    node: fx.Node
    args: list[Any]
    kwargs: dict[str, Any]
    scope: str

    @classmethod
    def of(cls, b: Builder, node: fx.Node) -> "Call":
        # map_arg also reaches nodes nested in lists (view(x, [x.size(0), -1]), cat([a, b])).
        # The mapped values are the importer's own (B, Batch, ShapeOf, Param, ...), not fx Arguments.
        args: list[Any] = list(fx.node.map_arg(node.args, lambda n: b.values[n]))
        kwargs: dict[str, Any] = dict(fx.node.map_arg(node.kwargs, lambda n: b.values[n]))
        return cls(b, node, args, kwargs, scope_of(node))

    @property
    def target(self) -> Any:
        return self.node.target

    @property
    def name(self) -> str:
        """The default name of what the call adds: ``<enclosing module>.<fx node name>``."""
        return f"{self.scope}.{self.node.name}" if self.scope else self.node.name

    @property
    def tensor_args(self) -> list[fx.Node]:
        """The positional arguments that are blobs (not nested in lists, not layout views)."""
        return [a for a in self.node.args if isinstance(a, fx.Node) and isinstance(self.b.values[a], B)]

    def shape_of(self, v: Any) -> Shape | None:
        return self.b.shape(v.i) if isinstance(v, Ref) else None

    def set(self, value: Any) -> None:
        self.b.values[self.node] = value

    def fail(self, what: str) -> None:
        """Refuse the call: ``what`` (it says where unless it has ' at '), naming a parameter it reads."""
        params = [a.path for a in [*self.args, *self.kwargs.values()] if isinstance(a, Param)]
        reads = f" (reads parameter self.{params[0]})" if params else ""
        where = f" at {self.scope!r}" if self.scope else " at the top level"
        self.b.unsupported.append(f"{what}{reads}{'' if ' at ' in what else where}")
        self.set(B(self.b.new_blob(self.node, None, self.node.name)))

    def emit(self, conv: Convert | Unsupported, ref: B, name: str) -> None:
        """The call's value: blob ``ref`` after ``conv``'s layers, as edges named ``name``,
        ``name_<kind>``...; or the refusal ``conv`` says."""
        b, node = self.b, self.node
        if isinstance(conv, Unsupported):
            b.unsupported.append(conv.reason if f"{name!r}" in conv.reason else f"{conv.reason} at {name!r}")
            self.set(B(b.new_blob(node, None, name)))
            return
        if conv.inplace:
            self.check_inplace(name)
        if not conv.layers:
            self.set(ref)  # a no-op: the same blob
            return
        shape = b.shape(ref.i)
        cur = ref.i
        for i, (layer, params) in enumerate(zip(conv.layers, conv.params)):
            if shape is not None:
                try:
                    shape = tuple(layer.out_shape(shape))
                except SpecError as e:
                    raise MorphnasError(f"import: {name!r} does not fit its input (shape {b.shape(cur)}): "
                                        f"{e}; check input_shape") from None
            base = name if i == 0 else f"{name}_{layer.kind}"
            dst = b.new_blob(node if i == len(conv.layers) - 1 else None, shape, base)
            b.edges.append(PendingEdge(base, cur, dst, layer, params))
            cur = dst
        self.set(B(cur))

    def check_inplace(self, name: str) -> None:
        """An in-place op changes its input for every later reader; the IR (out of place) cannot."""
        first = self.node.args[0] if self.node.args else None
        if isinstance(first, fx.Node):
            order = self.b.order
            later = [u for u in first.users if u is not self.node and order[u] > order[self.node]]
            if later:
                self.b.unsupported.append(f"in-place {name!r} modifies a tensor that {later[0].name!r} reads afterwards")


Handler = Callable[[Call], object]   # returns PASS when the call is not its case


def convert_module(mod: nn.Module, shape: Shape | None) -> Convert | Unsupported:
    """The IR layers computing leaf module ``mod`` by its kind's rule (``shape``: its input's, if known)."""
    if type(mod) in NOOP_MODULES:
        return Convert()
    rule = module_rule(type(mod))
    if rule is None:
        return Unsupported(f"{type(mod).__module__}.{type(mod).__qualname__}")
    try:
        return rule(mod, shape)
    except ValueError as e:
        return Unsupported(str(e))


def convert_call(target: Any, args: tuple, kwargs: dict, shape: Shape | None) -> Convert | Unsupported | None:
    """The IR layers computing a call of ``target`` on a map of ``shape`` by its kind's rule (``args``:
    those after the map), or None when no kind imports it."""
    rule = function_rule(target)
    if rule is None:
        return None
    try:
        return rule(target, args, kwargs, shape)
    except ValueError as e:
        return Unsupported(str(e))
