"""``deepen_depthwise``: deepen an inverted-residual block at its depthwise conv.

Site: a depthwise conv edge (``groups == in == out``, MobileNet/EfficientNet/MnasNet blocks). After
it the op inserts an identity-initialised conv, an identity BN and a parametric activation at
``a = 1`` (Net2DeeperNet), so the child computes the parent's function exactly:

* ``kind="pointwise"`` (default): a 1x1 conv with the identity matrix: the block gains channel
  mixing between its depthwise and projection convs;
* ``kind="depthwise"``: a ``k x k`` depthwise conv holding a centred delta: the block's receptive
  field grows by ``k - 1`` once trained.

``deepen`` itself factorises groups=1 convs only; a depthwise conv has one input channel per filter,
so the only exact deepening is an identity layer beside it, which is what this op adds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
import torch

from ..channel_groups import is_depthwise
from ..errors import NotApplicable
from ..graph import Network
from ..identity import ACT_CHOICES, identity_activation, identity_bn
from ..layers import Conv2d, LayerSpec
from ..schema import rule
from ._sites import require_edge
from ._splice import insert_after_blob
from .base import MAX_KERNEL, MorphOp, odd_kernels, register_op, registered, zero_fraction


@dataclass(frozen=True)
class DeepenDepthwiseParams:
    kind: Literal["pointwise", "depthwise"] = "pointwise"
    k: int = field(default=3, metadata=rule(ge=1, le=MAX_KERNEL))   # kernel of a depthwise insert (odd)
    bn: bool = True             # identity BN after the new conv
    # parametric activation (a = 1); "prelu"; None/"none"
    act: str | None = field(default="relu", metadata=rule(choices=(*ACT_CHOICES, "none")))

    def _validate(self, where: Any) -> None:
        odd_kernels("deepen_depthwise", k=self.k)


@register_op
class DeepenDepthwise(MorphOp):
    name = "deepen_depthwise"
    site_kind = "edge"
    description = "insert an identity pointwise or depthwise conv + BN + act after a depthwise conv"
    Params = DeepenDepthwiseParams
    order = 12

    def sites(self, net: Network) -> list[str]:
        return sorted(e.name for e in net.edges() if is_depthwise(e.layer) and e.dst != net.output_blob)

    def check(self, net: Network, site: str, params: Any) -> None:
        e = require_edge(net, site, self.name)
        if not is_depthwise(e.layer):
            raise NotApplicable(f"deepen_depthwise: edge {site!r} is a {e.layer.kind}"
                                f"{' with groups=' + str(e.layer.groups) if isinstance(e.layer, Conv2d) else ''}, "
                                "not a depthwise conv (groups == in == out); deepen other convs with op deepen")
        if e.dst == net.output_blob:
            raise NotApplicable(f"deepen_depthwise: edge {site!r} writes the network's output")

    def _apply(self, net: Network, site: str, p: DeepenDepthwiseParams, rng: np.random.Generator):
        child = net.copy()
        dtype = child.dtype
        c = cast(Conv2d, child.edge(site).layer).out_channels
        if p.kind == "pointwise":
            conv = Conv2d(c, c, 1)
            w = torch.eye(c, dtype=torch.float64).view(c, c, 1, 1)
        else:
            conv = Conv2d(c, c, p.k, 1, p.k // 2, groups=c)
            w = torch.zeros(c, 1, p.k, p.k, dtype=torch.float64)
            w[:, 0, p.k // 2, p.k // 2] = 1.0
        layers: list[tuple[LayerSpec, dict[str, torch.Tensor], str]] = [(conv, {"weight": w.to(dtype)}, "conv")]
        if p.bn:
            spec, params = identity_bn(c, dtype)
            layers.append((spec, params, "bn"))
        act = identity_activation(p.act, c, dtype)
        if act is not None:
            layers.append((act[0], act[1], "act"))
        _, names = insert_after_blob(child, child.edge(site).dst, layers, prefix=f"{site}_deep")
        return child, {"mode": "exact-sparse", "zero_fraction": zero_fraction(w), "new_edges": tuple(names),
                       "notes": f"identity {p.kind} conv after {site!r}"}


OP = registered(DeepenDepthwise)   # the registered instance
