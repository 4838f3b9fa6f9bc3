"""Turn a solved module into IR edges that replace one conv, executed "pad once".

A dense solution of a module with chains of k > 1 convs equals the conv only if the module sees the
same zero border the composed filter assumes (per-layer zero padding is wrong on the border ring,
relative error 0.12–0.27, docs/design.md, "Numerics"). So:

* one ``Pad`` at the source by ``P = p + R - r`` (``p`` the conv's padding, ``R`` the module's
  radius, ``r`` the conv's radius) — a conv padded by ``p`` equals its filter zero-padded to the
  module's kernel applied with padding ``p + R - r``;
* every inner conv unpadded, stride 1; the conv's stride goes on the edges into the sink (the sum
  of strided outputs is the strided sum);
* a ``Crop`` on an edge ``u -> v`` by ``rho(v) - rho(u) - r_e`` (``rho`` = longest path radius from
  the source) so that paths of different radius meet aligned.

Edge names are ``<conv>.<module edge>.{crop,conv,bn,act}``; internal blobs ``<conv>.<blob>``. BN and
parametric activations are inserted as identities (BN: running mean 0, running var ``1 - eps``,
gamma 1, beta 0, exact in eval mode; PAct ``a = 1``; PReLU slope 1). The conv's bias, if any, goes
on the first edge into the sink.
"""
from __future__ import annotations

from typing import cast

import torch

from ..graph import Network
from ..layers import Conv2d, Crop, LayerSpec, PAct, Pad, PReLU
from ..identity import identity_bn_unit_gamma
from .solve import ModuleSolution



def build_module(net: Network, edge: str, sol: ModuleSolution) -> tuple[Network, tuple[str, ...]]:
    """A copy of ``net`` with conv ``edge`` replaced by the solved module; returns it and the new edges."""
    e = net.edge(edge)
    conv = cast(Conv2d, e.layer)   # the module op checks the site is a conv
    dtype = net.params[edge]["weight"].dtype
    bias = net.params[edge].get("bias")
    m = sol.module
    rho = m.radii()
    pad = conv.padding + rho[m.sink] - conv.kernel_size // 2
    child = net.copy()
    child.remove_edge(edge)
    new: list[str] = []

    def add(src: str, dst: str, layer, name: str, params) -> None:
        new.append(child.add_edge(src, dst, layer, child.fresh_name(name), params=params))

    def blob(name: str) -> str:
        return child.add_blob(child.fresh_name(name, blob=True))

    start = e.src
    if pad > 0:
        start = blob(f"{edge}.padded")
        add(e.src, start, Pad(pad), f"{edge}.pad", {})
    where = {m.source: start, m.sink: e.dst}
    for b in m.blobs:
        where[b] = blob(f"{edge}.{b}")
    bias_edge = next(x.name for x in m.edges if x.dst == m.sink) if bias is not None else None
    w = sol.widths
    for me in m.edges:
        cur = where[me.src]
        crop = rho[me.dst] - rho[me.src] - me.radius
        if crop > 0:
            nxt = blob(f"{edge}.{me.name}.cropped")
            add(cur, nxt, Crop(crop), f"{edge}.{me.name}.crop", {})
            cur = nxt
        stages = [("conv", None)] + ([("bn", None)] if me.bn else []) + ([("act", me.act)] if me.act else [])
        layer: LayerSpec
        params: dict[str, torch.Tensor]
        for i, (kind, act) in enumerate(stages):
            dst = where[me.dst] if i == len(stages) - 1 else blob(f"{edge}.{me.name}.{kind}_out")
            cout = w[me.dst]
            if kind == "conv":
                layer = Conv2d(w[me.src], cout, me.kernel, conv.stride if me.dst == m.sink else 1, 0,
                               bias=me.name == bias_edge)
                params = {"weight": sol.filters[me.name].to(dtype)}
                if me.name == bias_edge and bias is not None:   # bias_edge is None without a bias
                    params["bias"] = bias.detach().clone()
            elif kind == "bn":
                layer, params = identity_bn_unit_gamma(cout, dtype)
            elif act is None:   # only "act" stages carry an activation
                raise RuntimeError(f"module edge {me.name!r}: activation stage without an activation")
            elif act.fn == "prelu":
                prelu = PReLU(cout if act.per_channel else 1, 1.0)
                layer, params = prelu, {"weight": torch.ones(prelu.num_parameters, dtype=dtype)}
            else:
                layer = PAct(cout, act.fn, act.per_channel)
                params = {"a": torch.ones(cout if act.per_channel else 1, dtype=dtype)}
            add(cur, dst, layer, f"{edge}.{me.name}.{kind}", params)
            cur = dst
    child.meta.setdefault("modules", []).append(
        {"edge": edge, "module": m.name, "widths": {b: w[b] for b in m.blobs}, "new_edges": list(new)})
    return child, tuple(new)
