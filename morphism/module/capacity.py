"""Capacity of a cut: can fixing every other filter at random leave a linear system that is exact?

Two analyses, used together:

* **counting** (:func:`cut_counts`): unknowns of the cut versus the constraints of the module's
  ``K x K`` filter, each cut edge capped by the span its fixed neighbourhood allows. Cheap; it
  over-estimates the width needed when the conv's kernel is smaller than ``K`` (the outer ring of
  the target is zero, which any image contains) — module (D) with 3x3 edges counts 1.82x but is
  exact from ~1.44x.
* **numeric rank on a proxy** (:func:`min_cut_width`): the same cut with every width scaled down so
  the larger end has ~8 channels, solved for a random target of the conv's kernel at increasing
  widths of the free blobs (bisection). Generic ranks scale linearly with the widths, so the proxy's
  smallest exact width, scaled back, is the width to try at full size; the caller verifies the
  residual there and steps up if needed.
"""
from __future__ import annotations

import math
from collections.abc import Set as AbstractSet
from dataclasses import dataclass


import torch

from .linalg import FilterGraph, module_filter, random_filters, rel_residual, solve_sink_cut

EXACT = 1e-10        # relative filter residual taken as exact in float64
PROXY_CHANNELS = 8   # the larger end of a proxy problem


@dataclass(frozen=True)
class CutCounts:
    cut: str               # "sink" | "source"
    unknowns: int          # per output (sink cut) or input (source cut) channel
    constraints: int       # C_other * K * K
    free: tuple[str, ...]  # widenable blobs adjacent to the cut

    @property
    def ok(self) -> bool:
        return self.unknowns >= self.constraints


def oriented(g: FilterGraph, cut: str) -> FilterGraph:
    """The graph in which the cut is the sink cut."""
    return g if cut == "sink" else g.reversed()


def cut_counts(g: FilterGraph, cut: str, pinned: AbstractSet[str] = frozenset()) -> CutCounts:
    """Counting capacity of the sink or source cut at the graph's current widths."""
    h = oriented(g, cut)
    rho = h.radii()
    kk = h.kernel
    cin = h.widths[h.source]
    unknowns = 0
    free = []
    for e in h.in_edges(h.sink):
        kv = 2 * rho[e.src] + 1
        unknowns += min(h.widths[e.src] * e.kernel ** 2, cin * (kv + e.kernel - 1) ** 2)
        if e.src != h.source and e.src not in pinned:
            free.append(e.src)
    return CutCounts(cut, unknowns, cin * kk * kk, tuple(dict.fromkeys(free)))


def counting_width(g: FilterGraph, cut: str, pinned: AbstractSet[str] = frozenset()) -> int | None:
    """Smallest uniform width of the free cut blobs meeting the counting bound (None: impossible)."""
    c = cut_counts(g, cut, pinned)
    if c.ok:
        return max([g.widths[b] for b in c.free], default=0) or None
    if not c.free:
        return None
    lo = max(g.widths[b] for b in c.free)
    for w in _ladder(lo, 64 * lo + 64):
        if cut_counts(g.with_widths({b: w for b in c.free}), cut, pinned).ok:
            return w
    return None


def _ladder(lo: int, hi: int):
    w = lo
    while w <= hi:
        yield w
        w = max(w + 1, int(math.ceil(w * 1.05)))


def proxy_graph(g: FilterGraph, scale: float) -> FilterGraph:
    return g.with_widths({b: max(1, math.ceil(w / scale)) for b, w in g.widths.items()})


def cut_exact_at(g: FilterGraph, cut: str, target_k: int, gen: torch.Generator) -> float:
    """Relative residual of the cut solve for a random target of kernel ``target_k`` (dense random
    fixed filters): the numeric capacity test."""
    h = oriented(g, cut)
    cut_names = {e.name for e in h.in_edges(h.sink)}
    fixed = random_filters(h, {e.name for e in h.edges} - cut_names, gen)
    target = torch.randn(h.widths[h.sink], h.widths[h.source], target_k, target_k, generator=gen,
                         dtype=torch.float64)
    fixed.update(solve_sink_cut(h, fixed, target))
    return rel_residual(target, module_filter(h, fixed))


def min_cut_width(g: FilterGraph, cut: str, free: tuple[str, ...], target_k: int, gen: torch.Generator,
                  pinned: AbstractSet[str] = frozenset()) -> int | None:
    """Estimate the smallest uniform width of the ``free`` blobs making the cut exact (see module doc)."""
    if not free:
        return None
    hi_full = counting_width(g, cut, pinned)
    base = max(g.widths[b] for b in free)
    if hi_full is None:
        hi_full = 8 * base
    ends = (g.widths[g.source], g.widths[g.sink])
    scale = max(1.0, max(ends) / PROXY_CHANNELS)
    p = proxy_graph(g, scale)
    lo = max(1, math.ceil(base / scale))
    hi = max(lo, math.ceil(hi_full / scale) + 1)

    def exact(w: int) -> bool:
        return cut_exact_at(p.with_widths({b: w for b in free}), cut, target_k, gen) <= EXACT

    if not exact(hi):
        hi2 = hi
        while hi2 < 4 * hi and not exact(hi2):
            hi2 = hi2 * 2
        if not exact(hi2):
            return None
        hi = hi2
    if exact(lo):
        return base
    while hi - lo > 1:       # exact(hi) and not exact(lo)
        mid = (lo + hi) // 2
        if exact(mid):
            hi = mid
        else:
            lo = mid
    return max(base, math.ceil(hi * scale))


def step_up(w: int) -> int:
    """The next width to try when a predicted width was not exact at full size."""
    return max(w + 1, math.ceil(w * 1.15))


