"""Shape inference: the ``(C, H, W)`` or ``(F,)`` shape of every blob, batch dimension excluded.

Typed against :class:`ShapedGraph`, the few queries it needs, rather than ``graph.Network``: the
network calls this module (``Network.shapes()``), so this module does not import it back.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence, cast

from .errors import LintError, SpecError
from .joins import SUM, join_shape
from .layers import Shape


class ShapedGraph(Protocol):
    """What shape inference reads of a network (``graph.Network`` satisfies it)."""

    input_blob: str
    input_shape: Shape

    def blobs(self) -> list[str]: ...

    def in_edges(self, blob: str) -> Sequence[Any]: ...

    def join(self, blob: str) -> str: ...


def infer_shapes(net: ShapedGraph, strict: bool = True) -> dict[str, Shape]:
    """Propagate ``net.input_shape`` through the DAG in topological order.

    With ``strict`` the first problem raises :class:`LintError` naming the edge or blob; without it,
    problems are collected under the key ``"__problems__"`` (used by :func:`lint`).
    """
    shapes: dict[str, Shape] = {net.input_blob: net.input_shape}
    problems: list[str] = []
    for blob in net.blobs():
        if blob == net.input_blob:
            continue
        outs: dict[str, Shape] = {}
        for e in net.in_edges(blob):
            if e.src not in shapes:
                continue
            try:
                outs[e.name] = tuple(e.layer.out_shape(shapes[e.src]))
            except SpecError as err:
                problems.append(f"edge {e.name!r} ({e.src} -> {e.dst}): {err}")
        join = net.join(blob)
        if join != SUM:
            if outs and len(outs) == len(net.in_edges(blob)):
                try:
                    shapes[blob] = join_shape(join, [outs[e.name] for e in net.in_edges(blob)])
                except SpecError as err:
                    problems.append(f"blob {blob!r} ({join} join) {err}")
            if strict and problems:
                raise LintError(problems)
            continue
        if len(set(outs.values())) > 1:
            listed = ", ".join(f"{n}: {s}" for n, s in sorted(outs.items()))
            problems.append(f"blob {blob!r} sums in-edges of different shapes ({listed})"
                            + (" — a channel mismatch at a join" if len({s[0] for s in outs.values()}) > 1 else ""))
        if outs:
            shapes[blob] = next(iter(sorted(outs.items())))[1]
        if strict and problems:
            raise LintError(problems)
    if problems:
        shapes["__problems__"] = cast(Shape, tuple(problems))   # a str sentinel entry in the shape map
    return shapes
