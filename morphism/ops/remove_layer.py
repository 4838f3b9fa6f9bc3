"""``remove_layer``: drop a conv, batch-norm or activation edge whose input and output shapes agree.

The shrinking counterpart of ``insert_layer`` / ``deepen`` (LEMONADE's "remove layer"). Site: an edge
``src -> dst`` of one of those kinds whose output shape equals its input shape, that is the only
in-edge of ``dst``, and whose ``dst`` is not the network output. The edge is dropped and its two
blobs become one: every reader of ``dst`` reads ``src`` (a reader feeding a concat keeps its place),
and ``net.meta["blocks"]`` entries naming ``dst`` follow.

Exact (record ``mode="exact"``, error 0) when the layer computes the identity in eval mode:
a stride-1 conv whose filter is a centred delta (``W[c, c, centre] = 1``, every other tap zero, zero
bias, padding ``dilation * (k // 2)``), a BN with ``γ = sqrt(var + eps)`` and ``β = mean`` (what
``insert_bn``/``insert_layer`` insert), a parametric activation with ``a = 1`` or a PReLU with slope 1.
Otherwise approximate, with the relative output error measured as :mod:`._shrink` defines it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import NotApplicable
from ..graph import Edge, Network
from ..layers import Activation, BatchNorm2d, Conv2d, PAct, PReLU
from ._shrink import all_zero, forget_in_meta, move_src, shrink_record
from ._sites import require_edge
from .base import MorphOp, register_op, registered

KINDS = (Conv2d, BatchNorm2d, Activation, PAct, PReLU)


def _problem(net: Network, e: Edge, shapes: dict) -> str:
    """Why edge ``e`` cannot be removed ("" if it can)."""
    if not isinstance(e.layer, KINDS):
        return f"it is a {e.layer.kind}; only conv2d, batchnorm2d and activation edges (activation, pact, prelu) are removed"
    if e.dst == net.output_blob:
        return f"it writes the network output {e.dst!r}"
    if shapes[e.src] != shapes[e.dst]:
        return f"its input {tuple(shapes[e.src])} and output {tuple(shapes[e.dst])} shapes differ"
    if len(net.in_edges(e.dst)) != 1:
        return (f"its output blob {e.dst!r} is a join of {len(net.in_edges(e.dst))} edges; "
                "remove a whole branch with remove_branch")
    return ""


def is_identity(net: Network, e: Edge) -> bool:
    """True when edge ``e`` computes its input exactly (in eval mode), by the rules in the module doc."""
    p = net.params[e.name]
    layer = e.layer
    if isinstance(layer, Conv2d):
        k, c = layer.kernel_size, layer.out_channels
        if (layer.stride != 1 or layer.groups not in (1, c) or layer.in_channels != c
                or layer.padding != layer.dilation * (k // 2) or not all_zero(p.get("bias"))):
            return False
        delta = torch.zeros_like(p["weight"])
        delta[torch.arange(c), torch.arange(c) if layer.groups == 1 else 0, k // 2, k // 2] = 1
        return bool(torch.equal(p["weight"], delta))
    if isinstance(layer, BatchNorm2d):
        gamma = torch.sqrt(p["running_var"].double() + layer.eps).to(p["weight"].dtype)
        return bool(torch.equal(p["weight"], gamma) and torch.equal(p["bias"], p["running_mean"]))
    if isinstance(layer, PAct):
        return bool((p["a"] == 1).all())
    if isinstance(layer, PReLU):
        return bool((p["weight"] == 1).all())
    return False


@register_op
class RemoveLayer(MorphOp):
    name = "remove_layer"
    site_kind = "edge"
    description = "drop a conv/BN/activation edge whose input and output shapes agree (shrinking; approximate)"
    approximate = True
    order = 120

    @dataclass(frozen=True)
    class Params:
        pass

    def sites(self, net: Network) -> list[str]:
        shapes = net.shapes()
        return sorted(e.name for e in net.edges() if not _problem(net, e, shapes))

    def check(self, net: Network, site: str, params: Any) -> None:
        e = require_edge(net, site, self.name)
        why = _problem(net, e, net.shapes())
        if why:
            raise NotApplicable(f"remove_layer: cannot remove edge {site!r}: {why}")

    def _apply(self, net: Network, site: str, params: Any, rng: np.random.Generator):
        e = net.edge(site)
        exact = is_identity(net, e)
        child = net.copy()
        child.remove_edge(site)
        for reader in child.out_edges(e.dst):
            move_src(child, reader.name, e.src)
        child.remove_blob(e.dst)
        forget_in_meta(child, blob_map={e.dst: e.src})
        what = "an identity" if exact else f"a {e.layer.kind}"
        return child, shrink_record(net, child, exact, removed_edges=(site,),
                                    notes=f"removed {what}; readers of {e.dst!r} now read {e.src!r}")


OP = registered(RemoveLayer)   # the registered instance
