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
two); :func:`morph_blocks` morphs many blocks on a single copy with a single lint, which is how
a paper variant (every eligible block of ResNet-110) is best derived.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from ..errors import NotApplicable
from ..graph import Network
from ..layers import Identity
from ..lint import lint
from ._sites import feature_channels
from .base import MorphOp, MorphRecord, _jsonable
from .insert_path import ACTS, MODES, _check_kernels, check_path_site, insert_path_edges, record_fields


class MorphBlock(MorphOp):
    name = "morph_block"
    site_kind = "edge"
    description = "split a block's identity shortcut and morph one (or both) halves into conv-BN-PReLU-conv-BN"

    @dataclass(frozen=True)
    class Params:
        k1: int = 1
        k2: int = 1
        branches: int = 1              # 1: morph_<k1>c<k2>; 2: morph_<k1>c<k2>_2branch
        mode: str = "auto"             # auto | dense | sparse | approx (see solver.decompose)
        width: int | None = None       # intermediate width of each path (default: the block's; for
                                       # mode=dense the smallest width with a dense exact solution)
        act: str = "prelu"             # prelu | a function name (parametric, a = 1) | none

        def __post_init__(self) -> None:
            _check_kernels(self.k1, self.k2)
            if self.branches not in (1, 2):
                raise ValueError(f"branches must be 1 or 2, got branches={self.branches!r}")
            if self.mode not in MODES:
                raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
            if self.act not in ACTS:
                raise ValueError(f"act must be one of {', '.join(ACTS)}, got {self.act!r}")

    def sites(self, net: Network) -> list[str]:
        shapes = net.shapes()
        return sorted(e.name for e in net.edges()
                      if isinstance(e.layer, Identity) and e.layer.scale != 0.0 and len(shapes[e.src]) == 3
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


def morph_blocks(net: Network, sites: list[str], params: Any = None, seed: int = 0
                 ) -> tuple[Network, list[MorphRecord]]:
    """``morph_block`` at every site in turn, on one copy of ``net`` linted once at the end.

    The child and the records are exactly those of ``apply_op(..., "morph_block", sites[i], params,
    seed=seed + i)`` applied one after the other (so ``replay`` rebuilds it), without a copy and a
    lint per block: deriving a paper variant of ResNet-110 (51 blocks) this way is several times
    faster.
    """
    p = OP.parse_params(params)
    child = net.copy()
    records = []
    for i, site in enumerate(sites):
        OP.check(child, site, p)
        extra = morph_in_place(child, site, p, np.random.default_rng(seed + i))
        records.append(MorphRecord(op=OP.name, site=site, params=_jsonable(p), seed=seed + i, **extra))
    lint(child)
    return child, records


OP = MorphBlock()
