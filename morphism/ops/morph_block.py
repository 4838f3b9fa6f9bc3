"""``morph_block``: the modular-morphing paper's per-block macro, as one op.

Site: the identity shortcut of a residual block (an identity edge into a blob that sums it with
another branch, e.g. ``layer1.1.shortcut``). The shortcut ``s·x`` is split into two branches of
``s/2`` (``split_identity``) and one of them (``branches=1``, ``morph_<k1>c<k2>``) or both
(``branches=2``, ``morph_<k1>c<k2>_2branch``) becomes conv k1 -> BN -> PReLU -> conv k2 -> BN
(``insert_path``). Exact; the record gives the decomposition mode and zero fraction.

Names: with one branch the shortcut keeps its name (now scaled ``s/2``) and the path is
``layer1.1.morph.conv1`` ...; with two, the shortcut is removed and the paths are
``layer1.1.morph0.*`` and ``layer1.1.morph1.*``. (A shortcut not named ``*.shortcut`` gives
``<site>_morph*``.) Split and path happen on one copy of the network (one copy per block, not
two); :func:`morphnas.morphism.blocks.morph_blocks` morphs many blocks on a single copy with a single lint, which is how
a paper variant (every eligible block of ResNet-110) is best derived.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np

from ..errors import NotApplicable
from ..graph import Network
from ..layers import Identity
from ..schema import rule
from ._paths import ACTS, check_path_site, insert_path_edges, record_fields
from ._sites import feature_channels, join_problem
from .base import MAX_KERNEL, MAX_WIDTH, MorphOp, odd_kernels, register_op, registered


@register_op
class MorphBlock(MorphOp):
    name = "morph_block"
    site_kind = "edge"
    description = "split a block's identity shortcut and morph one (or both) halves into conv-BN-PReLU-conv-BN"
    order = 100

    @dataclass(frozen=True)
    class Params:
        k1: int = field(default=1, metadata=rule(ge=1, le=MAX_KERNEL))   # odd
        k2: int = field(default=1, metadata=rule(ge=1, le=MAX_KERNEL))   # odd
        # 1: morph_<k1>c<k2>; 2: morph_<k1>c<k2>_2branch
        branches: int = field(default=1, metadata=rule(choices=(1, 2)))
        mode: Literal["auto", "dense", "sparse", "approx"] = "auto"   # see solver.decompose
        # intermediate width of each path (default: the block's; for mode=dense the smallest width
        # with a dense exact solution)
        width: int | None = field(default=None, metadata=rule(ge=1, le=MAX_WIDTH))
        # prelu | a function name (parametric, a = 1) | none
        act: str = field(default="prelu", metadata=rule(choices=ACTS))

        def _validate(self, where: Any) -> None:
            odd_kernels("morph_block", k1=self.k1, k2=self.k2)

    def sites(self, net: Network) -> list[str]:
        shapes = net.shapes()
        return sorted(e.name for e in net.edges()
                      if isinstance(e.layer, Identity) and e.layer.scale != 0.0 and len(shapes[e.src]) == 3
                      and not join_problem(net, e)
                      and len(net.in_edges(e.dst)) >= 2)

    def check(self, net: Network, site: str, params: Any) -> None:
        check_path_site(net, site, self.name, params.width)
        dst = net.edge(site).dst
        if len(net.in_edges(dst)) < 2:
            raise NotApplicable(f"morph_block: identity edge {site!r} is not a residual shortcut (blob {dst!r} "
                                "sums nothing else); use insert_path to morph a lone identity")

    def _apply(self, net: Network, site: str, params: Any, rng: np.random.Generator):
        child = net.copy()
        return child, morph_in_place(child, site, params, rng)


def morph_in_place(child: Network, site: str, params: Any, rng: np.random.Generator) -> dict[str, Any]:
    """Morph the block of shortcut ``site`` in ``child`` itself; returns the record fields."""
    e = child.edge(site)
    channels = feature_channels(child, e.src)
    base = site[: -len(".shortcut")] + ".morph" if site.endswith(".shortcut") else site + "_morph"
    s = cast(Identity, e.layer).scale   # check() refused anything but an identity shortcut
    removed: tuple[str, ...]
    if params.branches == 1:
        # The shortcut keeps its name, halved; the other half becomes the path.
        child.replace_layer(site, Identity(s * 0.5), {})
        bases, removed = [base], ()
    else:
        child.remove_edge(site)
        bases, removed = [f"{base}0", f"{base}1"], (site,)
    results = []
    for b in bases:
        t = child.fresh_name(b)
        child.add_edge(e.src, e.dst, Identity(s * 0.5), t, params={})
        results.append(insert_path_edges(child, t, params.k1, params.k2, params.width, params.mode,
                                         params.act, rng, prefix=t, channels=channels))
    note = f"shortcut {site} scaled {s * 0.5:g}" if params.branches == 1 else f"shortcut {site} split in two"
    return record_fields(results, removed=removed, notes=note)


OP = registered(MorphBlock)   # the registered instance
