"""Identity-edge -> conv path surgery shared by ``insert_path`` and ``morph_block`` (not an op).

:func:`insert_path_edges` replaces a scaled identity edge ``s·x`` on a ``(C, H, W)`` blob by
conv k1 -> BN -> activation -> conv k2 -> BN with ``F2 ∘ F1 = s·I`` (see ``insert_path``'s
docstring for the numerics); :func:`record_fields` turns one or more such paths into record
fields. Lives apart from the op modules so that neither op imports the other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from ..errors import NotApplicable
from ..graph import Network
from ..identity import ACT_CHOICES, bn_identity_params, identity_activation
from ..layers import BatchNorm2d, Conv2d, Identity, Pad
from ..solver.decompose import decompose, min_dense_width
from ..solver.linsolve import is_centre_only
from ._sites import feature_channels, require_edge, require_sum_join
from ._splice import Splicer

ACTS = (*ACT_CHOICES, "none")
MODES = ("auto", "dense", "sparse", "approx")


@dataclass(frozen=True)
class PathResult:
    """What :func:`insert_path_edges` built (the record fields of insert_path / morph_block)."""

    new_edges: tuple[str, ...]
    mode: str               # the decomposition's: dense | sparse | approx
    residual: float         # relative filter residual of F2 ∘ F1 against s·I
    zero_fraction: float    # share of exact zeros in F1 and F2
    pad_once: bool


def check_path_site(net: Network, site: str, op: str, width: int | None) -> None:
    """``NotApplicable`` unless ``site`` is a non-zero identity on a feature map.

    Any odd kernels fit any map: per-layer padding keeps the size, pad-once pads by the chain's
    radius. Whether the decomposition exists at ``width`` is the solver's call (it names the
    width that would work)."""
    e = require_edge(net, site, op)
    if not isinstance(e.layer, Identity):
        raise NotApplicable(f"{op}: site {site!r} is a {e.layer.kind}, not an identity edge; list valid sites with "
                            f"`morphnas morph NET --op {op} --list-sites`")
    if e.layer.scale == 0.0:
        raise NotApplicable(f"{op}: identity edge {site!r} has scale 0; there is no function to carry")
    require_sum_join(net, e, op)
    if feature_channels(net, e.src) is None:
        raise NotApplicable(f"{op}: identity edge {site!r} carries a flat blob; a conv path needs a (C, H, W) map")


def insert_path_edges(net: Network, site: str, k1: int, k2: int, width: int | None, mode: str, act: str,
                      rng: np.random.Generator, prefix: str | None = None,
                      channels: int | None = None) -> PathResult:
    """Replace identity edge ``site`` of ``net`` in place by the path (see the module docstring).

    ``channels`` (the blob's) saves a shape inference when the caller knows it."""
    c = channels if channels is not None else feature_channels(net, net.edge(site).src)
    if c is None:  # check_identity_path_site refuses flat blobs
        raise RuntimeError(f"insert_path: identity edge {site!r} does not carry a (C, H, W) feature map")
    e = net.remove_edge(site)
    scale = cast(Identity, e.layer).scale   # the site check refused anything else
    mid = int(width) if width else c
    if mode == "dense" and not width:
        # Asked for dense without a width: widen the intermediate just enough to make it possible.
        mid = max(c, min_dense_width(c, c, k1, k2, 1))
    target = torch.zeros(c, c, 1, 1, dtype=torch.float64)
    target[torch.arange(c), torch.arange(c), 0, 0] = scale
    dec = decompose(target, k1, k2, mid=mid, mode=mode, rng=rng)
    f1, f2 = dec.f1, dec.f2
    pad_once = not (is_centre_only(f1) or is_centre_only(f2))
    dtype = net.dtype
    prefix = prefix or site
    sp = Splicer(net, prefix)
    edge, blob = sp.edge, sp.blob

    src = e.src
    if pad_once:
        r = (k1 - 1) // 2 + (k2 - 1) // 2
        p = blob("p")
        edge(src, p, Pad(r), "pad", {})
        src, pad1, pad2 = p, 0, 0
    else:
        pad1, pad2 = k1 // 2, k2 // 2
    c1 = blob("c1")
    edge(src, c1, Conv2d(c, mid, k1, 1, pad1), "conv1", {"weight": f1.to(dtype)})
    b1 = blob("b1")
    edge(c1, b1, BatchNorm2d(mid), "bn1", bn_identity_params(mid, dtype))
    made = identity_activation(act, mid, dtype)
    if made is not None:
        a1 = blob("a1")
        edge(b1, a1, made[0], "prelu1" if act == "prelu" else "act1", made[1])
        b1 = a1
    c2 = blob("c2")
    edge(b1, c2, Conv2d(mid, c, k2, 1, pad2), "conv2", {"weight": f2.to(dtype)})
    edge(c2, e.dst, BatchNorm2d(c), "bn2", bn_identity_params(c, dtype))
    return PathResult(tuple(sp.new_edges), dec.mode, float(dec.residual), float(dec.zero_fraction), pad_once)


def record_fields(res: PathResult | list[PathResult], removed: tuple[str, ...] = (), notes: str = "") -> dict[str, Any]:
    """Record fields (mode, zero fraction, error, edges, notes) for one or more inserted paths."""
    results = res if isinstance(res, list) else [res]
    modes = {r.mode for r in results}
    mode = "approximate" if "approx" in modes else ("exact-sparse" if "sparse" in modes else "exact-dense")
    residual = max(r.residual for r in results)
    parts = [f"path {r.new_edges[0].rsplit('.', 1)[0]}: {r.mode}, residual {r.residual:.2e}, zeros "
             f"{r.zero_fraction:.3f}{', pad once' if r.pad_once else ''}" for r in results]
    zf = sum(r.zero_fraction for r in results) / len(results)
    return {"mode": mode, "zero_fraction": zf, "error": residual if mode == "approximate" else None,
            "new_edges": tuple(n for r in results for n in r.new_edges), "removed_edges": removed,
            "notes": "; ".join(([notes] if notes else []) + parts)}
