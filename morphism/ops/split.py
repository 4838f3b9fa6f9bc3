"""``split`` (TYPE-II): replace a conv or linear edge by two parallel edges whose filters sum to it.

A blob sums its in-edges, so ``G x = (alpha G) x + ((1 - alpha) G) x`` (``mode="scale"``) or
``R x + (G - R) x`` with ``R`` random at the layer's He scale from the op's seed
(``mode="random"``). Both are exact and dense. The original edge keeps its name (holding the first
part); the second is ``<site>_split``. A bias is split the same way (halved in random mode).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from ..errors import NotApplicable
from ..graph import Network
from ..layers import Conv2d, Linear
from ..schema import rule
from ._sites import join_problem, require_edge, require_sum_join
from .base import MorphOp, register_op, registered, zero_fraction

MODES = ("scale", "random")


@dataclass(frozen=True)
class SplitParams:
    mode: Literal["scale", "random"] = "scale"
    # scale mode: share of the first edge (else one edge is zero)
    alpha: float = field(default=0.5, metadata=rule(gt=0, lt=1, fix="; choose 0 < alpha < 1"))


def _he_std(layer) -> float:
    if isinstance(layer, Conv2d):
        return math.sqrt(2.0 / (layer.out_channels * layer.kernel_size ** 2))
    return 1.0 / math.sqrt(layer.in_features)


@register_op
class Split(MorphOp):
    name = "split"
    site_kind = "edge"
    description = "replace a conv/linear edge by two parallel edges whose filters sum to it (TYPE-II)"
    Params = SplitParams
    order = 30

    def sites(self, net: Network) -> list[str]:
        return sorted(e.name for e in net.edges() if isinstance(e.layer, (Conv2d, Linear)) and not join_problem(net, e))

    def check(self, net: Network, site: str, params: SplitParams) -> None:
        e = require_edge(net, site, self.name)
        if not isinstance(e.layer, (Conv2d, Linear)):
            raise NotApplicable(f"split: edge {site!r} is a {e.layer.kind}; only conv2d and linear edges split")
        require_sum_join(net, e, self.name)

    def _apply(self, net: Network, site: str, p: SplitParams, rng: np.random.Generator):
        e = net.edge(site)
        child = net.copy()
        old = child.params[site]
        g = old["weight"].double()
        if p.mode == "scale":
            first, second = p.alpha * g, (1.0 - p.alpha) * g
            shares = (p.alpha, 1.0 - p.alpha)
        else:
            first = torch.from_numpy(rng.standard_normal(tuple(g.shape))) * _he_std(e.layer)
            second = g - first
            shares = (0.5, 0.5)
        a = {"weight": first.to(old["weight"].dtype)}
        b = {"weight": second.to(old["weight"].dtype)}
        if "bias" in old:
            bias = old["bias"].double()
            a["bias"], b["bias"] = (shares[0] * bias).to(old["bias"].dtype), (shares[1] * bias).to(old["bias"].dtype)
        child.replace_layer(site, e.layer, a)
        name = child.fresh_name(f"{site}_split")
        child.add_edge(e.src, e.dst, e.layer, name, params=b)
        zf = zero_fraction(a["weight"], b["weight"])
        return child, {"mode": "exact-dense" if zf == 0 else "exact-sparse", "zero_fraction": zf,
                       "new_edges": (name,), "notes": f"{p.mode} split into {site!r} + {name!r}"}


OP = registered(Split)   # the registered instance
