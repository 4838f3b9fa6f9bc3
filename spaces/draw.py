"""Pictures of networks: one box per residual block (or stem / head / plain run of layers), each
listing its internal paths, with paths that morphs added highlighted.

Why boxes and not a node-link diagram: a ResNet-110 has ~400 edges; a graph layout of that is
unreadable, while the paper's variants differ only *inside* blocks (an extra path next to the
shortcut). So blocks collapse to a box whose lines are its parallel paths, e.g.::

    layer1.1   16x32x32
      ├ conv3x3 → bn → prelu → conv3x3 → bn
      ├ 0.5·id
      ├ conv1x1 → bn → prelu → conv1x1 → bn        (highlighted: added by a morph)
      Σ → prelu

Parallel branches nest (a split conv inside the residual branch is indented under it with
``│``); a branch that does not split further (a solved module) lists its paths.
A path is highlighted when one of its edges is not in the *base* network (``base=`` a parent
network, else the seed's edge names recorded in ``net.meta["seed_edges"]`` by the registry) or
it is a scaled identity (a split shortcut).
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from morphnas.morphism import layers as L
from morphnas.morphism.errors import SpecError
from morphnas.morphism.graph import Network
from morphnas.spaces.actions.sites import stage_map
from morphnas.spaces.counting import count

_STAGE_COLOURS = ("#e8eef7", "#e6f2e6", "#f7f0e1", "#f0e6f2", "#e4f1f3", "#f5e6e6")
_MORPH = "#d2691e"
_MAX_PATHS = 8
_WRAP = 52


@dataclass(frozen=True)
class Line:
    text: str
    morphed: bool = False


@dataclass(frozen=True)
class Group:
    """One box: a block, the stem/head or a run of layers outside blocks."""

    title: str
    stage: int | None
    lines: tuple[Line, ...]

    @property
    def morphed(self) -> bool:
        return any(line.morphed for line in self.lines)


def layer_label(layer: L.LayerSpec) -> str:
    """A short label: ``conv3x3/2``, ``bn``, ``prelu``, ``0.5·id``, ``fc 64→10``; each layer kind
    says its own (``draw_label``, next to its spec in :mod:`morphnas.morphism.kinds`)."""
    return layer.draw_label()


# The symbol drawn where parallel branches meet, by the join blob's kind.
JOIN_SYMBOLS = {"sum": "Σ", "concat": "⧺", "mul": "×"}


def _block_edges(net: Network, block: dict) -> set[str]:
    """Edges inside a block: from its input blob (or an inner blob) to an inner blob."""
    g = net.graph
    inner = (nx.descendants(g, block["in"]) & nx.ancestors(g, block["out"])) | {block["out"]}
    return {k for u, v, k in g.edges(keys=True) if (u == block["in"] or u in inner) and v in inner}


def _cuts(sub: nx.MultiDiGraph) -> list[str]:
    """Blobs of the single-source single-sink ``sub`` that every path crosses, in order."""
    order = list(nx.lexicographical_topological_sort(sub))
    pos = {b: i for i, b in enumerate(order)}
    # Sweep: a blob is a cut when no edge jumps over it.
    reach, cuts = -1, []
    for i, b in enumerate(order):
        if reach <= i:
            cuts.append(b)
        reach = max([reach] + [pos[v] for v in sub.successors(b)])
    return cuts


def _branches(sub: nx.MultiDiGraph, a: str, b: str) -> list[list[tuple]]:
    """The parallel branches between ``a`` and ``b``: each direct edge, and each group of inner
    blobs connected to each other (with all their edges)."""
    out = [[(u, v, k)] for u, v, k in sub.edges(keys=True) if u == a and v == b]
    inner = sub.subgraph(set(sub) - {a, b})
    for comp in nx.weakly_connected_components(inner):
        out.append([(u, v, k) for u, v, k in sub.edges(keys=True) if u in comp or v in comp])
    return out


def _lines(net: Network, sub: nx.MultiDiGraph, source: str, sink: str, base: set[str] | None) -> list[Line]:
    """Lines describing ``sub`` from ``source`` to ``sink``: a chain as one line, parallel
    branches as ``├`` lines (nested branches indented with ``│``), ``Σ`` where they join."""
    def scaled_identity(k: str) -> bool:
        layer = net.edge(k).layer
        return isinstance(layer, L.Identity) and layer.scale != 1.0

    def morphed(edges) -> bool:
        return any((base is not None and k not in base) or scaled_identity(k) for *_, k in edges)

    def text(path) -> str:
        return " → ".join(layer_label(net.edge(k).layer) for *_, k in path)

    def wrapped(s: str, hit: bool, first: str, rest: str) -> list[Line]:
        parts = textwrap.wrap(s, _WRAP, break_on_hyphens=False) or [""]
        return [Line((first if i == 0 else rest) + p, hit) for i, p in enumerate(parts)]

    lines: list[Line] = []
    chain: list[tuple[str, bool]] = []
    after_join = ""   # the symbol of the join the chain continues from ("" at the start)

    def flush() -> None:
        # Runs of the chain added by morphs go on their own lines so exactly they are highlighted.
        first = True
        while chain:
            hit = chain[0][1]
            run = []
            while chain and chain[0][1] == hit:
                run.append(chain.pop(0)[0])
            lead = f"{after_join} → " if after_join and first else "" if first else "→ "
            lines.extend(wrapped(lead + " → ".join(run), hit, "", "  "))
            first = False

    cuts = _cuts(sub)
    for a, b in zip(cuts, cuts[1:]):
        seg = sub.subgraph((nx.descendants(sub, a) & nx.ancestors(sub, b)) | {a, b})
        branches = _branches(seg, a, b)
        paths = list(nx.all_simple_edge_paths(seg, a, b)) if len(branches) == 1 else []
        if len(branches) == 1 and len(paths) == 1:
            chain.append((text(paths[0]), morphed(paths[0])))
            continue
        flush()
        if len(branches) == 1:  # no further split (e.g. a solved module): list its paths
            paths.sort(key=lambda p: (morphed(p), -len(p)))
            for p in paths[:_MAX_PATHS]:
                lines.extend(wrapped(text(p), morphed(p), "├ ", "│   "))
            if len(paths) > _MAX_PATHS:
                lines.append(Line(f"├ ... {len(paths) - _MAX_PATHS} more paths", True))
        else:
            branches.sort(key=lambda br: (morphed(br), -len(br)))  # the seed's own paths first
            for br in branches:
                bsub = seg.edge_subgraph(br)
                inner = _lines(net, bsub, a, b, base)
                if len(inner) == 1:
                    lines.append(Line("├ " + inner[0].text, inner[0].morphed))
                else:
                    lines.extend(Line(("├ " if i == 0 else "│ ") + ln.text, ln.morphed) for i, ln in enumerate(inner))
        after_join = JOIN_SYMBOLS.get(net.join(b), "Σ")
    flush()
    return lines


def groups(net: Network, base: Network | None = None) -> list[Group]:
    """The boxes of a drawing, in network order."""
    base_names = set(base.edge_names()) if base is not None else (
        set(net.meta["seed_edges"]) if net.meta.get("seed_edges") else None)
    shapes = net.shapes()
    stages = stage_map(net)
    g = net.graph
    owned: set[str] = set()
    found: list[tuple[int, Group]] = []
    order = {b: i for i, b in enumerate(net.blobs())}
    for block in net.meta.get("blocks") or []:
        if block["in"] not in g or block["out"] not in g:
            continue
        keys = _block_edges(net, block)
        owned |= keys
        sub = g.edge_subgraph([(u, v, k) for u, v, k in g.edges(keys=True) if k in keys])
        shape = "x".join(map(str, shapes[block["out"]]))
        found.append((order[block["in"]], Group(f"{block['name']}   {shape}", int(block["stage"]),
                                                tuple(_lines(net, sub, block["in"], block["out"], base_names)))))
    rest = [(u, v, k) for u, v, k in g.edges(keys=True) if k not in owned]
    if rest:
        free = g.edge_subgraph(rest)
        for comp in nx.weakly_connected_components(free):
            sub = free.subgraph(comp)
            srcs = [b for b in sub if sub.in_degree(b) == 0]
            sinks = [b for b in sub if sub.out_degree(b) == 0]
            if len(srcs) != 1 or len(sinks) != 1:  # not single-source/sink: list its edges
                lines = [Line(f"{e}: {layer_label(net.edge(e).layer)}") for *_, e in sorted(sub.edges(keys=True))]
                found.append((min(order[b] for b in comp), Group("layers", None, tuple(lines))))
                continue
            src, sink = srcs[0], sinks[0]
            title = ("stem" if src == net.input_blob and sink != net.output_blob else
                     "head" if sink == net.output_blob and src != net.input_blob else
                     "network" if src == net.input_blob else f"{src} → {sink}")
            title += "   " + "x".join(map(str, shapes[sink] if sink != net.output_blob else shapes[src]))
            found.append((order[src], Group(title, stages.get(src), tuple(_lines(net, sub, src, sink, base_names)))))
    return [grp for _, grp in sorted(found, key=lambda t: t[0])]


def draw_network(net: Network, path: str | Path, base: Network | None = None, title: str | None = None) -> Path:
    """Draw ``net`` to ``path`` (PNG or SVG by suffix); returns the path written."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise SpecError(f"cannot draw to {str(path)!r}: the file name must end in .png or .svg")
    import matplotlib  # lazy: heavy, needed only to render, and the backend must be chosen before pyplot
    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt  # lazy: see above
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # lazy: see above

    boxes = groups(net, base)
    heights = [1.6 + len(b.lines) for b in boxes]      # in text lines: title + lines + padding
    total = sum(heights) + len(boxes)
    ncols = max(1, min(6, round(math.sqrt(total * 0.035))))
    cap = max(max(heights) + 1, total / ncols)
    cols: list[list[int]] = [[]]
    used = 0.0
    for i, h in enumerate(heights):
        if cols[-1] and used + h + 1 > cap * 1.05 and len(cols) < ncols:
            cols.append([])
            used = 0.0
        cols[-1].append(i)
        used += h + 1
    rows = max(sum(heights[i] + 1 for i in c) for c in cols)
    lh, colw = 0.17, 4.6                                   # inches per text line, per column
    fig = plt.figure(figsize=(colw * len(cols), lh * (rows + 5)))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, colw * len(cols))
    ax.set_ylim(-lh * (rows + 5), 0)
    ax.axis("off")
    c = count(net)
    head = title or str(net.meta.get("name", "network"))
    ax.text(0.15, -lh * 1.0, f"{head}   input {'x'.join(map(str, net.input_shape))}", fontsize=9, weight="bold",
            va="center")
    ax.text(0.15, -lh * 2.0, f"params {c.params:,} ({c.params_mb:.2f} MB)   FLOPs {c.flops:,}   depth {c.depth}",
            fontsize=7.5, va="center")
    if any(b.morphed for b in boxes):
        ax.text(0.15, -lh * 3.0, "highlighted: paths added by morphs", fontsize=7.5, va="center", color=_MORPH)
    for ci, col in enumerate(cols):
        x0, y = ci * colw + 0.15, -lh * 4.0
        prev_bottom = None
        for i in col:
            b, h = boxes[i], heights[i] * lh
            colour = _STAGE_COLOURS[(b.stage or 0) % len(_STAGE_COLOURS)] if b.stage is not None else "#f2f2f2"
            ax.add_patch(FancyBboxPatch((x0, y - h), colw - 0.3, h, boxstyle="round,pad=0,rounding_size=0.06",
                                        fc=colour, ec=_MORPH if b.morphed else "#555555",
                                        lw=1.8 if b.morphed else 0.8))
            if prev_bottom is not None:
                ax.add_patch(FancyArrowPatch((x0 + 0.4, prev_bottom), (x0 + 0.4, y), arrowstyle="-|>",
                                             mutation_scale=7, color="#555555", lw=0.8))
            ax.text(x0 + 0.1, y - lh * 0.8, b.title, fontsize=7.5, weight="bold", family="monospace", va="center")
            for j, line in enumerate(b.lines):
                ax.text(x0 + 0.2, y - lh * (1.8 + j), line.text, fontsize=7, family="monospace", va="center",
                        color=_MORPH if line.morphed else "#111111", weight="bold" if line.morphed else "normal")
            prev_bottom = y - h
            y -= h + lh
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, dpi=110)
    plt.close(fig)
    return path
