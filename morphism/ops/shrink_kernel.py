"""``shrink_kernel``: shrink a conv's kernel k -> k' (default k - 2), keeping the central taps.

The inverse of ``enlarge_kernel``. The padding shrinks by ``dilation * (k - k') / 2`` so the output
size is unchanged; a conv whose padding is too small for that is refused (its output would grow).
Exact (record ``mode="exact"``, error 0) when the dropped outer ring is all zero, e.g. right after
``enlarge_kernel``: every output pixel then sums the same non-zero products, borders included.
Otherwise approximate, with the relative output error measured as :mod:`._shrink` defines it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from ..errors import NotApplicable
from ..graph import Network
from ..layers import Conv2d
from ..schema import rule
from ._shrink import all_zero, shrink_record
from ._sites import require_edge
from .base import MAX_KERNEL, MorphOp, register_op, registered


@dataclass(frozen=True)
class ShrinkKernelParams:
    # new kernel size; default: the old one - 2 (same parity, smaller, >= 1)
    k: int | None = field(default=None, metadata=rule(ge=1, le=MAX_KERNEL))


def _new_k(layer: Conv2d, p: ShrinkKernelParams) -> int:
    return layer.kernel_size - 2 if p.k is None else int(p.k)


def _problem(layer: object, p: ShrinkKernelParams) -> str:
    if not isinstance(layer, Conv2d):
        return f"it is a {getattr(layer, 'kind', type(layer).__name__)}, not a conv2d"
    k, new = layer.kernel_size, _new_k(layer, p)
    if new < 1 or new >= k or (k - new) % 2:
        return (f"the new kernel k={new} must be smaller than {k} by an even amount and at least 1 "
                f"(so the filter stays centred)" + (f", e.g. k={k - 2}" if k >= 3 else "; a 1x1 kernel cannot shrink"))
    r = (k - new) // 2
    if layer.padding < layer.dilation * r:
        return (f"its padding {layer.padding} is smaller than the {layer.dilation * r} the kernel loses on each side, "
                "so the output would grow")
    return ""


@register_op
class ShrinkKernel(MorphOp):
    name = "shrink_kernel"
    site_kind = "edge"
    description = "shrink a conv's kernel k -> k - 2 keeping the central taps (exact when the outer ring is zero)"
    Params = ShrinkKernelParams
    approximate = True
    order = 150

    def sites(self, net: Network) -> list[str]:
        p = ShrinkKernelParams()
        return sorted(e.name for e in net.edges() if not _problem(e.layer, p))

    def check(self, net: Network, site: str, params: ShrinkKernelParams) -> None:
        e = require_edge(net, site, self.name)
        why = _problem(e.layer, params)
        if why:
            raise NotApplicable(f"shrink_kernel: cannot shrink edge {site!r}: {why}")

    def _apply(self, net: Network, site: str, p: ShrinkKernelParams, rng: np.random.Generator):
        layer = cast(Conv2d, net.edge(site).layer)   # check() refused anything else
        k, new = layer.kernel_size, _new_k(layer, p)
        r = (k - new) // 2
        child = net.copy()
        params = dict(child.params[site])
        w = params["weight"]
        inner = w[..., r:r + new, r:r + new].clone()
        ring = w.clone()
        ring[..., r:r + new, r:r + new] = 0
        params["weight"] = inner
        spec = dataclasses.replace(layer, kernel_size=new, padding=layer.padding - layer.dilation * r)
        child.replace_layer(site, spec, params)
        return child, shrink_record(net, child, all_zero(ring),
                                    notes=f"kernel {k} -> {new}, padding {layer.padding} -> {spec.padding}")


OP = registered(ShrinkKernel)   # the registered instance
