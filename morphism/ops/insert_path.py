"""``insert_path``: morph a scaled identity edge into conv k1 -> BN -> PReLU -> conv k2 -> BN.

This is the second half of the modular-morphing paper's block morph (``morph_<k1>c<k2>``). The
identity ``s·x`` on a ``(C, H, W)`` blob is exactly replaced because:

* ``F2 ∘ F1 = s·I`` (a centred delta), solved by :func:`morphnas.morphism.solver.decompose.decompose`
  with target ``s·I`` as a 1x1 filter: dense where the capacity allows (1c1 at any width >= C,
  3c1/3c3 with a widened intermediate ``width``), sparse otherwise (F1 centre-only: its
  off-centre taps are zero, the record's zero fraction says how much);
* both BNs are inserted as identities (γ = sqrt(var + eps), β = mean, with mean 0, var 1 until
  :func:`morphnas.morphism.identity.calibrate_identity_bns` sets data statistics), the activation is a PReLU with slope 1
  (``act="relu"`` etc.: a parametric activation ``(1-a)·relu + a·id`` with a = 1; ``"none"``: no activation);
* borders: per-layer zero padding is exact when one factor is centre-only; a dense chain of two
  k > 1 convs instead runs "pad once": a ``Pad(r)`` edge then both convs unpadded.

New edges are named ``<prefix>.conv1/.bn1/.prelu1/.conv2/.bn2`` (+ ``.pad``) where the prefix is
the site's name (the identity edge is removed first), blobs ``<prefix>.c1`` ...
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..graph import Network
from ..layers import Identity
from ..schema import rule
from ._paths import ACTS, check_path_site, insert_path_edges, record_fields
from ._sites import join_problem
from .base import MAX_KERNEL, MAX_WIDTH, MorphOp, odd_kernels, register_op, registered


@register_op
class InsertPath(MorphOp):
    name = "insert_path"
    site_kind = "edge"
    description = "morph a scaled identity edge into conv k1 -> BN -> PReLU -> conv k2 -> BN (exact)"
    order = 90

    @dataclass(frozen=True)
    class Params:
        k1: int = field(default=1, metadata=rule(ge=1, le=MAX_KERNEL))   # odd
        k2: int = field(default=1, metadata=rule(ge=1, le=MAX_KERNEL))   # odd
        # intermediate width; default the blob's, or for mode=dense the smallest width with a dense
        # exact solution
        width: int | None = field(default=None, metadata=rule(ge=1, le=MAX_WIDTH))
        mode: Literal["auto", "dense", "sparse", "approx"] = "auto"   # see solver.decompose
        # prelu | a function name (parametric, a = 1) | none
        act: str = field(default="prelu", metadata=rule(choices=ACTS))

        def _validate(self, where: Any) -> None:
            odd_kernels("insert_path", k1=self.k1, k2=self.k2)

    def sites(self, net: Network) -> list[str]:
        shapes = net.shapes()
        return sorted(e.name for e in net.edges()
                      if isinstance(e.layer, Identity) and e.layer.scale != 0.0 and len(shapes[e.src]) == 3
                      and not join_problem(net, e))

    def check(self, net: Network, site: str, params: Any) -> None:
        check_path_site(net, site, self.name, params.width)

    def _apply(self, net: Network, site: str, params: Any, rng: np.random.Generator):
        child = net.copy()
        res = insert_path_edges(child, site, params.k1, params.k2, params.width, params.mode, params.act, rng)
        return child, record_fields(res, removed=(site,))


OP = registered(InsertPath)   # the registered instance
