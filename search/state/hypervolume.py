"""Hypervolume of a two-objective front (both minimised), the measure of a multi-objective search.

The hypervolume of a set of points is the area they dominate inside the box bounded by a fixed
reference point ``ref``: the larger, the better the front (closer to the origin and spread wider).
Points not strictly better than ``ref`` on both objectives add nothing; dominated points add
nothing either, so the measure needs no front computed first. With the same ``ref`` for every
method and seed, hypervolumes are comparable; dividing by the box's area (``normalized``) gives the
share of the box [0, ref] that is dominated, between 0 and 1 (for non-negative objectives).
"""
from __future__ import annotations

from typing import Iterable, Sequence


def hypervolume_2d(points: Iterable[Sequence[float]], ref: Sequence[float], normalized: bool = False) -> float:
    """Area dominated by ``points`` ((f1, f2) pairs, both minimised) and bounded by ``ref``."""
    rx, ry = float(ref[0]), float(ref[1])
    inside = sorted((float(p[0]), float(p[1])) for p in points if float(p[0]) < rx and float(p[1]) < ry)
    # Sweep along f1: a point with a new best f2 adds the strip [x, rx] x [f2, previous best f2].
    area, best_y = 0.0, ry
    for x, y in inside:
        if y < best_y:
            area += (rx - x) * (best_y - y)
            best_y = y
    if normalized:
        box = rx * ry if rx > 0 and ry > 0 else 0.0
        return area / box if box else 0.0
    return area
