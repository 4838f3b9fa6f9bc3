"""``insert_layer`` (Net2DeeperNet): an identity conv + BN + parametric activation after a blob.

The new conv (odd ``k``, same padding, stride 1) starts as the identity: a centred delta, exact at
the borders too because only its centre tap is non-zero. Every former reader of the blob reads
the new output.

``dense=true`` avoids the delta's zeros where the blob is made by a single plain conv ``G``: the new
conv gets a random well-conditioned matrix ``A`` in its centre tap and the producer becomes
``A^-1 G`` (bias ``A^-1 b``), so ``A (A^-1 G) = G`` (a 1x1 insert is then fully dense; a k x k
one keeps its off-centre taps zero). Record: mode exact-dense / exact-sparse and zero fraction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import NotApplicable, PreservationError
from ..graph import Edge, Network
from ..identity import ACT_CHOICES, identity_activation, identity_bn
from ..layers import Conv2d, LayerSpec
from ..schema import rule
from ..solver.decompose import well_conditioned
from ._sites import require_blob
from ._splice import feature_blob_sites, insert_after_blob
from .base import MAX_KERNEL, MorphOp, odd_kernels, register_op, registered, zero_fraction


@dataclass(frozen=True)
class InsertLayerParams:
    k: int = field(default=3, metadata=rule(ge=1, le=MAX_KERNEL))   # kernel of the inserted conv (odd)
    bn: bool = True             # identity BN after it
    # parametric activation (a = 1); "prelu"; None/"none"
    act: str | None = field(default="relu", metadata=rule(choices=(*ACT_CHOICES, "none")))
    dense: bool = False         # fold a random invertible matrix into the producing conv

    def _validate(self, where: Any) -> None:
        odd_kernels("insert_layer", k=self.k)


def _producer(net: Network, blob: str) -> Edge | None:
    """The blob's only in-edge when it is a plain (groups=1) conv, else None."""
    ins = net.in_edges(blob)
    if len(ins) == 1 and isinstance(ins[0].layer, Conv2d) and ins[0].layer.groups == 1:
        return ins[0]
    return None


@register_op
class InsertLayer(MorphOp):
    name = "insert_layer"
    site_kind = "blob"
    description = "insert an identity conv + BN + parametric activation after a feature-map blob (Net2DeeperNet)"
    Params = InsertLayerParams
    order = 20

    def sites(self, net: Network) -> list[str]:
        return feature_blob_sites(net)

    def check(self, net: Network, site: str, params: InsertLayerParams) -> None:
        blob = require_blob(net, site, self.name, inner=True)
        shape = net.shapes().get(blob, ())
        if len(shape) != 3:
            raise NotApplicable(f"insert_layer: blob {blob!r} has shape {tuple(shape)}, not a (C, H, W) feature map")
        if params.dense and _producer(net, blob) is None:
            raise NotApplicable(f"insert_layer: dense=true needs blob {blob!r} to be made by a single groups=1 conv "
                                f"(its in-edges: {[e.name for e in net.in_edges(blob)]}); use dense=false")

    def _apply(self, net: Network, site: str, p: InsertLayerParams, rng: np.random.Generator):
        blob = require_blob(net, site, self.name, inner=True)
        child = net.copy()
        dtype = child.dtype
        c = child.shapes()[blob][0]
        w = torch.zeros(c, c, p.k, p.k, dtype=torch.float64)
        changed: tuple[str, ...] = ()
        if p.dense:
            prod = _producer(child, blob)
            if prod is None:  # check() refuses dense=true without a single plain producer
                raise RuntimeError(f"insert_layer: blob {blob!r} has no single groups=1 conv producer")
            a = well_conditioned(rng, c, c, (2.0 / c) ** 0.5)   # He norm of a k x k filter, all in the centre
            g = child.params[prod.name]
            old = g["weight"].double()
            new = torch.linalg.solve(a, old.reshape(c, -1)).reshape(old.shape)
            res = ((a @ new.reshape(c, -1) - old.reshape(c, -1)).norm() / old.norm().clamp_min(1e-300)).item()
            if res > 1e-10:
                raise PreservationError(f"insert_layer: refolding {prod.name!r} left a residual {res:.3g}")
            g["weight"] = new.to(g["weight"].dtype)
            if "bias" in g:
                g["bias"] = torch.linalg.solve(a, g["bias"].double()).to(g["bias"].dtype)
            w[:, :, p.k // 2, p.k // 2] = a
            changed = (prod.name,)
        else:
            w[torch.arange(c), torch.arange(c), p.k // 2, p.k // 2] = 1.0
        layers: list[tuple[LayerSpec, dict[str, torch.Tensor], str]] = [
            (Conv2d(c, c, p.k, 1, p.k // 2), {"weight": w.to(dtype)}, "conv")]
        if p.bn:
            spec, params = identity_bn(c, dtype)
            layers.append((spec, params, "bn"))
        act = identity_activation(p.act, c, dtype)
        if act is not None:
            layers.append((act[0], act[1], "act"))
        _, names = insert_after_blob(child, blob, layers)
        zf = zero_fraction(w)
        notes = "identity conv (centred delta)" if not p.dense else f"random centre matrix folded into {changed[0]!r}"
        return child, {"mode": "exact-dense" if zf == 0 else "exact-sparse", "zero_fraction": zf,
                       "new_edges": tuple(names), "notes": notes}


OP = registered(InsertLayer)   # the registered instance
