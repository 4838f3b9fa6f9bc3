"""Forward atomic morphs on filters: realise a merge tree (from :mod:`.reduce`) for a given filter.

``Realizer.realize(node, F)`` gives every leaf edge under ``node`` a filter so that the tree computes
``F`` exactly (float64), or raises :class:`Stuck`:

* TYPE-II (``Parallel``): the smaller-kernel side gets ``F/2`` plus dense noise, the other side the
  rest — exact, dense, and not symmetric (identical parallel filters would train identically);
* TYPE-I (``Series``): one side is fixed at random (dense Gaussian leaves), the other solved by one
  linear least-squares (the chain's sink or source cut). The middle blob is widened to the capacity
  the cut needs when it is free; when it is pinned too narrow, an exact *sparse* split (a 1x1
  embedding on one side) is used if the filter's support allows it, else :class:`Stuck`.

A fixed side is random all the way down (``random_node``): only solved filters are split further.
"""
from __future__ import annotations

import math

import torch

from ..filters import pad_to
from .capacity import EXACT, min_cut_width, step_up
from .linalg import FilterGraph, GEdge, compose_fast, crop_to, rel_residual, solve_sink_cut, solve_source_cut
from .reduce import Leaf, Node, Parallel, Series


class Stuck(Exception):
    """No exact construction at the allowed widths; ``residual`` is the best one-shot residual seen."""

    def __init__(self, message: str, residual: float = float("nan")):
        super().__init__(message)
        self.residual = residual


def support_kernel(f: torch.Tensor, rtol: float = 1e-13) -> int:
    """The smallest centred odd kernel outside which ``f`` is zero (to ``rtol`` of its largest entry)."""
    k = f.shape[-1]
    mag = f.abs().amax(dim=(0, 1))
    thresh = rtol * mag.max().item()
    for kk in range(1 if k % 2 else 2, k, 2):
        outside = mag.clone()
        p = (k - kk) // 2
        outside[p:p + kk, p:p + kk] = 0
        if outside.max().item() <= thresh:
            return kk
    return k


class Realizer:
    """Holds the leaf filters, the blob widths and the log of how each split was done."""

    def __init__(self, widths: dict[str, int], pinned: set[str], widen: bool, gen: torch.Generator,
                 margin: float = 0.0):
        self.widths = widths
        self.margin = margin   # extra width over the estimated capacity: better-conditioned solves
        self.pinned = pinned
        self.widen = widen
        self.gen = gen
        self.filters: dict[str, torch.Tensor] = {}
        self.log: list[str] = []
        self.sparse = False

    def widened(self, w: int) -> int:
        return int(math.ceil(w * (1.0 + self.margin)))

    # ---------------------------------------------------------------- random side
    def random_node(self, node: Node) -> torch.Tensor:
        """Dense He-scaled Gaussian leaves under ``node``; returns the filter the node computes."""
        if isinstance(node, Leaf):
            cin, cout, k = self.widths[node.src], self.widths[node.dst], node.kernel
            f = torch.randn(cout, cin, k, k, generator=self.gen, dtype=torch.float64) * (1.0 / (cin * k * k)) ** 0.5
            self.filters[node.edge] = f
            return f
        if isinstance(node, Series):
            return compose_fast(self.random_node(node.first), self.random_node(node.second))
        left, right = self.random_node(node.left), self.random_node(node.right)
        k = node.kernel
        return pad_to(left, k) + pad_to(right, k)

    # ---------------------------------------------------------------- exact side
    def realize(self, node: Node, f: torch.Tensor) -> None:
        f = pad_to(f, node.kernel) if f.shape[-1] < node.kernel else f
        if isinstance(node, Leaf):
            if f.shape[-1] > node.kernel:
                f = crop_to(f, node.kernel)
            self.filters[node.edge] = f.contiguous()
        elif isinstance(node, Parallel):
            self._parallel(node, f)
        else:
            self._series(node, f)

    def _parallel(self, node: Parallel, f: torch.Tensor) -> None:
        small, large = sorted((node.left, node.right), key=lambda n: n.kernel)
        ks = small.kernel
        part = crop_to(f, ks)
        rms = part.pow(2).mean().sqrt().item() or 1.0
        noise = torch.randn(part.shape, generator=self.gen, dtype=torch.float64) * (0.5 * rms)
        fs = 0.5 * part + noise
        self.log.append(f"TYPE-II {node.label()}: split {small.label()} = F/2 + noise, {large.label()} = rest")
        self.realize(small, fs)
        self.realize(large, f - pad_to(fs, f.shape[-1]))

    def _chain(self, node: Series) -> FilterGraph:
        a, b, m = node.first, node.second, node.mid
        edges = (GEdge("first", a.src, m, a.kernel), GEdge("second", m, b.dst, b.kernel))
        w = {x: self.widths[x] for x in (a.src, m, b.dst)}
        return FilterGraph(a.src, b.dst, (a.src, m, b.dst), edges, w)

    def _try_cut(self, node: Series, f: torch.Tensor, cut: str) -> float:
        """Fix one side at random, solve the other; on success realise the solved side."""
        g = self._chain(node)
        if cut == "sink":
            fixed = self.random_node(node.first)
            solved = solve_sink_cut(g, {"first": fixed}, f)["second"]
            res = rel_residual(f, compose_fast(fixed, solved))
        else:
            fixed = self.random_node(node.second)
            solved = solve_source_cut(g, {"second": fixed}, f)["first"]
            res = rel_residual(f, compose_fast(solved, fixed))
        if res <= EXACT:
            self.log.append(f"TYPE-I {node.label()} via blob {node.mid} (width {self.widths[node.mid]}): "
                            f"{'first random, second solved' if cut == 'sink' else 'second random, first solved'}"
                            f" (residual {res:.1e})")
            self.realize(node.second if cut == "sink" else node.first, solved)
        return res

    def _series(self, node: Series, f: torch.Tensor) -> None:
        m = node.mid
        tk = support_kernel(f)
        cuts = ["sink", "source"]
        best = float("inf")
        if self.widen and m not in self.pinned:
            g = self._chain(node)
            est = {c: min_cut_width(g, c, (m,), tk, self.gen) for c in cuts}
            cuts.sort(key=lambda c: v if (v := est[c]) is not None else 1 << 30)
            base = self.widths[m]
            for c in cuts:
                w = max(base, self.widened(est[c] or base))
                for _ in range(4 if est[c] else 1):   # no estimate: the cut cannot be made exact
                    self.widths[m] = w
                    res = self._try_cut(node, f, c)
                    best = min(best, res)
                    if res <= EXACT:
                        return
                    w = step_up(w)
            self.widths[m] = base
        else:
            for c in cuts:
                res = self._try_cut(node, f, c)
                best = min(best, res)
                if res <= EXACT:
                    return
        if self._sparse(node, f, tk):
            return
        raise Stuck(f"TYPE-I split of {node.label()} at blob {m!r} (width {self.widths[m]}) is not exact: "
                    f"residual {best:.2e}", best)

    def _sparse(self, node: Series, f: torch.Tensor, tk: int) -> bool:
        """An exact split with a 1x1 orthonormal embedding on one side, when widths and support allow."""
        w = self.widths[node.mid]
        cs, cd = self.widths[node.src], self.widths[node.dst]
        if tk <= node.second.kernel and w >= cs:
            q = torch.linalg.qr(torch.randn(w, cs, generator=self.gen, dtype=torch.float64))[0]  # (w, cs)
            first = q.reshape(w, cs, 1, 1)
            second = torch.einsum("oiyx,wi->owyx", crop_to(f, tk), q)
            self.log.append(f"TYPE-I {node.label()} via blob {node.mid}: sparse (1x1 embedding first)")
            self.sparse = True
            self.realize(node.first, pad_to(first, node.first.kernel))
            self.realize(node.second, pad_to(second, node.second.kernel))
            return True
        if tk <= node.first.kernel and w >= cd:
            q = torch.linalg.qr(torch.randn(w, cd, generator=self.gen, dtype=torch.float64))[0]  # (w, cd)
            second = q.T.reshape(cd, w, 1, 1)
            first = torch.einsum("oiyx,wo->wiyx", crop_to(f, tk), q)
            self.log.append(f"TYPE-I {node.label()} via blob {node.mid}: sparse (1x1 projection second)")
            self.sparse = True
            self.realize(node.first, pad_to(first, node.first.kernel))
            self.realize(node.second, pad_to(second, node.second.kernel))
            return True
        return False
