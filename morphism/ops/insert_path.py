"""``insert_path``: morph a scaled identity edge into conv k1 -> BN -> PReLU -> conv k2 -> BN.

This is the second half of the modular-morphing paper's block morph (``morph_<k1>c<k2>``). The
identity ``s·x`` on a ``(C, H, W)`` blob is exactly replaced because:

* ``F2 ∘ F1 = s·I`` (a centred delta), solved by :func:`morphnas.morphism.solver.decompose.decompose`
  with target ``s·I`` as a 1x1 filter: dense where the capacity allows (1c1 at any width >= C,
  3c1/3c3 with a widened intermediate ``width``), sparse otherwise (F1 centre-only: its
  off-centre taps are zero, the record's zero fraction says how much);
* both BNs are inserted as identities (γ = sqrt(var + eps), β = mean, with mean 0, var 1 until
  :func:`calibrate_identity_bns` sets data statistics), the activation is a PReLU with slope 1
  (``act="relu"`` etc.: a parametric activation ``(1-a)·relu + a·id`` with a = 1; ``"none"``: no activation);
* borders: per-layer zero padding is exact when one factor is centre-only; a dense chain of two
  k > 1 convs instead runs "pad once": a ``Pad(r)`` edge then both convs unpadded.

New edges are named ``<prefix>.conv1/.bn1/.prelu1/.conv2/.bn2`` (+ ``.pad``) where the prefix is
the site's name (the identity edge is removed first), blobs ``<prefix>.c1`` ...
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from ..errors import NotApplicable
from ..graph import Network
from ..layers import BatchNorm2d, Conv2d, Identity, Pad
from ..solver.decompose import decompose, min_dense_width
from ..solver.linsolve import is_centre_only
from ._identity import ACT_CHOICES, Splicer, bn_identity_params, identity_activation
from ._sites import feature_channels, require_edge
from .base import MorphOp

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
    if feature_channels(net, e.src) is None:
        raise NotApplicable(f"{op}: identity edge {site!r} carries a flat blob; a conv path needs a (C, H, W) map")
    if width is not None and width < 1:
        raise NotApplicable(f"{op}: width must be a positive channel count, got width={width}")


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


@torch.no_grad()
def calibrate_identity_bns(net: Network, edges: list[str] | tuple[str, ...], x: torch.Tensor,
                           train_mode: bool = True) -> Network:
    """A copy of ``net`` whose identity BNs ``edges`` hold the statistics of their inputs on ``x``.

    Still the identity in eval mode (γ = sqrt(var + eps), β = mean). In train mode a BN normalises
    by batch statistics, so an identity BN with made-up statistics (mean 0, var 1) changes the
    function as soon as fine-tuning starts; with the statistics of a training batch it stays close
    to the identity. ``train_mode`` measures them as fine-tuning will see them: the other BNs on
    batch statistics, the listed ones as identities. Edges that are not identity BNs (any op's
    ``record.new_edges`` may be passed) are left alone.
    """
    from ..compile import compile_network
    out = net.copy()
    gm = compile_network(out).train(train_mode)
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    for name in edges:
        if not (out.has_edge(name) and isinstance(out.edge(name).layer, BatchNorm2d) and _is_identity_bn(out, name)):
            continue
        mod = gm.get_submodule(name).eval()   # the identity it is, while the rest runs as in training
        hooks.append(mod.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, i[0].detach())))
    gm(x.to(out.dtype))
    for h in hooks:
        h.remove()
    for name, t in seen.items():
        layer = cast(BatchNorm2d, out.edge(name).layer)   # only identity BNs were hooked
        mean, var = t.double().mean((0, 2, 3)), t.double().var((0, 2, 3), unbiased=False)
        out.replace_layer(name, layer, bn_identity_params(layer.num_features, out.dtype, mean, var, layer.eps))
    return out


def _is_identity_bn(net: Network, name: str) -> bool:
    p, eps = net.params[name], cast(BatchNorm2d, net.edge(name).layer).eps
    w = torch.sqrt(p["running_var"].double() + eps)
    return bool(torch.allclose(p["weight"].double(), w, rtol=1e-6) and torch.allclose(p["bias"], p["running_mean"]))


class InsertPath(MorphOp):
    name = "insert_path"
    site_kind = "edge"
    description = "morph a scaled identity edge into conv k1 -> BN -> PReLU -> conv k2 -> BN (exact)"

    @dataclass(frozen=True)
    class Params:
        k1: int = 1
        k2: int = 1
        width: int | None = None       # intermediate width; default the blob's, or for mode=dense the
                                       # smallest width with a dense exact solution
        mode: str = "auto"             # auto | dense | sparse | approx (see solver.decompose)
        act: str = "prelu"             # prelu | a function name (parametric, a = 1) | none

        def __post_init__(self) -> None:
            _check_kernels(self.k1, self.k2)
            if self.mode not in MODES:
                raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
            if self.act not in ACTS:
                raise ValueError(f"act must be one of {', '.join(ACTS)}, got {self.act!r}")

    def sites(self, net: Network) -> list[str]:
        shapes = net.shapes()
        return sorted(e.name for e in net.edges()
                      if isinstance(e.layer, Identity) and e.layer.scale != 0.0 and len(shapes[e.src]) == 3)

    def check(self, net: Network, site: str, params: Any) -> None:
        check_path_site(net, site, self.name, params.width)

    def _apply(self, net: Network, site: str, params: Any, rng: np.random.Generator):
        child = net.copy()
        res = insert_path_edges(child, site, params.k1, params.k2, params.width, params.mode, params.act, rng)
        return child, record_fields(res, removed=(site,))


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


def _check_kernels(k1: int, k2: int) -> None:
    for name, k in (("k1", k1), ("k2", k2)):
        if not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise ValueError(f"{name} must be an odd kernel size >= 1, got {name}={k!r}")


OP = InsertPath()
