"""``activation``: make an activation parametric, or insert one, without changing the function.

Sites are edges (``site_kind = "edge"``):

* at an ``Activation`` or ``PReLU`` edge the layer is replaced by its parametric form
  ``PAct = (1 - a)·phi + a·id`` with the ``a`` that reproduces it: ``a = 0`` for a fixed ``phi``
  (any function), ``a = w`` (the slopes) for ``PReLU(w)`` as ``PAct(relu)``;
* at any other edge (or with ``insert=true``) a new ``PAct(fn)`` with ``a = 1`` (the identity) is
  inserted after the edge's output blob; every former reader of that blob reads its output. An
  explicit blob is also accepted as ``blob:NAME`` (not listed among the sites).

Edges into the network's output are not sites for insertion. Both forms are exact.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch

from ..errors import NotApplicable
from ..graph import Network
from ..layers import Activation, PAct, PReLU
from ..runtime import ACTIVATIONS
from ..schema import rule
from ._sites import require_blob, require_edge
from ._splice import insert_after_blob
from .base import MorphOp, register_op, registered


@dataclass(frozen=True)
class ActivationParams:
    fn: str = field(default="relu", metadata=rule(choices=tuple(ACTIVATIONS)))   # the inserted activation's phi
    per_channel: bool = True    # one a per channel (else a scalar)
    insert: bool = False        # at an activation edge: insert after it instead of replacing it


@register_op
class ActivationOp(MorphOp):
    name = "activation"
    site_kind = "edge"
    description = "replace an activation by its parametric form, or insert a parametric one (a = 1) after an edge"
    Params = ActivationParams
    order = 60

    def sites(self, net: Network) -> list[str]:
        shapes = net.shapes()
        return sorted(e.name for e in net.edges()
                      if (e.dst != net.output_blob or isinstance(e.layer, (Activation, PReLU)))
                      and len(shapes[e.src]) != 2 and len(shapes[e.dst]) != 2)

    def _target(self, net: Network, site: str, p: ActivationParams) -> tuple[str, str]:
        """('edge', edge name) to replace, or ('blob', blob name) to insert after."""
        if isinstance(site, str) and site.startswith("blob:"):
            return "blob", require_blob(net, site, self.name, inner=True)
        e = require_edge(net, site, self.name)
        if isinstance(e.layer, (Activation, PReLU)) and not p.insert:
            return "edge", site
        if e.dst == net.output_blob:
            raise NotApplicable(f"activation: edge {site!r} writes the network's output; nothing can be "
                                f"inserted after it")
        return "blob", e.dst

    def check(self, net: Network, site: str, params: ActivationParams) -> None:
        kind, name = self._target(net, site, params)
        if kind == "edge":
            src = net.shapes()[net.edge(name).src]
            if len(src) == 2:
                raise NotApplicable(f"activation: edge {name!r} acts on tokens of shape {tuple(src)}; a parametric "
                                    "activation needs (C, H, W) or (F,)")
            return
        shape = net.shapes().get(name, ())
        if len(shape) not in (1, 3):
            raise NotApplicable(f"activation: blob {name!r} has shape {tuple(shape)}; need (C, H, W) or (F,)")

    def _apply(self, net: Network, site: str, p: ActivationParams, rng: np.random.Generator):
        kind, name = self._target(net, site, p)
        child = net.copy()
        dtype = child.dtype
        if kind == "edge":
            e = child.edge(name)
            c = child.shapes()[e.src][0]
            if isinstance(e.layer, PReLU):
                w = child.params[name]["weight"]
                spec = PAct(c, "relu", per_channel=e.layer.num_parameters != 1)
                a = w.clone()
                note = "prelu(w) -> pact(relu) with a = w"
            else:
                fn = cast(Activation, e.layer).fn   # _target returns "edge" only for Activation/PReLU
                spec = PAct(c, fn, per_channel=True)
                a = torch.zeros(c, dtype=dtype)
                note = f"{fn} -> pact({fn}) with a = 0"
            child.replace_layer(name, spec, {"a": a})
            return child, {"mode": "exact", "notes": note}
        c = child.shapes()[name][0]
        spec = PAct(c, p.fn, per_channel=p.per_channel)
        a = torch.ones(spec.param_shapes()["a"], dtype=dtype)
        _, names = insert_after_blob(child, name, [(spec, {"a": a}, "pact")])
        return child, {"mode": "exact", "new_edges": tuple(names),
                       "notes": f"inserted pact({p.fn}) with a = 1 after blob {name!r}"}


OP = registered(ActivationOp)   # the registered instance
