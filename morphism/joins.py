"""How a blob combines its in-edges: the *join* of a blob.

Why a separate notion from layers: a layer maps one tensor to one tensor, while a join is where
several edges meet. The IR has three joins, stored on the blob (``Network.join(blob)``):

* ``sum`` (the default, what every network had before joins existed): the in-edges are added,
  in edge-name order;
* ``concat``: the in-edges are concatenated along channels in the blob's stored *order*
  (``Network.in_edges`` returns them in that order; a new in-edge is appended unless given a
  ``position``). Inception branches, DenseNet features and ShuffleNet halves are concat blobs;
* ``mul``: the in-edges are multiplied element-wise, in edge-name order, with broadcasting of
  ``(C, 1, 1)`` against ``(C, H, W)`` (squeeze-excitation gates).

This module is the single home of their shape rule, so shape inference, lint and every consumer
agree. It imports nothing from the network (the network imports it).
"""
from __future__ import annotations

from .errors import SpecError

Shape = tuple[int, ...]

SUM, CONCAT, MUL = "sum", "concat", "mul"
JOINS = (SUM, CONCAT, MUL)


def join_shape(join: str, shapes: list[Shape]) -> Shape:
    """The blob's shape from its in-edges' output shapes (in join order); ``SpecError`` names the clash."""
    if not shapes:
        raise SpecError("a join needs at least one in-edge")
    if join == CONCAT:
        rest = {tuple(s[1:]) for s in shapes}
        if len(rest) > 1 or any(len(s) != 3 for s in shapes):
            raise SpecError(f"concatenates in-edges of shapes {[tuple(s) for s in shapes]}: channel concatenation "
                            "needs (C, H, W) maps of one spatial size")
        return (sum(s[0] for s in shapes), *shapes[0][1:])
    if join == MUL:
        out = list(shapes[0])
        for s in shapes[1:]:
            if len(s) != len(out):
                raise SpecError(f"multiplies in-edges of shapes {[tuple(x) for x in shapes]} (different ranks)")
            for i, (a, b) in enumerate(zip(out, s)):
                if a != b and 1 not in (a, b) or (i == 0 and a != b):
                    raise SpecError(f"multiplies in-edges of shapes {[tuple(x) for x in shapes]}: only (C, 1, 1) "
                                    "broadcasts against (C, H, W)")
                out[i] = max(a, b)
        return tuple(out)
    if join != SUM:
        raise SpecError(f"unknown join {join!r}; known: {', '.join(JOINS)}")
    if len(set(map(tuple, shapes))) > 1:
        raise SpecError(f"sums in-edges of different shapes {[tuple(s) for s in shapes]}")
    return tuple(shapes[0])


def concat_offsets(shapes: list[Shape]) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` channel ranges of each concatenated input, in order."""
    out, start = [], 0
    for s in shapes:
        out.append((start, start + s[0]))
        start += s[0]
    return out
