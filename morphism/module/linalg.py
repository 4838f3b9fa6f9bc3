"""Filter algebra over a small DAG of conv edges, and the one linear solve everything reuses.

A :class:`FilterGraph` is a module (or a piece of one) as the solver sees it: blobs with widths and
edges with kernel sizes; a filter of edge ``u -> v`` is a float64 ``(C_v, C_u, k, k)`` tensor. The
module function is the sum over source-to-sink paths of the composed filters (paper eq. 5), computed
blob by blob: ``H_v = sum over in-edges (u, v) of F_e ∘ H_u``.

The *sink cut* (every edge into the sink unknown, the rest fixed) makes that equation linear and
separable by output channel: ``X B = G`` with one shared matrix ``B``. The source cut is the sink cut
of the reversed graph with transposed filters (spatial convolution commutes, so
``(F2 ∘ F1)^T = F1^T ∘ F2^T``).
"""
from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import cast

import torch

from ..filters import compose, pad_to


@dataclass(frozen=True)
class GEdge:
    name: str
    src: str
    dst: str
    kernel: int


@dataclass(frozen=True)
class FilterGraph:
    """Blobs in topological order (source first, sink last) and edges; ``widths`` of every blob."""

    source: str
    sink: str
    blobs: tuple[str, ...]
    edges: tuple[GEdge, ...]
    widths: dict[str, int] = field(default_factory=dict)

    def with_widths(self, widths: dict[str, int]) -> "FilterGraph":
        return replace(self, widths={**self.widths, **widths})

    def in_edges(self, b: str) -> list[GEdge]:
        return [e for e in self.edges if e.dst == b]

    def out_edges(self, b: str) -> list[GEdge]:
        return [e for e in self.edges if e.src == b]

    def internal(self) -> list[str]:
        return [b for b in self.blobs if b not in (self.source, self.sink)]

    def radii(self) -> dict[str, int]:
        rho = {self.source: 0}
        for b in self.blobs[1:]:
            rho[b] = max(rho[e.src] + e.kernel // 2 for e in self.in_edges(b))
        return rho

    @property
    def kernel(self) -> int:
        return 2 * self.radii()[self.sink] + 1

    def reversed(self) -> "FilterGraph":
        edges = tuple(GEdge(e.name, e.dst, e.src, e.kernel) for e in self.edges)
        return FilterGraph(self.sink, self.source, tuple(reversed(self.blobs)), edges, dict(self.widths))

    def num_params(self) -> int:
        w = self.widths
        return sum(w[e.src] * w[e.dst] * e.kernel ** 2 for e in self.edges)


def compose_fast(f1: torch.Tensor | None, f2: torch.Tensor) -> torch.Tensor:
    """``filters.compose`` with shortcuts: ``None`` is the identity, 1x1 factors are matrix products
    (a conv2d over 512 channels took ~0.6 s per composition where a matmul takes milliseconds)."""
    if f1 is None:
        return f2
    if f1.shape[-1] == 1:
        return torch.einsum("ocyx,ci->oiyx", f2, f1[:, :, 0, 0])
    if f2.shape[-1] == 1:
        return torch.einsum("oc,ciyx->oiyx", f2[:, :, 0, 0], f1)
    return compose(f1, f2)


def centred_add(acc: torch.Tensor | None, f: torch.Tensor) -> torch.Tensor:
    """``acc + f`` with the smaller filter zero-padded around its centre."""
    if acc is None:
        return f
    k = max(acc.shape[-1], f.shape[-1])
    return pad_to(acc, k) + pad_to(f, k)


def blob_functions(g: FilterGraph, filters: dict[str, torch.Tensor], skip: AbstractSet[str] = frozenset(),
                   dtype=torch.float64) -> dict[str, torch.Tensor]:
    """``H_b``: the filter from the source to every blob (edges in ``skip`` left out)."""
    h: dict[str, torch.Tensor | None] = {g.source: None}   # None: the identity
    for b in g.blobs[1:]:
        acc = None
        for e in g.in_edges(b):
            if e.name in skip or e.src not in h:
                continue
            acc = centred_add(acc, compose_fast(h[e.src], filters[e.name]))
        if acc is not None:
            h[b] = acc
    cin = g.widths[g.source]
    h[g.source] = torch.eye(cin, dtype=dtype).reshape(cin, cin, 1, 1)
    return cast(dict[str, torch.Tensor], h)   # every blob now has a filter (the source the identity)


def module_filter(g: FilterGraph, filters: dict[str, torch.Tensor]) -> torch.Tensor:
    """The single filter the graph computes, padded to its effective kernel."""
    return pad_to(blob_functions(g, filters)[g.sink], g.kernel)


def rel_residual(target: torch.Tensor, got: torch.Tensor) -> float:
    """``||target - got|| / ||target||`` (Frobenius), both padded to a common kernel."""
    k = max(target.shape[-1], got.shape[-1])
    t, g = pad_to(target, k), pad_to(got, k)
    n = t.norm().item()
    return (t - g).norm().item() / (n if n > 0 else 1.0)


def sink_cut_matrix(g: FilterGraph, h: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[tuple[GEdge, int]]]:
    """``B`` (rows: unknowns of the edges into the sink; columns: ``(c_in, y, x)`` of the K x K
    module filter) such that ``sum_e F_e ∘ H_src(e) == X @ B`` with ``X`` the flattened ``F_e``."""
    kk = g.kernel
    cin = g.widths[g.source]
    blocks, layout = [], []
    for e in g.in_edges(g.sink):
        hv = h[e.src]
        cv, kv, k = hv.shape[0], hv.shape[-1], e.kernel
        off = (kk - (kv + k - 1)) // 2
        a = hv.new_zeros(cv, k, k, cin, kk, kk)
        for jy in range(k):       # composing with a delta at (jy, jx) shifts H_v by (jy, jx)
            for jx in range(k):
                a[:, jy, jx, :, off + jy: off + jy + kv, off + jx: off + jx + kv] = hv
        blocks.append(a.reshape(cv * k * k, cin * kk * kk))
        layout.append((e, cv))
    return torch.cat(blocks, 0), layout


def solve_rows(b: torch.Tensor, target: torch.Tensor, refine: int = 4) -> torch.Tensor:
    """The minimum-norm (or least-squares) ``X`` with ``X @ b ≈ target``, in float64.

    Normal equations on the smaller side of ``b`` with a tiny ridge and iterative refinement: a
    Cholesky solve, far cheaper than an SVD, and refinement recovers exactness on consistent
    systems even when ``b`` is rank deficient. (LAPACK's default least-squares driver returned
    wrong answers on such wide systems; callers check the residual of every solve.)
    """
    n, m = b.shape
    wide = n >= m
    gram = b.T @ b if wide else b @ b.T
    lam = 1e-12 * gram.diagonal().mean().clamp_min(1e-300)
    gram.diagonal().add_(lam)
    chol, info = torch.linalg.cholesky_ex(gram)
    if int(info) != 0:  # numerically indefinite: a larger ridge still gives a useful step
        gram.diagonal().add_(1e-8 * gram.diagonal().mean())
        chol = torch.linalg.cholesky(gram)

    def step(r: torch.Tensor) -> torch.Tensor:
        if wide:   # X = R (BᵀB)⁻¹ Bᵀ
            return torch.cholesky_solve(r.T, chol).T @ b.T
        return torch.cholesky_solve(b @ r.T, chol).T   # X = R Bᵀ (B Bᵀ)⁻¹ (least squares)

    x = step(target)
    tn = target.norm()
    prev = None
    for _ in range(refine):
        rn = (r := target - x @ b).norm()
        if rn <= 1e-14 * tn or (prev is not None and rn > 0.5 * prev):
            break   # converged, or no longer improving (an inconsistent system: a least-squares fit)
        prev = rn
        x = x + step(r)
    return x


def solve_sink_cut(g: FilterGraph, filters: dict[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Filters for every edge into the sink so that the module computes ``target`` as closely as a
    linear least-squares fit can, the other edges fixed at ``filters``."""
    cut = {e.name for e in g.in_edges(g.sink)}
    h = blob_functions(g, filters, skip=cut)
    b, layout = sink_cut_matrix(g, h)
    t = pad_to(target, g.kernel).reshape(target.shape[0], -1)
    x = solve_rows(b, t)
    out, i = {}, 0
    for e, cv in layout:
        n = cv * e.kernel ** 2
        out[e.name] = x[:, i:i + n].reshape(target.shape[0], cv, e.kernel, e.kernel).contiguous()
        i += n
    return out


def transpose(filters: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: f.transpose(0, 1).contiguous() for k, f in filters.items()}


def solve_source_cut(g: FilterGraph, filters: dict[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
    """As :func:`solve_sink_cut` for the edges out of the source (the reversed graph's sink cut)."""
    out = solve_sink_cut(g.reversed(), transpose(filters), target.transpose(0, 1))
    return transpose(out)


def random_filters(g: FilterGraph, names, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Dense Gaussian filters at He scale (Gaussian, not orthogonal: orthogonal factors made sums of
    paths exactly singular for even widths, docs/design.md, "Numerics")."""
    out = {}
    for e in g.edges:
        if e.name in names:
            cin, cout, k = g.widths[e.src], g.widths[e.dst], e.kernel
            out[e.name] = torch.randn(cout, cin, k, k, generator=gen, dtype=torch.float64) * (1.0 / (cin * k * k)) ** 0.5
    return out


def rebalance(g: FilterGraph, filters: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rescale every internal blob (in-edges by ``alpha``, out-edges by ``1/alpha``) so the RMS of its
    in- and out-filters match: function-preserving, and solved filters come back to a normal scale."""
    out = dict(filters)
    for b in g.internal():
        ins = [out[e.name] for e in g.in_edges(b)]
        outs = [out[e.name] for e in g.out_edges(b)]
        rin = torch.sqrt(cast(torch.Tensor, sum((f ** 2).sum() for f in ins) / sum(f.numel() for f in ins)))
        rout = torch.sqrt(cast(torch.Tensor, sum((f ** 2).sum() for f in outs) / sum(f.numel() for f in outs)))
        if rin <= 0 or rout <= 0:
            continue
        alpha = torch.sqrt(rout / rin).item()
        for e in g.in_edges(b):
            out[e.name] = out[e.name] * alpha
        for e in g.out_edges(b):
            out[e.name] = out[e.name] / alpha
    return out


def crop_to(f: torch.Tensor, k: int) -> torch.Tensor:
    """The central ``k x k`` of a filter (the caller knows the rest is zero or does not matter)."""
    p = (f.shape[-1] - k) // 2
    return f[..., p:p + k, p:p + k] if p > 0 else f


__all__ = ["GEdge", "FilterGraph", "blob_functions", "module_filter", "rel_residual", "solve_rows",
           "solve_sink_cut", "solve_source_cut", "random_filters", "rebalance", "centred_add", "crop_to",
           "transpose"]
