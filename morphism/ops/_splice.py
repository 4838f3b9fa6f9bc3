"""Blob surgery shared by the ops that insert layers (deepen, insert_layer, activation, insert_bn,
the path ops): a :class:`Splicer` for named new edges, feature-blob sites, and inserting a chain
after a blob. The identity-initialised layers themselves live in :mod:`morphnas.morphism.identity`.
"""
from __future__ import annotations

import torch

from ..graph import Network
from ..layers import LayerSpec


class Splicer:
    """Adds edges and blobs named ``<prefix>.<base>`` (made unique) to ``net``, in place, and keeps the
    names of the edges it added (a morph record's ``new_edges``)."""

    def __init__(self, net: Network, prefix: str):
        self.net, self.prefix = net, prefix
        self.new_edges: list[str] = []

    def edge(self, src: str, dst: str, layer: LayerSpec, base: str, params: dict[str, torch.Tensor],
             position: int | None = None) -> str:
        name = self.net.add_edge(src, dst, layer, self.net.fresh_name(f"{self.prefix}.{base}"), params=params,
                                 position=position)
        self.new_edges.append(name)
        return name

    def blob(self, base: str) -> str:
        return self.net.add_blob(self.net.fresh_name(f"{self.prefix}.{base}", blob=True))


def feature_blob_sites(net: Network) -> list[str]:
    """Blobs holding a (C, H, W) feature map, other than the network's input and output."""
    shapes = net.shapes()
    return sorted(b for b in net.graph.nodes
                  if b not in (net.input_blob, net.output_blob) and len(shapes.get(b, ())) == 3)


def insert_after_blob(net: Network, blob: str, layers: list[tuple[LayerSpec, dict, str]],
                      prefix: str | None = None) -> tuple[str, list[str]]:
    """Insert the chain ``layers`` (spec, tensors, edge base name) after ``blob`` in place.

    Every former reader of ``blob`` reads the chain's output instead, and ``net.meta["blocks"]``
    entries whose input was ``blob`` follow them. Returns the new output blob and edge names.
    """
    prefix = safe_prefix(net, prefix or blob)
    out = net.fresh_name(f"{prefix}.out", blob=True)
    readers = net.out_edges(blob)
    # Park the readers on the new output first so the chain's names cannot clash with them.
    for e in readers:
        reroute(net, e.name, src=out)
    for block in net.meta.get("blocks", []):
        if block.get("in") == blob:
            block["in"] = out
    names, cur = [], blob
    for i, (spec, params, base) in enumerate(layers):
        nxt = out if i == len(layers) - 1 else net.add_blob(net.fresh_name(f"{prefix}.{base}", blob=True))
        name = net.fresh_name(f"{prefix}.{base}")
        net.add_edge(cur, nxt, spec, name, params=params)
        names.append(name)
        cur = nxt
    return out, names


def slot(net: Network, name: str) -> int | None:
    """Edge ``name``'s position among its blob's concatenated parts (``None`` if not a concat)."""
    dst = net.edge(name).dst
    if net.join(dst) != "concat":
        return None
    return [e.name for e in net.in_edges(dst)].index(name)


def reroute(net: Network, name: str, src: str | None = None, dst: str | None = None) -> None:
    """Move edge ``name`` to new ends in place, keeping its name, layer, tensors and, when it stays
    a part of the same concatenation, its channel slot (a removed and re-added edge goes last)."""
    e = net.edge(name)
    params = net.params[name]
    pos = slot(net, name) if dst is None or dst == e.dst else None
    net.remove_edge(name)
    net.add_edge(src or e.src, dst or e.dst, e.layer, name, params=params, position=pos)


def safe_prefix(net: Network, base: str) -> str:
    """A dotted prefix under which new edge names cannot clash with existing module paths.

    A blob is often named like the edge that makes it (``features.0.pool``); ``<edge>.x`` would
    then make that edge a module parent, which ``Network.fresh_name`` cannot fix by suffixing the
    last component (it would loop), so the prefix itself gets the suffix (``features.0.pool_1``).
    """
    names = net.edge_names()
    if any(base.startswith(n + ".") for n in names):
        base = base.replace(".", "_")

    def blocked(p: str) -> bool:
        return any(p == n or p.startswith(n + ".") for n in names)

    p, i = base, 0
    while blocked(p):
        i += 1
        p = f"{base}_{i}"
    return p
