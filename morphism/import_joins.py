"""Joins while importing: where several maps meet in one blob (sum, concat, mul; :mod:`.joins`).

``a + b`` becomes a sum blob, ``torch.cat([...], 1)`` a concat blob (in list order) and ``a * b`` of
two maps a mul blob (a gate). An operand's producer writes straight into the join when it feeds
only the join; otherwise an identity edge carries the operand (a residual shortcut reading the
block input: ``<block>.shortcut``). Products with a constant or a parameter are not joins but layers
of their one map: an ``identity`` with that scale, a ``layer_scale``.
"""
from __future__ import annotations

import operator
from typing import Any, cast

import torch
from torch import fx

from .errors import MorphnasError, SpecError
from .import_core import B, Builder, Call, Param, PendingEdge
from .import_rules import Convert, fn_name
from .joins import CONCAT, MUL, SUM, join_shape
from .layers import Identity, Shape
from .layers_extra import LayerScale

ADD_TARGETS: set[Any] = {operator.add, operator.iadd, torch.add, "add", "add_"}
MUL_TARGETS: set[Any] = {operator.mul, operator.imul, torch.mul, "mul", "mul_"}
INPLACE_MUL = (operator.imul, "mul_")


def _in_count(b: Builder, root: int) -> int:
    return sum(1 for e in b.edges if b.find(e.dst) == root)


def _operand_edge(b: Builder, operand: Any, a: B, repeated: bool, dst: int, base: str) -> int:
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
    b.edges.append(PendingEdge(base, root, dst, Identity(), {}))
    return len(b.edges) - 1


def add(c: Call) -> None:
    """``a + b`` of two maps of one shape: a sum blob. Producers feeding only the sum merge into it."""
    b, node, args, scope, name = c.b, c.node, c.args, c.scope, c.name
    if c.kwargs.get("alpha", 1) != 1 or len(args) != 2 or not all(isinstance(a, B) for a in args):
        b.unsupported.append(f"{fn_name(node.target)} at {name!r} (only tensor + tensor)")
        c.set(B(b.new_blob(node, None, name)))
        return
    if node.target in (operator.iadd, "add_"):
        c.check_inplace(name)
    sa, sb = (b.shape(a.i) for a in args)
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
            b.edges.append(PendingEdge(f"{scope}.shortcut" if scope else f"{node.name}_shortcut",
                                       b.find(a.i), dst, Identity(), {}))
            shortcuts.append(len(b.edges) - 1)
    b.adds.append((scope, dst, shortcuts))
    c.set(B(dst))


def concat(c: Call) -> None:
    """``torch.cat([...], dim=1)`` of feature maps: a concat blob listing its in-edges in order."""
    b, node, args, kwargs, name = c.b, c.node, c.args, c.kwargs, c.name
    parts = args[0] if args else kwargs.get("tensors")
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    operands = node.args[0] if node.args else node.kwargs.get("tensors")
    if not isinstance(parts, (list, tuple)) or not parts or not all(isinstance(p, B) for p in parts):
        return c.fail(f"{fn_name(node.target)} of values that are not feature maps")
    shapes = [b.shape(p.i) for p in parts]
    if dim not in (1, -3) or any(s is None or len(s) != 3 for s in shapes):
        return c.fail(f"{fn_name(node.target)}(dim={dim}) (only along the channels of feature maps)")
    try:
        shape = join_shape(CONCAT, cast("list[Shape]", shapes))
    except SpecError as e:
        raise MorphnasError(f"import: {name!r} {e}") from None
    dst = b.new_blob(node, shape, name)
    b.blobs[dst].join = CONCAT
    roots = [b.find(p.i) for p in parts]
    for i, (operand, p) in enumerate(zip(cast(list, operands), parts)):
        b.blobs[dst].parts.append(_operand_edge(b, operand, p, roots.count(b.find(p.i)) > 1, dst, f"{name}_in{i}"))
    c.set(B(dst))


def product(c: Call) -> None:
    """``*`` and ``/``: a layer scale by a (C, 1, 1) parameter, a gate (a mul blob of two maps), or
    an ``identity`` scaling by a constant."""
    target, args, kwargs, tensor_args = c.target, c.args, c.kwargs, c.tensor_args
    params = [a for a in args if isinstance(a, Param)]
    if target in MUL_TARGETS and len(args) == 2 and len(params) == 1 and len(tensor_args) == 1 and not kwargs:
        return _layer_scale(c, params[0], next(a for a in args if isinstance(a, B)))
    if (target is not operator.truediv and len(args) == 2 and len(tensor_args) == 2 and not kwargs
            and all(isinstance(a, B) for a in args)):
        return _gate(c)
    nums = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
    if (len(args) != 2 or len(nums) != 1 or kwargs or len(tensor_args) != 1
            or (target is operator.truediv and not isinstance(args[0], B))):
        return c.fail(f"{fn_name(target)} of two tensors (only scaling by a constant, or a product of maps)")
    scale = float(nums[0]) if target is not operator.truediv else 1.0 / float(nums[0])
    x = next(a for a in args if isinstance(a, B))
    c.emit(Convert([Identity(scale)], [{}], inplace=target in INPLACE_MUL), x, c.name)


def _layer_scale(c: Call, p: Param, x: B) -> None:
    """``self.gamma * x`` with ``gamma`` of shape (C, 1, 1): a LayerScale edge named by the parameter."""
    shape = c.shape_of(x)
    if shape is None or len(shape) != 3 or tuple(p.tensor.shape) != (shape[0], 1, 1):
        return c.fail(f"{fn_name(c.target)} by parameter self.{p.path} of shape {tuple(p.tensor.shape)} "
                      "(only a per-channel (C, 1, 1) layer scale)")
    c.emit(Convert([LayerScale(shape[0])], [{"weight": p.tensor}]), x, p.path)


def _gate(c: Call) -> None:
    """``a * b`` of two maps (a gate): a mul blob; shapes broadcast (C, 1, 1) against (C, H, W)."""
    b, node, args, name = c.b, c.node, c.args, c.name
    shapes = [b.shape(a.i) for a in args]
    shape = None
    if all(s is not None for s in shapes):
        try:
            shape = join_shape(MUL, cast("list[Shape]", shapes))
        except SpecError as e:
            raise MorphnasError(f"import: {name!r} {e}") from None
    if node.target in INPLACE_MUL:
        c.check_inplace(name)
    dst = b.new_blob(node, shape, name)
    b.blobs[dst].join = MUL
    repeated = args[0] == args[1]
    for i, (operand, a) in enumerate(zip(node.args, args)):
        _operand_edge(b, operand, a, repeated, dst, f"{name}_in{i}")
    c.set(B(dst))
