"""``enlarge_kernel``: grow a conv's kernel k -> k' (default k + 2) by zero padding the filter.

The padding grows by ``dilation * (k' - k) / 2`` so output sizes and values are unchanged, exact
at the borders too (the new taps are zero). The new ring is all zeros: the record reports the zero
fraction. ``noise > 0`` fills the ring with noise at that fraction of the He scale instead, an
approximate morph whose relative filter change goes into ``record.error``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import NotApplicable
from ..graph import Network
from ..layers import Conv2d
from ..schema import rule
from ._sites import require_edge
from .base import MAX_KERNEL, MAX_NOISE, MorphOp, register_op, registered, zero_fraction


@dataclass(frozen=True)
class EnlargeKernelParams:
    # new kernel size; default: the old one + 2 (same parity, larger)
    k: int | None = field(default=None, metadata=rule(ge=1, le=MAX_KERNEL))
    # > 0: fill the new taps with noise (approximate), relative to the He scale
    noise: float = field(default=0.0, metadata=rule(ge=0, le=MAX_NOISE))


@register_op
class EnlargeKernel(MorphOp):
    name = "enlarge_kernel"
    site_kind = "edge"
    description = "grow a conv's kernel by zero padding the filter (k -> k + 2)"
    Params = EnlargeKernelParams
    order = 50

    def sites(self, net: Network) -> list[str]:
        return sorted(e.name for e in net.edges() if isinstance(e.layer, Conv2d))

    def check(self, net: Network, site: str, params: EnlargeKernelParams) -> None:
        e = require_edge(net, site, self.name)
        if not isinstance(e.layer, Conv2d):
            raise NotApplicable(f"enlarge_kernel: edge {site!r} is a {e.layer.kind}, not a conv2d")
        k = e.layer.kernel_size
        new = k + 2 if params.k is None else int(params.k)
        if new <= k or (new - k) % 2:
            raise NotApplicable(f"enlarge_kernel at {site!r}: the new kernel k={new} must be larger than {k} "
                                f"by an even amount (so the filter stays centred), e.g. k={k + 2}")

    def _apply(self, net: Network, site: str, p: EnlargeKernelParams, rng: np.random.Generator):
        e = net.edge(site)
        layer = cast(Conv2d, e.layer)   # check() refused anything else
        k = layer.kernel_size
        new = k + 2 if p.k is None else int(p.k)
        r = (new - k) // 2
        child = net.copy()
        params = dict(child.params[site])
        w = params["weight"]
        big = F.pad(w.double(), (r, r, r, r))
        error = None
        if p.noise > 0:
            ring = torch.ones_like(big, dtype=torch.bool)
            ring[..., r:r + k, r:r + k] = False
            std = p.noise * math.sqrt(2.0 / (layer.out_channels * new * new))
            noise = torch.from_numpy(rng.standard_normal(tuple(big.shape))) * std
            big = torch.where(ring, noise, big)
            error = (torch.linalg.vector_norm(big - F.pad(w.double(), (r,) * 4))
                     / torch.linalg.vector_norm(w.double()).clamp_min(1e-300)).item()
        params["weight"] = big.to(w.dtype)
        spec = dataclasses.replace(layer, kernel_size=new, padding=layer.padding + layer.dilation * r)
        child.replace_layer(site, spec, params)
        zf = zero_fraction(params["weight"])
        mode = "approximate" if p.noise > 0 else ("exact-dense" if zf == 0 else "exact-sparse")
        return child, {"mode": mode, "zero_fraction": zf, "error": error,
                       "notes": f"kernel {k} -> {new}, padding {layer.padding} -> {spec.padding}"
                                + (f"; noise {p.noise:g} on the new taps (relative filter change)" if error else "")}


OP = registered(EnlargeKernel)   # the registered instance
