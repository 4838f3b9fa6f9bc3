"""``concat_skip``: an earlier blob concatenated into a later conv's input (NNI/AutoKeras ``to_concat_skip``).

Site: a conv edge ``E`` (groups=1) reading blob ``Y``. The op adds a concatenation blob
``Y' = concat(Y, S)`` (two identity parts, ``Y`` first) for an earlier feature blob ``S`` of ``Y``'s
spatial size, and ``E`` reads ``Y'`` instead; ``E``'s weights for the new input channels are zero,
so the child computes the parent's function exactly and training decides what the skip carries.
Only ``E`` moves to ``Y'``; the other readers of ``Y`` are untouched.

``source`` picks ``S``; by default the earliest ancestor of ``Y`` (in the network's topological
order) with ``Y``'s spatial size that is not ``Y`` itself nor the network input: the longest
skip that needs no resampling (DenseNet-style). New edges: ``<E>_skip.keep``, ``<E>_skip.from``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, cast

import networkx as nx
import numpy as np
import torch

from ..errors import NotApplicable
from ..graph import Network
from ..joins import CONCAT
from ..layers import Conv2d, Identity
from ._sites import require_edge
from ._splice import Splicer, safe_prefix, slot
from .base import MorphOp, register_op, registered, zero_fraction


@dataclass(frozen=True)
class ConcatSkipParams:
    source: str | None = None   # the earlier blob to concatenate; default: the earliest one that fits


def candidate_sources(net: Network, blob: str, shapes: dict) -> list[str]:
    """Earlier feature blobs whose maps have ``blob``'s spatial size, in topological order."""
    size = shapes[blob][1:]
    before = nx.ancestors(net.graph, blob)
    return [b for b in net.blobs() if b in before and b != net.input_blob
            and len(shapes[b]) == 3 and shapes[b][1:] == size]


@register_op
class ConcatSkip(MorphOp):
    name = "concat_skip"
    site_kind = "edge"
    description = "concatenate an earlier blob into a conv's input, with zero weights for the new channels"
    Params = ConcatSkipParams
    order = 95

    def _problem(self, net: Network, site: str, shapes: dict) -> str | None:
        layer = net.edge(site).layer
        if not isinstance(layer, Conv2d):
            return f"edge {site!r} is a {layer.kind}, not a conv2d"
        if layer.groups != 1:
            return f"conv {site!r} has groups={layer.groups}; only a groups=1 conv can read more channels"
        if not candidate_sources(net, net.edge(site).src, shapes):
            return f"conv {site!r} reads a blob with no earlier blob of its spatial size"
        return None

    def sites(self, net: Network) -> list[str]:
        shapes = net.shapes()
        return sorted(e.name for e in net.edges() if isinstance(e.layer, Conv2d)
                      and self._problem(net, e.name, shapes) is None)

    def check(self, net: Network, site: str, params: Any) -> None:
        e = require_edge(net, site, self.name)
        shapes = net.shapes()
        problem = self._problem(net, site, shapes)
        if problem:
            raise NotApplicable(f"concat_skip: {problem}")
        if params.source is not None:
            ok = candidate_sources(net, e.src, shapes)
            if params.source not in ok:
                raise NotApplicable(f"concat_skip: blob {params.source!r} is not an earlier blob of the size of "
                                    f"{e.src!r} {tuple(shapes[e.src][1:])}; candidates: {', '.join(ok[:6])}"
                                    f"{', ...' if len(ok) > 6 else ''}")

    def _apply(self, net: Network, site: str, p: ConcatSkipParams, rng: np.random.Generator):
        child = net.copy()
        shapes = child.shapes()
        e = child.edge(site)
        layer = cast(Conv2d, e.layer)   # check() refused anything else
        source = p.source or candidate_sources(child, e.src, shapes)[0]
        extra = shapes[source][0]
        sp = Splicer(child, safe_prefix(child, f"{site}_skip"))
        cat = child.add_blob(child.fresh_name(f"{sp.prefix}.cat", blob=True), join=CONCAT)
        sp.edge(e.src, cat, Identity(), "keep", {})
        sp.edge(source, cat, Identity(), "from", {})
        w = child.params[site]["weight"]
        zeros = torch.zeros((w.shape[0], extra, *w.shape[2:]), dtype=w.dtype)
        params = {**child.params[site], "weight": torch.cat([w, zeros], 1)}
        pos = slot(child, site)   # a conv writing a concatenated part keeps its slot
        child.remove_edge(site)
        child.add_edge(cat, e.dst, dataclasses.replace(layer, in_channels=layer.in_channels + extra), site,
                       params=params, position=pos)
        return child, {"mode": "exact-sparse", "zero_fraction": zero_fraction(zeros),
                       "new_edges": tuple(sp.new_edges),
                       "notes": f"blob {source!r} ({extra} channels) concatenated into {site!r}'s input"}


OP = registered(ConcatSkip)   # the registered instance
