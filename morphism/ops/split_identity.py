"""``split_identity``: one scaled identity edge becomes two parallel ones (the first half of the
modular-morphing paper's block morph).

Site: an :class:`~morphnas.morphism.layers.Identity` edge with a non-zero scale ``s`` (a residual
shortcut, or a branch left by an earlier split). It is replaced by ``<site>.0`` scaled ``r·s`` and
``<site>.1`` scaled ``(1-r)·s`` between the same blobs (``r = ratio``, 0.5 by default as in the
paper). With ``r = 0.5`` the branches are bit-exact halves of the original product; only the
order of summation at the join can differ in the last bit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from ..errors import NotApplicable
from ..graph import Network
from ..layers import Identity
from ..schema import rule
from ._sites import join_problem, require_edge, require_sum_join
from .base import MorphOp, register_op, registered


def split_identity_edge(net: Network, site: str, ratio: float = 0.5) -> tuple[str, str]:
    """Replace identity edge ``site`` of ``net`` in place by two parallel scaled identities.

    Used by :class:`SplitIdentity` and by ``morph_block`` (which works on one copy for speed).
    Returns the two new edge names, the ``ratio`` part first.
    """
    e = net.remove_edge(site)
    if not isinstance(e.layer, Identity):  # callers check the site first
        raise RuntimeError(f"split_identity_edge: edge {site!r} is not an identity but a {e.layer.kind}")
    s = e.layer.scale
    first = net.fresh_name(f"{site}.0")
    net.add_edge(e.src, e.dst, Identity(s * ratio), first, params={})
    second = net.fresh_name(f"{site}.1")
    # s - s*ratio rather than s*(1-ratio): with ratio 0.5 both halves are the exact half of s.
    net.add_edge(e.src, e.dst, Identity(s - s * ratio), second, params={})
    return first, second


def check_identity_site(net: Network, site: str, op: str) -> Identity:
    """The identity layer at ``site``, or ``NotApplicable`` naming what is wrong."""
    e = require_edge(net, site, op)
    layer = e.layer
    require_sum_join(net, e, op)
    if not isinstance(layer, Identity):
        raise NotApplicable(f"{op}: site {site!r} is a {layer.kind}, not an identity edge; "
                            f"list valid sites with `morphnas morph NET --op {op} --list-sites`")
    if layer.scale == 0.0:
        raise NotApplicable(f"{op}: identity edge {site!r} has scale 0 (it carries nothing to split or morph)")
    return layer


@register_op
class SplitIdentity(MorphOp):
    name = "split_identity"
    site_kind = "edge"
    description = "split a scaled identity edge (residual shortcut) into two parallel scaled identities"
    order = 80

    @dataclass(frozen=True)
    class Params:
        # share of the scale given to the first branch
        ratio: float = field(default=0.5, metadata=rule(gt=0, lt=1, fix="; choose 0 < ratio < 1"))

    def sites(self, net: Network) -> list[str]:
        return sorted(e.name for e in net.edges()
                      if isinstance(e.layer, Identity) and e.layer.scale != 0.0 and not join_problem(net, e))

    def check(self, net: Network, site: str, params: Any) -> None:
        check_identity_site(net, site, self.name)

    def _apply(self, net: Network, site: str, params: Any, rng: np.random.Generator):
        child = net.copy()
        a, b = split_identity_edge(child, site, params.ratio)
        sa, sb = (cast(Identity, child.edge(n).layer).scale for n in (a, b))
        return child, {"mode": "exact", "new_edges": (a, b), "removed_edges": (site,),
                       "notes": f"scales {sa:g} + {sb:g}"}


OP = registered(SplitIdentity)   # the registered instance
