"""Helpers shared by the shrinking ops (remove_layer, prune_channels, remove_branch/remove_skip,
shrink_kernel): the error they report, and the blob surgery they need.

Why one definition of the error: a shrinking op is *approximate* in general, and its record says how
far the child is from the parent. That number must be reproducible by anyone holding the two
networks (the conformance suite checks "reported == measured"), so it is measured on one batch that
depends on nothing but the parent's input shape: ``ERROR_BATCH`` inputs drawn from N(0, 1) with a
generator seeded ``ERROR_SEED`` (:func:`morphnas.morphism.verify.sample_inputs`), in the parent's
dtype, in eval mode. The value is :class:`~morphnas.morphism.verify.Diff`'s ``rel_err``: the max
absolute output difference over the max absolute parent output.

Where an op is exact by construction (a zero branch, an identity layer, merged duplicate units,
a zero kernel ring) it records ``mode="exact"`` and ``error=0.0``; the suite then checks the measured
error is at round-off level instead.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch

from ..graph import Network
from ..verify import output_diff

ERROR_BATCH = 4      # inputs in the error batch
ERROR_SEED = 0       # seed of the error batch's generator


def shrink_error(parent: Network, child: Network) -> float:
    """Relative output error of ``child`` against ``parent`` on the fixed error batch (see module doc)."""
    return output_diff(parent, child, dtype=parent.dtype, batch=ERROR_BATCH, seed=ERROR_SEED).rel_err


def shrink_record(parent: Network, child: Network, exact: bool, **extra: Any) -> dict[str, Any]:
    """The record fields of a shrinking op: exact (error 0) or approximate with the measured error."""
    if exact:
        return {"mode": "exact", "error": 0.0, **extra}
    return {"mode": "approximate", "error": shrink_error(parent, child), **extra}


def all_zero(*tensors: torch.Tensor | None) -> bool:
    """True when every given tensor (None counts as zero: a missing bias) is exactly zero."""
    return all(t is None or not bool(t.any()) for t in tensors)


def move_src(net: Network, name: str, new_src: str) -> None:
    """Make edge ``name`` start at ``new_src`` (same name, layer, tensors, and place in a concat order)."""
    e = net.edge(name)
    order = [x.name for x in net.in_edges(e.dst)]
    params = net.params[name]
    net.remove_edge(name)
    net.add_edge(new_src, e.dst, e.layer, name, params=params, position=order.index(name))


def forget_in_meta(net: Network, removed_edges: Iterable[str] = (), blob_map: dict[str, str] | None = None) -> None:
    """Keep ``net.meta["blocks"]`` true after a shrink: removed shortcut edges become ``None`` and
    renamed blobs follow ``blob_map`` (old -> new)."""
    gone = set(removed_edges)
    blob_map = blob_map or {}
    for block in net.meta.get("blocks", []) or []:
        for key, value in list(block.items()):
            if not isinstance(value, str):
                continue
            if value in gone and key == "shortcut":
                block[key] = None
            elif value in blob_map:
                block[key] = blob_map[value]
