"""``prune_channels``: remove channels of a blob, and of every blob tied to it (its channel group).

The shrinking counterpart of ``widen``, on the same unit: the :class:`~..channel_groups.ChannelGroup`
of the site blob (a whole residual stage, with its sums, shortcuts, BNs and activations). Removing
channel ``c`` drops row ``c`` of every producer (the convs / linears writing the group), entry ``c``
of every channel-wise layer inside it (BN statistics and affine, PReLU / PAct slopes, depthwise
filters) and column ``c`` of every consumer (reading it; ``H·W`` columns after a flatten).

Which channels go (``method``), cheapest in error first:

* *silent* channels, whose outgoing (consumer) weights are all zero (NetMorph widening makes them):
  removing them is exact;
* *duplicates* (Net2Net's reverse mapping): channels whose producer rows, biases and channel-wise
  parameters are bit-identical to a lower-numbered channel's compute the same values, so the
  duplicate is merged into it by adding its consumer columns to the kept channel's: exact (a
  Net2WiderNet replica is one, and merging it undoes the widening);
* the rest by the smallest L2 norm of their producer rows (all producers' rows of the channel
  together): approximate.

``auto`` takes them in that order; ``norm`` uses only the norm ranking (ties by index); ``merge``
only exact silent/duplicate removals and refuses a site with too few of them. The record is exact
(error 0) when only silent and duplicate channels went, else approximate with the measured error.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from ..channel_groups import ChannelGroup, all_groups, channel_group, is_depthwise, transformer_problem
from ..errors import NotApplicable, SpecError
from ..graph import Network
from ..layers import BatchNorm2d, Conv2d, Linear, PAct, PReLU
from ..schema import rule
from ._shrink import shrink_record
from ._sites import require_blob
from .base import MAX_WIDTH, MorphOp, register_op, registered


@dataclass(frozen=True)
class PruneParams:
    # share of the group's channels removed (rounded, at least 1) unless `channels` is given
    fraction: float = field(default=0.25, metadata=rule(gt=0, lt=1, fix="; remove a share in (0, 1)"))
    channels: int | None = field(default=None, metadata=rule(ge=1, le=MAX_WIDTH))   # how many to remove
    method: Literal["auto", "norm", "merge"] = "auto"


def _count(c: int, p: PruneParams) -> int:
    return int(p.channels) if p.channels is not None else max(1, int(round(c * p.fraction)))


def _flat(index: np.ndarray, m: int) -> torch.Tensor:
    """Feature indices of channels ``index`` in a blob of multiplicity ``m`` (flattened C, H, W)."""
    return torch.as_tensor((np.asarray(index, dtype=np.int64)[:, None] * m + np.arange(m)[None, :]).reshape(-1))


def _rows(net: Network, g: ChannelGroup, c: int) -> list[torch.Tensor]:
    """Everything that determines the values of channel ``c`` in the group, as flat float64 vectors."""
    out = []
    for name in g.producers:
        e = net.edge(name)
        idx = _flat(np.array([c]), g.blobs[e.dst])
        p = net.params[name]
        out.append(p["weight"][idx].double().reshape(-1))
        if "bias" in p:
            out.append(p["bias"][idx].double().reshape(-1))
    for name in g.internal:
        e = net.edge(name)
        idx = _flat(np.array([c]), g.blobs[e.src])
        for k, t in sorted(net.params[name].items()):
            if t.dim() and t.is_floating_point() and t.shape[0] == g.channels * g.blobs[e.src]:
                out.append(t[idx].double().reshape(-1))
    return out


def _silent(net: Network, g: ChannelGroup, c: int) -> bool:
    for name in g.consumers:
        e = net.edge(name)
        if bool(net.params[name]["weight"][:, _flat(np.array([c]), g.blobs[e.src])].any()):
            return False
    return True


def plan(net: Network, g: ChannelGroup, n: int, method: str) -> tuple[list[int], dict[int, int], bool]:
    """The ``n`` channels to remove, the duplicates among them (removed -> kept channel whose consumer
    columns absorb it), and whether the plan is exact (only silent and duplicate channels)."""
    c_all = g.channels
    if method == "norm":
        return _by_norm(net, g, list(range(c_all)), n), {}, False
    removed: list[int] = [c for c in range(c_all) if _silent(net, g, c)][:n]   # n < c_all: one stays
    merges: dict[int, int] = {}
    rows = {c: _rows(net, g, c) for c in range(c_all)}
    for c in range(c_all):
        if len(removed) >= n:
            break
        if c in removed:
            continue
        for k in range(c):
            if k not in removed and k not in merges and all(torch.equal(a, b) for a, b in zip(rows[c], rows[k])):
                merges[c] = k
                removed.append(c)
                break
    exact = len(removed) >= n
    if not exact:
        if method == "merge":
            raise NotApplicable(f"prune_channels: the group has only {len(removed)} silent or duplicate channel(s), "
                                f"fewer than the {n} asked; set channels={len(removed)} or method=auto")
        rest = [c for c in range(c_all) if c not in removed]
        removed += _by_norm(net, g, rest, n - len(removed))
    return sorted(removed), merges, exact


def _by_norm(net: Network, g: ChannelGroup, candidates: list[int], n: int) -> list[int]:
    norms = [float(sum(float((r ** 2).sum()) for r in _rows(net, g, c)[:_n_producer_rows(net, g)])) for c in candidates]
    order = sorted(range(len(candidates)), key=lambda i: (norms[i], candidates[i]))
    return sorted(candidates[i] for i in order[:n])


def _n_producer_rows(net: Network, g: ChannelGroup) -> int:
    return sum(1 + ("bias" in net.params[name]) for name in g.producers)


def prune_group(net: Network, g: ChannelGroup, removed: list[int], merges: dict[int, int]) -> None:
    """Remove channels ``removed`` from group ``g`` of ``net`` in place; duplicates in ``merges`` hand
    their consumer columns to the channel they copy first."""
    keep = np.array([c for c in range(g.channels) if c not in set(removed)], dtype=np.int64)
    n_keep = len(keep)
    for name in g.producers:
        e = net.edge(name)
        idx = _flat(keep, g.blobs[e.dst])
        p = dict(net.params[name])
        p["weight"] = p["weight"][idx].clone()
        if "bias" in p:
            p["bias"] = p["bias"][idx].clone()
        net.replace_layer(name, _resize(e.layer, out=len(idx)), p)
    for name in g.consumers:
        e = net.edge(name)
        m = g.blobs[e.src]
        p = dict(net.params[name])
        w = p["weight"].double().clone()
        for dup, kept in sorted(merges.items()):
            w[:, _flat(np.array([kept]), m)] += w[:, _flat(np.array([dup]), m)]
        idx = _flat(keep, m)
        p["weight"] = w[:, idx].to(p["weight"].dtype)
        net.replace_layer(name, _resize(net.edge(name).layer, inp=len(idx)), p)
    for name in g.internal:
        e = net.edge(name)
        idx = _flat(keep, g.blobs[e.src])
        layer = e.layer
        if isinstance(layer, BatchNorm2d):
            p = {k: (t[idx].clone() if t.dim() else t) for k, t in net.params[name].items()}
            net.replace_layer(name, dataclasses.replace(layer, num_features=n_keep), p)
        elif isinstance(layer, PReLU) and layer.num_parameters != 1:
            net.replace_layer(name, dataclasses.replace(layer, num_parameters=len(idx)),
                              {"weight": net.params[name]["weight"][idx].clone()})
        elif is_depthwise(layer):
            p = {k: t[idx].clone() for k, t in net.params[name].items()}
            net.replace_layer(name, dataclasses.replace(layer, in_channels=n_keep, out_channels=n_keep, groups=n_keep), p)
        elif isinstance(layer, PAct) and layer.per_channel:
            net.replace_layer(name, dataclasses.replace(layer, channels=len(idx)), {"a": net.params[name]["a"][idx].clone()})


def _resize(layer: Any, out: int | None = None, inp: int | None = None) -> Any:
    if isinstance(layer, Conv2d):
        return dataclasses.replace(layer, out_channels=out or layer.out_channels, in_channels=inp or layer.in_channels)
    if isinstance(layer, Linear):
        return dataclasses.replace(layer, out_features=out or layer.out_features, in_features=inp or layer.in_features)
    raise SpecError(f"prune_channels cannot resize a {layer.kind}")   # channel groups list only convs and linears


@register_op
class PruneChannels(MorphOp):
    name = "prune_channels"
    site_kind = "blob"
    description = "remove a blob's channel-group channels: silent or duplicate ones exactly, else the smallest norm"
    Params = PruneParams
    approximate = True
    order = 130

    def sites(self, net: Network) -> list[str]:
        return sorted(b for g in all_groups(net) if not g.problem and not g.wide and g.channels > 1
                      and not transformer_problem(net, g, self.name) for b in g.blobs)

    def check(self, net: Network, site: str, params: PruneParams) -> None:
        require_blob(net, site, self.name)
        if site in (net.input_blob, net.output_blob):
            raise NotApplicable(f"prune_channels: blob {site!r} is the network's "
                                f"{'input' if site == net.input_blob else 'output'}; its size is fixed")
        g = channel_group(net, site)
        if g.problem:
            raise NotApplicable(f"prune_channels: cannot prune blob {site!r}: {g.problem}")
        problem = transformer_problem(net, g, self.name)
        if problem:
            raise NotApplicable(f"prune_channels: cannot prune blob {site!r}: {problem}")
        if g.wide:   # (H11) concat slices: widen's offsets are not handled here
            raise NotApplicable(f"prune_channels: blob {site!r} reaches the channel concatenation "
                                f"{next(iter(g.wide))!r}; pruning through concatenations is not supported")
        n = _count(g.channels, params)
        if n >= g.channels:
            raise NotApplicable(f"prune_channels: blob {site!r} has {g.channels} channel(s); at least one must stay, "
                                f"so remove fewer than {g.channels} (got {n})")
        if params.method == "merge":
            plan(net, g, n, "merge")

    def _apply(self, net: Network, site: str, params: PruneParams, rng: np.random.Generator):
        child = net.copy()
        g = channel_group(child, site)
        n = _count(g.channels, params)
        removed, merges, exact = plan(child, g, n, params.method)
        prune_group(child, g, removed, merges)
        notes = (f"{len(g.blobs)} blob(s) {g.channels} -> {g.channels - n} channels; removed {removed}"
                 + (f"; merged duplicates {dict(sorted(merges.items()))}" if merges else ""))
        return child, shrink_record(net, child, exact, notes=notes)


OP = registered(PruneChannels)   # the registered instance
