"""``deepen`` (NetMorph TYPE-I): replace a conv ``G`` by conv F1 -> [BN] -> [activation] -> conv F2.

``F1`` (k1 x k1) and ``F2`` (k2 x k2) come from :func:`~morphnas.morphism.solver.decompose.decompose`
with ``compose(F1, F2) = G`` (``k1 + k2 - 1 >= k``); the BN and the parametric activation are
inserted as identities, so the chain computes the conv exactly. What the result looks like:

* **exact-dense** where the capacity allows (the default ``k2 = 1``, or ``k1 = 1`` with
  ``mid >= Cin``, or a widened ``mid``, see ``widen``);
* **exact-sparse** otherwise (one factor centre-only), the record's zero fraction says how much;
* **approximate** with ``mode="approx"``: dense factors from noise, the filter residual in
  ``record.error``.

Borders: when one factor is centre-only (any 1x1 factor) per-layer zero padding is exact; a chain
of two dense k > 1 convs instead runs "pad once" (a ``Pad`` edge by the chain's radius, both convs
unpadded), because per-layer padding would only be exact in the interior (docs/design.md, "Numerics").
Stride: on ``F1`` when ``F2`` is pointwise (it commutes with subsampling and is 4x cheaper at
stride 2), else on ``F2`` (the last conv). A bias stays on ``F2``. New edges are
``<site>.conv_a``, ``.bn``, ``.act``, ``.conv_b`` (+ ``.pad``); the site edge is removed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np

from ..errors import NotApplicable
from ..graph import Network
from ..identity import ACT_CHOICES, identity_activation, identity_bn
from ..layers import Conv2d, Linear, Pad
from ..schema import rule
from ..solver.decompose import decompose, dense_capacity_ok, min_dense_width, recommended_dense_width, sparse_ok
from ..solver.linsolve import is_centre_only
from ._sites import require_edge
from ._splice import Splicer, slot
from .base import MAX_KERNEL, MAX_NOISE, MAX_WIDTH, MorphOp, odd_kernels, register_op, registered


@dataclass(frozen=True)
class DeepenParams:
    # first kernel (odd); default: the conv's own kernel size
    k1: int | None = field(default=None, metadata=rule(ge=1, le=MAX_KERNEL))
    # second kernel (odd); k1 + k2 - 1 >= k
    k2: int = field(default=1, metadata=rule(ge=1, le=MAX_KERNEL))
    # inner width; default: the conv's out channels
    mid: int | None = field(default=None, metadata=rule(ge=1, le=MAX_WIDTH))
    widen: bool = False         # raise mid (if needed) to a well-conditioned width with an exact dense solution
    bn: bool = True             # insert an identity BN between the convs
    # parametric activation between them (a = 1); "prelu"; None/"none"
    act: str | None = field(default="relu", metadata=rule(choices=(*ACT_CHOICES, "none")))
    mode: Literal["auto", "dense", "sparse", "approx"] = "auto"
    # approx mode: noise relative to He scale
    noise: float = field(default=0.01, metadata=rule(ge=0, le=MAX_NOISE))

    def _validate(self, where: Any) -> None:
        odd_kernels("deepen", k1=self.k1, k2=self.k2)


def _sizes(layer: Conv2d, p: DeepenParams) -> tuple[int, int, int]:
    k = layer.kernel_size
    k1 = k if p.k1 is None else int(p.k1)
    k2 = int(p.k2)
    mid = layer.out_channels if p.mid is None else int(p.mid)
    cout, cin = layer.out_channels, layer.in_channels
    if p.widen and p.mode in ("auto", "dense") and not dense_capacity_ok(cout, cin, k1, k2, mid, k):
        mid = max(mid, recommended_dense_width(cout, cin, k1, k2, k))
    return k1, k2, mid


def _decompose(w, k1: int, k2: int, mid: int, p: DeepenParams, rng: np.random.Generator):
    """``decompose`` as the params ask. With ``widen`` a dense solve is insisted on: a system that
    is rank deficient despite the count (tiny channel counts, see ``min_dense_width``) is retried
    at 1.5x the width a few times; in auto mode the last resort is the plain auto decomposition."""
    if not p.widen or p.mode not in ("auto", "dense"):
        return decompose(w, k1, k2, mid=mid, mode=p.mode, rng=rng, noise=p.noise)
    wide = mid
    for _ in range(4):
        try:
            return decompose(w, k1, k2, mid=wide, mode="dense", rng=rng, noise=p.noise)
        except NotApplicable:
            wide = math.ceil(wide * 1.5)
    if p.mode == "dense":
        raise NotApplicable(f"deepen: no dense exact {k1}x{k1} -> {k2}x{k2} factorisation found up to mid={wide}")
    return decompose(w, k1, k2, mid=mid, mode="auto", rng=rng, noise=p.noise)


@register_op
class Deepen(MorphOp):
    name = "deepen"
    site_kind = "edge"
    description = "replace a conv by conv k1 -> BN -> act -> conv k2 computing the same filter (NetMorph)"
    Params = DeepenParams
    order = 10

    def sites(self, net: Network) -> list[str]:
        return sorted(e.name for e in net.edges() if self._site_problem(net, e.name) is None)

    def _site_problem(self, net: Network, site: str) -> str | None:
        layer = net.edge(site).layer
        if isinstance(layer, Linear):
            return f"edge {site!r} is a linear layer; deepen it with op deepen_linear"
        if not isinstance(layer, Conv2d):
            return f"edge {site!r} is a {layer.kind}, not a conv2d"
        if layer.groups != 1:
            return f"conv {site!r} has groups={layer.groups}; only groups=1 convs can be deepened"
        if layer.dilation != 1:
            return f"conv {site!r} has dilation={layer.dilation}; only dilation 1 is supported"
        if layer.kernel_size % 2 == 0:
            return f"conv {site!r} has an even kernel {layer.kernel_size}; factors must be centred (odd)"
        return None

    def check(self, net: Network, site: str, params: DeepenParams) -> None:
        require_edge(net, site, self.name)
        problem = self._site_problem(net, site)
        if problem:
            raise NotApplicable(f"deepen: {problem}")
        layer = cast(Conv2d, net.edge(site).layer)   # _site_problem refused anything else
        k1, k2, mid = _sizes(layer, params)
        k = layer.kernel_size
        if k1 + k2 - 1 < k:
            raise NotApplicable(f"deepen at {site!r}: k1 + k2 - 1 = {k1 + k2 - 1} is smaller than the conv's "
                                f"kernel {k}; choose k1 + k2 - 1 >= {k}")
        cout, cin = layer.out_channels, layer.in_channels
        dense = dense_capacity_ok(cout, cin, k1, k2, mid, k)
        need = min_dense_width(cout, cin, k1, k2, k)
        if params.mode == "dense" and not dense:
            raise NotApplicable(f"deepen at {site!r}: no dense exact {k1}x{k1} -> {k2}x{k2} factorisation at "
                                f"mid={mid}; it needs mid >= {need} (or widen=true, or mode sparse/approx)")
        if params.mode in ("auto", "sparse") and not (params.mode == "auto" and dense) \
                and not sparse_ok(cout, cin, k, k1, k2, mid):
            raise NotApplicable(
                f"deepen at {site!r}: no exact {k1}x{k1} -> {k2}x{k2} factorisation of the {k}x{k} conv at "
                f"mid={mid}: a centre-only factor needs k2 >= {k} and mid >= {cin}, or k1 >= {k} and "
                f"mid >= {cout}; a dense one mid >= {need} (widen=true)")

    def _apply(self, net: Network, site: str, p: DeepenParams, rng: np.random.Generator):
        e = net.edge(site)
        layer = cast(Conv2d, e.layer)   # check() refused anything else
        k, s, pad = layer.kernel_size, layer.stride, layer.padding
        k1, k2, mid = _sizes(layer, p)
        w = net.params[site]["weight"]
        dec = _decompose(w.double(), k1, k2, mid, p, rng)
        mid = dec.f1.shape[0]
        child = net.copy()
        dtype = child.dtype
        pos = slot(child, site)   # a part of a concatenation keeps its channel slot
        child.remove_edge(site)
        sp = Splicer(child, site)
        edge, blob = sp.edge, sp.blob

        radius = pad + (k1 + k2 - 1 - k) // 2      # padding of the composed K x K filter
        # A centre-only factor acts as a 1x1 and keeps per-layer padding exact, provided the other
        # factor's own padding is not negative; otherwise run the chain "pad once".
        f2_ok = is_centre_only(dec.f2) and pad + (k1 - k) // 2 >= 0
        f1_ok = is_centre_only(dec.f1) and pad + (k2 - k) // 2 >= 0
        pad_once = not (f1_ok or f2_ok)
        src = e.src
        if pad_once:
            if radius:
                pb = blob("p")
                edge(src, pb, Pad(radius), "pad", {})
                src = pb
            (s1, p1), (s2, p2) = (1, 0), (s, 0)
        elif f2_ok:          # F2 acts as a 1x1: F1 takes the stride and the padding
            (s1, p1), (s2, p2) = (s, radius - k2 // 2), (1, k2 // 2)
        else:                # F1 acts as a 1x1
            (s1, p1), (s2, p2) = (1, k1 // 2), (s, radius - k1 // 2)
        cur = blob("a")
        edge(src, cur, Conv2d(layer.in_channels, mid, k1, s1, p1), "conv_a", {"weight": dec.f1.to(dtype)})
        if p.bn:
            nxt = blob("n")
            spec, params = identity_bn(mid, dtype)
            edge(cur, nxt, spec, "bn", params)
            cur = nxt
        act = identity_activation(p.act, mid, dtype)
        if act is not None:
            nxt = blob("r")
            edge(cur, nxt, act[0], "act", act[1])
            cur = nxt
        f2_params = {"weight": dec.f2.to(dtype)}
        if layer.bias:
            f2_params["bias"] = net.params[site]["bias"].clone()
        edge(cur, e.dst, Conv2d(mid, layer.out_channels, k2, s2, p2, bias=layer.bias), "conv_b", f2_params,
             position=pos)
        mode = {"dense": "exact-dense", "sparse": "exact-sparse"}.get(dec.mode, "approximate")
        notes = (f"{dec.notes}; filter residual {dec.residual:.2e}; "
                 f"{'pad once (radius ' + str(radius) + ')' if pad_once else 'per-layer padding'}")
        return child, {"mode": mode, "zero_fraction": float(dec.zero_fraction),
                       "error": float(dec.residual) if mode == "approximate" else None,
                       "new_edges": tuple(sp.new_edges), "removed_edges": (site,), "notes": notes}


OP = registered(Deepen)   # the registered instance
