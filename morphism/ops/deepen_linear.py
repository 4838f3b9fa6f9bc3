"""``deepen_linear``: a dense layer becomes two, with a parametric activation between them.

Net2DeeperNet on fully connected layers: ``W x + b`` becomes ``B · act(A x + a)`` with the
activation a parametric one at ``a = 1`` (the identity), so the child computes the parent's
function exactly; training then moves the slope away from 1 and the new layer becomes a real
hidden layer of the classifier head. By default ``A = W`` (with its bias) and ``B = I`` (zero bias),
an identity layer as in the paper; ``dense=true`` instead draws a random well-conditioned ``B``
and solves ``A = B^-1 W``, ``a = B^-1 b`` (dense factors, no zeros).

A separate op from :mod:`.deepen` (which factorises convs) so that searches enabling ``deepen``
keep exactly the sites they had; ``deepen`` on a linear edge names this op. New edges are
``<site>.fc_a``, ``<site>.act``, ``<site>.fc_b``; the site edge is removed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from ..errors import NotApplicable, PreservationError
from ..graph import Network
from ..identity import ACT_CHOICES, identity_activation
from ..layers import Linear
from ..schema import rule
from ..solver.decompose import well_conditioned
from ._sites import require_edge
from ._splice import Splicer, slot
from .base import MorphOp, register_op, registered, zero_fraction


@dataclass(frozen=True)
class DeepenLinearParams:
    # parametric activation between the two layers (a = 1); "prelu"; None/"none"
    act: str | None = field(default="relu", metadata=rule(choices=(*ACT_CHOICES, "none")))
    dense: bool = False     # B random well-conditioned and A = B^-1 W instead of B = I


@register_op
class DeepenLinear(MorphOp):
    name = "deepen_linear"
    site_kind = "edge"
    description = "a linear layer -> linear, parametric activation (a = 1), identity linear (Net2DeeperNet on FC)"
    Params = DeepenLinearParams
    order = 11

    def sites(self, net: Network) -> list[str]:
        shapes = net.shapes()
        return sorted(e.name for e in net.edges() if isinstance(e.layer, Linear) and len(shapes[e.src]) == 1)

    def check(self, net: Network, site: str, params: Any) -> None:
        e = require_edge(net, site, self.name)
        if not isinstance(e.layer, Linear):
            raise NotApplicable(f"deepen_linear: edge {site!r} is a {e.layer.kind}, not a linear layer "
                                "(deepen a conv with op deepen)")
        shape = net.shapes()[e.src]
        if len(shape) != 1:
            raise NotApplicable(f"deepen_linear: edge {site!r} acts on tokens of shape {tuple(shape)}; its parametric "
                                "activation needs a flat input (add a transformer block with deepen_block)")

    def _apply(self, net: Network, site: str, p: DeepenLinearParams, rng: np.random.Generator):
        e = net.edge(site)
        layer = cast(Linear, e.layer)   # check() refused anything else
        child = net.copy()
        dtype = child.dtype
        old = child.params[site]
        w = old["weight"].double()
        out = layer.out_features
        if p.dense:
            b_mat = well_conditioned(rng, out, out, out ** -0.5)
            a_mat = torch.linalg.solve(b_mat, w)
            res = ((b_mat @ a_mat - w).norm() / w.norm().clamp_min(1e-300)).item()
            if res > 1e-10:
                raise PreservationError(f"deepen_linear: refolding {site!r} left a residual {res:.3g}")
        else:
            b_mat, a_mat = torch.eye(out, dtype=torch.float64), w
        first = {"weight": a_mat.to(dtype)}
        if layer.bias:
            bias = old["bias"].double()
            first["bias"] = (torch.linalg.solve(b_mat, bias) if p.dense else bias).to(dtype)
        second = {"weight": b_mat.to(dtype), "bias": torch.zeros(out, dtype=dtype)}
        pos = slot(child, site)
        child.remove_edge(site)
        sp = Splicer(child, site)
        cur = sp.blob("h")
        sp.edge(e.src, cur, layer, "fc_a", first)
        act = identity_activation(p.act, out, dtype)
        if act is not None:
            nxt = sp.blob("r")
            sp.edge(cur, nxt, act[0], "act", act[1])
            cur = nxt
        sp.edge(cur, e.dst, Linear(out, out, bias=True), "fc_b", second, position=pos)
        zf = zero_fraction(first["weight"], second["weight"])
        return child, {"mode": "exact-dense" if zf == 0 else "exact-sparse", "zero_fraction": zf,
                       "new_edges": tuple(sp.new_edges), "removed_edges": (site,),
                       "notes": "random well-conditioned B, A = B^-1 W" if p.dense else "identity second layer"}


OP = registered(DeepenLinear)   # the registered instance
