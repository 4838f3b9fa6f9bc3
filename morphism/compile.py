"""Compile a :class:`Network` to a ``torch.fx.GraphModule`` with generated forward code.

Each edge becomes a submodule at the path of its name (so state-dict keys are
``<edge>.<param>``); each blob becomes one value: the left-fold sum of its in-edges in name order,
or by its join (:mod:`.joins`) their ``torch.cat`` along channels in the blob's order or their
left-fold product.
Unit-scale identities are folded into the code, other scales become a multiply. The forward is
plain Python generated once by ``torch.fx``: no interpreter loop over the graph per call.
"""
from __future__ import annotations

import operator

import torch
from torch import fx, nn

from .graph import Network
from .joins import CONCAT, MUL
from .layers import Identity
from .lint import lint


def compile_network(net: Network, check: bool = True) -> fx.GraphModule:
    """Build the ``GraphModule`` computing ``net`` and load ``net``'s tensors into it."""
    if check:
        lint(net)
    root = nn.Module()
    graph = fx.Graph()
    values: dict[str, fx.Node] = {net.input_blob: graph.placeholder("x")}
    for blob in net.blobs():
        if blob == net.input_blob:
            continue
        terms = []
        for e in net.in_edges(blob):
            src = values[e.src]
            if isinstance(e.layer, Identity):
                terms.append(src if e.layer.scale == 1.0 else graph.call_function(operator.mul, (src, e.layer.scale)))
                continue
            # Module constructors draw their (discarded) initial weights from the global RNG;
            # fork it so compiling never moves the caller's random stream.
            with torch.random.fork_rng(devices=[]):
                module = e.layer.module()
            _set_submodule(root, e.name, module)
            terms.append(graph.call_module(e.name, (src,)))
        join = net.join(blob)
        value = terms[0]
        if join == CONCAT:
            value = graph.call_function(torch.cat, (terms, 1)) if len(terms) > 1 else value
            terms = []
        for t in terms[1:]:
            value = graph.call_function(operator.mul if join == MUL else operator.add, (value, t))
        values[blob] = value
    graph.output(values[net.output_blob])
    gm = fx.GraphModule(root, graph, class_name="MorphNet")
    state = net.state_dict()
    gm.to(net.dtype)
    missing, unexpected = gm.load_state_dict(state, strict=False)
    if missing or unexpected:  # lint guarantees this cannot happen; keep the guard loud
        raise RuntimeError(f"compile: state dict mismatch, missing={missing}, unexpected={unexpected}")
    return gm


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    *parents, leaf = path.split(".")
    cur = root
    for p in parents:
        nxt = getattr(cur, p, None) if p in cur._modules else None
        if nxt is None:
            nxt = nn.Module()
            cur.add_module(p, nxt)
        cur = nxt
    cur.add_module(leaf, module)


def sync_from_module(net: Network, module: nn.Module) -> Network:
    """A copy of ``net`` holding ``module``'s (trained) tensors; keys must match one to one."""
    out = net.copy()
    out.load_state_dict({k: v for k, v in module.state_dict().items()})
    return out
