"""``insert_branch``: a new parallel conv branch concatenated to a blob (the Inception-style branch).

Site: a **blob** that is a channel concatenation (an Inception block's output, a DenseNet layer's
features) or a recorded block's output (``net.meta["blocks"]``). The branch is
``conv k x k -> BN -> act`` from the blob's *source*: for a concatenation its immediate dominator
(the blob every path to it passes through: an Inception block's input), for a block output the
block's input; the stride follows the two spatial sizes. A block output becomes a concatenation
``concat(old output, branch)`` that its readers read instead.

Exactness: every layer the ``width`` new channels reach takes them at their offset
(:func:`~..channel_groups.insertion_group`): consumers with **zero** input weights, other producers
with zero rows, channel-wise layers with identity values (:mod:`._grow`). So the branch itself
starts random (He init, identity BN), trainable, and contributes nothing until its consumers'
weights move. The op refuses when the new channels would reach the network output or a layer
without a rule (the reason is in the message).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import torch

from ..channel_groups import insertion_group
from ..errors import NotApplicable
from ..graph import Network
from ..identity import ACT_CHOICES, identity_bn
from ..joins import CONCAT
from ..layers import Activation, Conv2d, Identity, LayerSpec, PReLU
from ..schema import rule
from ._grow import grow_group
from ._sites import require_blob
from ._splice import Splicer, reroute, safe_prefix
from .base import MAX_KERNEL, MAX_WIDTH, MorphOp, odd_kernels, register_op, registered


@dataclass(frozen=True)
class InsertBranchParams:
    k: int = field(default=3, metadata=rule(ge=1, le=MAX_KERNEL))   # kernel of the branch conv (odd)
    # channels of the branch; default: a quarter of the blob's (at least 1)
    width: int | None = field(default=None, metadata=rule(ge=1, le=MAX_WIDTH))
    bn: bool = True             # BN after the branch conv
    # activation after it (a fixed function: the branch's output is silent anyway); "prelu"; None/"none"
    act: str | None = field(default="relu", metadata=rule(choices=(*ACT_CHOICES, "none")))

    def _validate(self, where: Any) -> None:
        odd_kernels("insert_branch", k=self.k)


def branch_source(net: Network, blob: str) -> str | None:
    """Where a branch into ``blob`` starts: a block output's block input, else ``blob``'s immediate dominator."""
    for b in net.meta.get("blocks") or []:
        if b.get("out") == blob and net.join(blob) != CONCAT and net.has_blob(b.get("in", "")):
            return str(b["in"])
    if net.join(blob) != CONCAT:
        return None
    idom = nx.immediate_dominators(net.graph, net.input_blob).get(blob)
    return idom if idom is not None and idom != blob else None


def _stride(src: tuple, dst: tuple) -> int | None:
    if len(src) != 3 or len(dst) != 3 or src[1] % dst[1] or src[2] % dst[2] or src[1] // dst[1] != src[2] // dst[2]:
        return None
    return src[1] // dst[1]


@register_op
class InsertBranch(MorphOp):
    name = "insert_branch"
    site_kind = "blob"
    description = "concatenate a new conv branch to a concatenation or a block's output (zero consumer weights)"
    Params = InsertBranchParams
    order = 92

    def _problem(self, net: Network, blob: str, p: InsertBranchParams, shapes: dict) -> str | None:
        if blob in (net.input_blob, net.output_blob) or len(shapes.get(blob, ())) != 3:
            return f"blob {blob!r} is not an inner (C, H, W) feature map"
        src = branch_source(net, blob)
        if src is None:
            return (f"blob {blob!r} is neither a channel concatenation nor a recorded block's output; "
                    "a branch joins one of those")
        if _stride(shapes[src], shapes[blob]) is None:
            return f"branch source {src!r} {shapes[src]} does not subsample evenly to blob {blob!r} {shapes[blob]}"
        g = insertion_group(net, blob, _width(p, shapes[blob][0]), shapes)
        if g.problem:
            return f"the new channels of blob {blob!r} cannot be made silent: {g.problem}"
        return None

    def sites(self, net: Network) -> list[str]:
        shapes = net.shapes()
        blocks = {b.get("out") for b in net.meta.get("blocks") or []}
        cands = [b for b in net.graph.nodes if net.join(b) == CONCAT or b in blocks]
        p = self.Params()
        return sorted(b for b in cands if net.has_blob(b) and self._problem(net, b, p, shapes) is None)

    def check(self, net: Network, site: str, params: Any) -> None:
        blob = require_blob(net, site, self.name)
        problem = self._problem(net, blob, params, net.shapes())
        if problem:
            raise NotApplicable(f"insert_branch: {problem}")

    def _apply(self, net: Network, site: str, p: InsertBranchParams, rng: np.random.Generator):
        child = net.copy()
        shapes = child.shapes()
        dtype = child.dtype
        src = branch_source(child, site)
        assert src is not None   # check() refused sites without one
        c_src, c_site = shapes[src][0], shapes[site][0]
        n = _width(p, c_site)
        stride = _stride(shapes[src], shapes[site]) or 1
        grow_group(child, insertion_group(child, site, n, shapes), n, shapes)
        target, prefix = site, safe_prefix(child, f"{site}.branch")
        sp = Splicer(child, prefix)
        if child.join(site) != CONCAT:   # a block output: its readers read concat(output, branch)
            target = child.add_blob(child.fresh_name(f"{site}_cat", blob=True), join=CONCAT)
            for e in child.out_edges(site):
                reroute(child, e.name, src=target)
            for block in child.meta.get("blocks") or []:
                for key in ("in", "out"):
                    if block.get(key) == site:
                        block[key] = target
            sp.edge(site, target, Identity(), "keep", {})
        gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        conv = Conv2d(c_src, n, p.k, stride, p.k // 2)
        cur = sp.blob("c")
        sp.edge(src, cur, conv, "conv", conv.init_params(gen, dtype))
        chain: list[tuple[LayerSpec, dict[str, torch.Tensor], str]] = []
        if p.bn:
            chain.append(identity_bn(n, dtype) + ("bn",))
        if p.act not in (None, "none"):
            act = PReLU(n, 0.25) if p.act == "prelu" else Activation(str(p.act))
            chain.append((act, act.init_params(gen, dtype), "act"))
        for spec, params, base in chain:
            nxt = sp.blob(base)
            sp.edge(cur, nxt, spec, base, params)
            cur = nxt
        sp.edge(cur, target, Identity(), "out", {})
        return child, {"mode": "exact", "new_edges": tuple(sp.new_edges),
                       "notes": f"{p.k}x{p.k} branch of {n} channels from {src!r} (stride {stride}) "
                                f"concatenated to {site!r}; its consumers start with zero weights"}


def _width(p: InsertBranchParams, channels: int) -> int:
    return int(p.width) if p.width is not None else max(1, channels // 4)


OP = registered(InsertBranch)   # the registered instance
