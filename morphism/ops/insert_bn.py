"""``insert_bn``: a batch norm after a feature-map blob that leaves the function unchanged.

``mode="exact"`` (default): ``gamma = sqrt(var + eps)``, ``beta = mean``, the identity in eval mode
for any running statistics. The statistics only matter for training (BN then normalises with
batch statistics, so statistics close to the blob's keep fine-tuning close to the parent):

* ``mean``/``var`` params: given per-channel values, e.g. the blob's data statistics from
  :func:`blob_statistics` (kept in the record, so a replay rebuilds the same network);
* else ``stats="auto"``: when the blob comes straight out of a BN, that BN's known output
  statistics (mean ``beta``, variance ``gamma^2``); otherwise mean 0, var 1 (``stats="unit"``).

``mode="paper"``: the modular-morphing paper's cheaper ``gamma = 1``, ``beta = 0``; it normalises
the blob, so it is approximate: the record's ``error`` is the measured float64 relative output
error on seeded Gaussian inputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import networkx as nx
import numpy as np
import torch

from ..compile import compile_network
from ..errors import NotApplicable, SpecError
from ..graph import Network
from ..identity import bn_identity_params
from ..layers import BatchNorm2d
from ..schema import rule
from ..verify import output_diff
from ._sites import require_blob
from ._splice import feature_blob_sites, insert_after_blob
from .base import MAX_WIDTH, MorphOp, register_op, registered

MODES = ("exact", "paper")
STATS = ("auto", "unit", "preceding")


@dataclass(frozen=True)
class InsertBNParams:
    mode: Literal["exact", "paper"] = "exact"
    stats: Literal["auto", "unit", "preceding"] = "auto"   # when mean/var are not given
    mean: tuple[float, ...] | None = None     # per-channel running mean to use
    var: tuple[float, ...] | None = None      # per-channel running variance to use
    eps: float = field(default=1e-5, metadata=rule(gt=0, le=1))

    def _validate(self, where: Any) -> None:
        if (self.mean is None) != (self.var is None):
            raise SpecError("op insert_bn parameters 'mean' and 'var': give both or neither")
        for key in ("mean", "var"):
            v = getattr(self, key)
            if v is not None and len(v) > MAX_WIDTH:
                raise SpecError(f"op insert_bn parameter {key!r} has {len(v)} values; at most {MAX_WIDTH} channels")
        if self.var is not None and self.var and min(self.var) < 0:
            raise SpecError(f"op insert_bn parameter 'var' must be >= 0 per channel, got min {min(self.var)}")


def _preceding_bn(net: Network, blob: str):
    ins = net.in_edges(blob)
    if len(ins) == 1 and isinstance(ins[0].layer, BatchNorm2d):
        return ins[0]
    return None


@register_op
class InsertBN(MorphOp):
    name = "insert_bn"
    site_kind = "blob"
    description = "insert a batch norm after a feature-map blob: identity (exact) or the paper's gamma=1, beta=0"
    Params = InsertBNParams
    order = 70

    def sites(self, net: Network) -> list[str]:
        return feature_blob_sites(net)

    def check(self, net: Network, site: str, params: InsertBNParams) -> None:
        blob = require_blob(net, site, self.name, inner=True)
        shape = net.shapes().get(blob, ())
        if len(shape) != 3:
            raise NotApplicable(f"insert_bn: blob {blob!r} has shape {tuple(shape)}, not a (C, H, W) feature map")
        if params.stats == "preceding" and params.mean is None and _preceding_bn(net, blob) is None:
            raise NotApplicable(f"insert_bn: stats=preceding needs blob {blob!r} to come straight out of a BN; "
                                f"use stats=auto or unit")
        c = shape[0]
        for key in ("mean", "var"):
            v = getattr(params, key)
            if v is not None and len(v) != c:
                raise NotApplicable(f"insert_bn: {key} has {len(v)} values but blob {blob!r} has {c} channels")

    def _stats(self, net: Network, blob: str, c: int, p: InsertBNParams) -> tuple[torch.Tensor, torch.Tensor, str]:
        if p.mean is not None:
            return (torch.tensor(p.mean, dtype=torch.float64), torch.tensor(p.var, dtype=torch.float64), "given")
        bn = _preceding_bn(net, blob) if p.stats in ("auto", "preceding") else None
        if bn is not None:
            t = net.params[bn.name]
            return t["bias"].double().clone(), t["weight"].double() ** 2, f"preceding BN {bn.name!r}"
        return torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64), "unit"

    def _apply(self, net: Network, site: str, p: InsertBNParams, rng: np.random.Generator):
        blob = require_blob(net, site, self.name, inner=True)
        child = net.copy()
        dtype = child.dtype
        c = child.shapes()[blob][0]
        mean, var, source = self._stats(net, blob, c, p)
        params = bn_identity_params(c, dtype, mean, var, p.eps)
        if p.mode == "paper":
            params["weight"] = torch.ones(c, dtype=dtype)
            params["bias"] = torch.zeros(c, dtype=dtype)
        _, names = insert_after_blob(child, blob, [(BatchNorm2d(c, p.eps), params, "bn")])
        extra = {"new_edges": tuple(names)}
        if p.mode == "exact":
            return child, {**extra, "mode": "exact", "notes": f"identity BN, running stats: {source}"}
        err = output_diff(net, child, dtype=torch.float64, batch=2, seed=0).rel_err
        return child, {**extra, "mode": "approximate", "error": err,
                       "notes": f"paper BN (gamma=1, beta=0), running stats: {source}; error = float64 relative "
                                f"output error on 2 seeded Gaussian inputs"}


@torch.no_grad()
def blob_statistics(net: Network, blob: str, x: torch.Tensor) -> dict[str, tuple[float, ...]]:
    """Per-channel ``mean`` and (biased) ``var`` of ``blob`` on the batch ``x`` in eval mode, as
    ``insert_bn`` params: ``apply_op(net, "insert_bn", blob, {**blob_statistics(net, blob, x)})``."""
    if not net.has_blob(blob):
        raise NotApplicable(f"insert_bn: no blob named {blob!r} in the network")
    sub = net.copy()
    keep = set(nx.ancestors(sub.graph, blob)) | {blob}
    for e in list(sub.edges()):
        if e.dst not in keep:
            sub.remove_edge(e.name)
    for b in list(sub.graph.nodes):
        if b not in keep and b != sub.output_blob:
            sub.remove_blob(b)
    sub.graph.remove_node(sub.output_blob)
    sub.output_blob = blob
    y = compile_network(sub).eval()(x.to(sub.dtype))
    if y.dim() != 4:
        raise NotApplicable(f"insert_bn: blob {blob!r} is not a (C, H, W) feature map")
    y = y.double()
    return {"mean": tuple(y.mean(dim=(0, 2, 3)).tolist()), "var": tuple(y.var(dim=(0, 2, 3), unbiased=False).tolist())}


OP = registered(InsertBN)   # the registered instance
