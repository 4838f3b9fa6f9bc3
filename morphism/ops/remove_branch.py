"""``remove_branch`` and ``remove_skip``: take one parallel path out of a sum join.

The shrinking counterparts of ``split`` / ``insert_path`` / ``morph_block`` (a morphed path) and of
a residual shortcut. Site: an in-edge ``e`` of a blob ``J`` that sums two or more in-edges.

* ``remove_skip`` takes an identity edge (a residual shortcut, or a branch left by
  ``split_identity``): only that edge goes.
* ``remove_branch`` takes any other in-edge, and with it the *branch* behind it: every blob whose
  every way forward runs through ``e`` (found backwards from ``e`` in reverse topological order: a
  blob belongs to the branch when each of its out-edges is ``e`` or enters the branch), and every
  edge into those blobs. The blob where the branch forks off stays, since it has another reader. A
  projection shortcut (1x1 conv + BN) or a residual path (conv, BN, activation, conv, BN) is one branch.

Exact (record ``mode="exact"``, error 0) when ``e`` outputs zeros whatever its input: an identity
scaled 0, a conv or linear whose weights and bias are all zero, a BN with ``γ = β = 0``. Otherwise
approximate, with the relative output error measured as :mod:`._shrink` defines it. Concat and
product joins are not sums: their in-edges are refused (removing one changes the channels or the gate).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import NotApplicable
from ..graph import Edge, Network
from ..layers import BatchNorm2d, Conv2d, Identity, Linear
from ._shrink import all_zero, forget_in_meta, shrink_record
from ._sites import require_edge
from .base import MorphOp, register_op, registered


def _join_problem(net: Network, e: Edge) -> str:
    """Why in-edge ``e`` is not a removable parallel path of a sum join ("" if it is)."""
    if net.join(e.dst) != "sum":
        return f"its blob {e.dst!r} is a {net.join(e.dst)} join, not a sum"
    n = len(net.in_edges(e.dst))
    if n < 2:
        return f"its blob {e.dst!r} has no other in-edge (it is no parallel path); remove it with remove_layer"
    return ""


def branch(net: Network, e: Edge) -> tuple[list[str], list[str]]:
    """The blobs that only feed ``e`` and the edges removed with it (``e`` first, then by name)."""
    order = net.blobs()
    pos = {b: i for i, b in enumerate(order)}
    inside: set[str] = set()
    for b in reversed(order[:pos[e.src] + 1]):
        if b == net.input_blob:
            continue
        outs = net.out_edges(b)
        if outs and all(o.name == e.name or o.dst in inside for o in outs):
            inside.add(b)
    edges = sorted({x.name for b in inside for x in net.in_edges(b)})
    return sorted(inside, key=lambda b: pos[b]), [e.name] + edges


def _is_zero(net: Network, e: Edge) -> bool:
    """True when edge ``e`` outputs zeros whatever its input (see the module doc)."""
    p = net.params[e.name]
    if isinstance(e.layer, Identity):
        return e.layer.scale == 0.0
    if isinstance(e.layer, (Conv2d, Linear)):
        return all_zero(p["weight"], p.get("bias"))
    if isinstance(e.layer, BatchNorm2d):
        return all_zero(p["weight"], p["bias"])
    return False


def _remove(op: str, net: Network, site: str) -> tuple[Network, dict[str, Any]]:
    e = net.edge(site)
    blobs, edges = branch(net, e)
    child = net.copy()
    for name in edges:
        child.remove_edge(name)
    for b in blobs:
        child.remove_blob(b)
    forget_in_meta(child, removed_edges=edges)
    what = f"{len(edges)} edge(s) and {len(blobs)} blob(s)" if blobs else f"the {e.layer.kind} edge"
    return child, shrink_record(net, child, _is_zero(net, e), removed_edges=tuple(edges),
                                notes=f"removed {what} of the path into {e.dst!r}")


@register_op
class RemoveBranch(MorphOp):
    name = "remove_branch"
    site_kind = "edge"
    description = "remove a parallel path into a sum join, with every layer only it uses (shrinking; approximate)"
    approximate = True
    order = 140

    @dataclass(frozen=True)
    class Params:
        pass

    def sites(self, net: Network) -> list[str]:
        return sorted(e.name for e in net.edges() if not isinstance(e.layer, Identity) and not _join_problem(net, e))

    def check(self, net: Network, site: str, params: Any) -> None:
        e = require_edge(net, site, self.name)
        if isinstance(e.layer, Identity):
            raise NotApplicable(f"remove_branch: edge {site!r} is an identity (a skip); remove it with remove_skip")
        why = _join_problem(net, e)
        if why:
            raise NotApplicable(f"remove_branch: edge {site!r} is no removable branch: {why}")

    def _apply(self, net: Network, site: str, params: Any, rng: np.random.Generator):
        return _remove(self.name, net, site)


@register_op
class RemoveSkip(MorphOp):
    name = "remove_skip"
    site_kind = "edge"
    description = "remove an identity edge (residual shortcut) into a sum join (shrinking; approximate)"
    approximate = True
    order = 145

    @dataclass(frozen=True)
    class Params:
        pass

    def sites(self, net: Network) -> list[str]:
        return sorted(e.name for e in net.edges() if isinstance(e.layer, Identity) and not _join_problem(net, e))

    def check(self, net: Network, site: str, params: Any) -> None:
        e = require_edge(net, site, self.name)
        if not isinstance(e.layer, Identity):
            raise NotApplicable(f"remove_skip: edge {site!r} is a {e.layer.kind}, not an identity (skip) edge; "
                                "remove a path of layers with remove_branch")
        why = _join_problem(net, e)
        if why:
            raise NotApplicable(f"remove_skip: edge {site!r} is no removable skip: {why}")

    def _apply(self, net: Network, site: str, params: Any, rng: np.random.Generator):
        return _remove(self.name, net, site)


OP = registered(RemoveBranch)   # the registered instance
SKIP = registered(RemoveSkip)   # the registered instance
