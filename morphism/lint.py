"""``lint``: every broken IR invariant, each message naming the blob or edge."""
from __future__ import annotations

from typing import TYPE_CHECKING, cast

import networkx as nx

from .errors import LintError
from .kinds import layer_kinds
from .layers import LayerSpec
from .shapes import infer_shapes

if TYPE_CHECKING:
    from .graph import Network


def lint_problems(net: "Network") -> list[str]:
    """All problems found; an empty list means the network is well formed."""
    problems: list[str] = []
    g = net.graph
    if not nx.is_directed_acyclic_graph(g):
        cycle = nx.find_cycle(g)
        problems.append("cycle through blobs " + " -> ".join(str(u) for u, *_ in cycle) + f" -> {cycle[0][0]}")
    for b in (net.input_blob, net.output_blob):
        if b not in g:
            problems.append(f"the {'input' if b == net.input_blob else 'output'} blob {b!r} is missing")
    if net.input_blob in g and g.in_degree(net.input_blob):
        problems.append(f"input blob {net.input_blob!r} has in-edges {[e.name for e in net.in_edges(net.input_blob)]}")
    if net.output_blob in g and g.out_degree(net.output_blob):
        problems.append(f"output blob {net.output_blob!r} has out-edges {[e.name for e in net.out_edges(net.output_blob)]}")
    for b in sorted(g.nodes):
        if b in (net.input_blob, net.output_blob):
            continue
        if g.in_degree(b) == 0:
            problems.append(f"dangling blob {b!r}: nothing flows into it")
        if g.out_degree(b) == 0:
            problems.append(f"dangling blob {b!r}: nothing reads it")
    if net.input_blob in g and net.output_blob in g and not nx.has_path(g, net.input_blob, net.output_blob):
        problems.append(f"no path from {net.input_blob!r} to {net.output_blob!r}")
    for b in sorted(g.nodes):
        order = g.nodes[b].get("order")
        if order is not None and sorted(order) != sorted(k for _, _, k in g.in_edges(b, keys=True)):
            problems.append(f"concat blob {b!r} lists order {list(order)} but its in-edges are "
                            f"{sorted(k for _, _, k in g.in_edges(b, keys=True))}")
    names = sorted(net.edge_names())
    for i, n in enumerate(names):
        e = net.edge(n)
        if not isinstance(e.layer, LayerSpec) or layer_kinds().get(e.layer.kind) is not type(e.layer):
            problems.append(f"edge {n!r} has an unknown layer kind {type(e.layer).__name__}")
            continue
        if i + 1 < len(names) and names[i + 1].startswith(n + "."):
            problems.append(f"edge name {n!r} is also the prefix of edge {names[i + 1]!r}; module paths would clash")
        expected = e.layer.param_shapes()
        have = net.params.get(n, {})
        if set(have) != set(expected):
            problems.append(f"edge {n!r} has tensors {sorted(have)} but a {e.layer.kind} needs {sorted(expected)}")
        else:
            for k, shape in expected.items():
                if tuple(have[k].shape) != tuple(shape):
                    problems.append(f"edge {n!r} tensor {k!r} has shape {tuple(have[k].shape)}, expected {tuple(shape)}")
    if not problems or all(not p.startswith("cycle") for p in problems):
        shapes = infer_shapes(net, strict=False)
        problems.extend(cast("tuple[str, ...]", shapes.get("__problems__", ())))   # infer_shapes' str sentinel
    return problems


def lint(net: "Network") -> None:
    """Raise :class:`LintError` listing every broken invariant, or return quietly."""
    problems = lint_problems(net)
    if problems:
        raise LintError(problems)
