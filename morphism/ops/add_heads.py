"""``add_heads``: new attention heads that start silent.

Site: an ``attention`` edge. The new heads get random q, k and v weights (the layer's init scale,
zero biases) and **zero** output-projection columns, so whatever they attend to, they add nothing
to the output: the child computes the parent's function exactly. Training then moves the output
columns away from zero. The new heads have the existing heads' ``head_dim`` and the layer keeps its
``scale``, so the old heads' scores are untouched. New heads are appended after the old ones (the
q/k/v rows and the output columns ``[heads·head_dim, (heads + n)·head_dim)``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from ..errors import NotApplicable
from ..graph import Network
from ..kinds.attention import PROJECTIONS, Attention
from ..schema import rule
from ._sites import require_edge
from .base import MorphOp, register_op, registered, zero_fraction

MAX_HEADS = 256


@dataclass(frozen=True)
class AddHeadsParams:
    heads: int = field(default=1, metadata=rule(ge=1, le=MAX_HEADS))   # how many heads to add


@register_op
class AddHeads(MorphOp):
    name = "add_heads"
    site_kind = "edge"
    description = "new attention heads with random q/k/v and zero output-projection columns"
    Params = AddHeadsParams
    order = 97

    def sites(self, net: Network) -> list[str]:
        return sorted(e.name for e in net.edges() if isinstance(e.layer, Attention))

    def check(self, net: Network, site: str, params: Any) -> None:
        e = require_edge(net, site, self.name)
        if not isinstance(e.layer, Attention):
            raise NotApplicable(f"add_heads: edge {site!r} is a {e.layer.kind}, not an attention layer")

    def _apply(self, net: Network, site: str, p: AddHeadsParams, rng: np.random.Generator):
        child = net.copy()
        layer = cast(Attention, child.edge(site).layer)
        old = child.params[site]
        dtype = old["q_weight"].dtype
        gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        extra = p.heads * layer.head_dim
        bound = 1.0 / math.sqrt(layer.dim)
        new = dict(old)
        fresh = []
        for n in PROJECTIONS:
            rows = ((torch.rand(extra, layer.dim, generator=gen, dtype=torch.float64) * 2 - 1) * bound).to(dtype)
            fresh.append(rows)
            new[f"{n}_weight"] = torch.cat([old[f"{n}_weight"], rows])
            if layer.bias:
                new[f"{n}_bias"] = torch.cat([old[f"{n}_bias"], torch.zeros(extra, dtype=dtype)])
        cols = torch.zeros(layer.dim, extra, dtype=dtype)
        new["out_weight"] = torch.cat([old["out_weight"], cols], dim=1)
        child.replace_layer(site, dataclasses.replace(layer, heads=layer.heads + p.heads), new)
        return child, {"mode": "exact-sparse", "zero_fraction": zero_fraction(*fresh, cols),
                       "notes": f"{layer.heads} -> {layer.heads + p.heads} heads of {layer.head_dim}; new output "
                                "columns zero"}


OP = registered(AddHeads)   # the registered instance
