"""The iterative fallback for fixed widths: alternating cut solves, then Levenberg–Marquardt.

Used only when the module's widths are pinned (or widening is off) and no one-shot cut is exact.
Measured here (docs/design.md, "Numerics"): the paper's one-filter-at-a-time loop stalls at 1e-2–1e-1; alternating
joint cut solves do better but also stall; LM reaches 1e-8–1e-12 on width-8 modules within seconds
to minutes and is infeasible from width ~32 on (its Jacobian has (C_out C_in K²) x (#params)
entries). Both run under an *iteration* budget (never a wall-clock one, so a replay on another
machine reproduces the filters bit for bit) and return the best filters seen.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..filters import compose, pad_to
from .linalg import (FilterGraph, blob_functions, module_filter, rel_residual, solve_sink_cut, solve_source_cut,
                     transpose)

LM_MAX_ENTRIES = 40_000_000   # Jacobian entries (rows x params) LM may build: ~320 MB in float64
LM_STEP_FLOPS = 2e10          # one LM step may cost at most this (a few seconds on one core)


@dataclass
class IterResult:
    filters: dict[str, torch.Tensor]
    residual: float
    method: str
    iterations: int


def alternate(g: FilterGraph, target: torch.Tensor, filters: dict[str, torch.Tensor], max_sweeps: int,
              goal: float) -> IterResult:
    """Alternate joint least-squares solves of the sink cut and the source cut."""
    best = dict(filters)
    best_res = rel_residual(target, module_filter(g, filters))
    cur = dict(filters)
    sweeps = 0
    while sweeps < max_sweeps and best_res > goal:
        prev = best_res
        for solve in (solve_sink_cut, solve_source_cut):
            cur.update(solve(g, cur, target))
            res = rel_residual(target, module_filter(g, cur))
            if res < best_res:
                best, best_res = dict(cur), res
        sweeps += 1
        if sweeps > 3 and best_res > 0.99 * prev:   # stalled: leave the rest of the budget to LM
            break
    return IterResult(best, best_res, "alternating cut solves", sweeps)


def levenberg_marquardt(g: FilterGraph, target: torch.Tensor, filters: dict[str, torch.Tensor],
                        max_steps: int, goal: float) -> IterResult | None:
    """Damped Gauss–Newton on all filters jointly, at most ``max_steps`` steps; None when the
    Jacobian or one step would be too large."""
    names = [e.name for e in g.edges]
    shapes = [filters[n].shape for n in names]
    sizes = [s.numel() for s in shapes]
    n = sum(sizes)
    kk = g.kernel
    t = pad_to(target, kk).reshape(-1)
    m = t.numel()
    if m * n > LM_MAX_ENTRIES:
        return None
    if 2.0 * m * n * min(m, n) > LM_STEP_FLOPS:
        return None   # one step would take too long (a step cannot be interrupted)

    def unflat(p: torch.Tensor) -> dict[str, torch.Tensor]:
        return {nm: c.reshape(s) for nm, c, s in zip(names, torch.split(p, sizes), shapes)}

    def resid(p: torch.Tensor) -> torch.Tensor:
        return module_filter(g, unflat(p)).reshape(-1) - t

    p = torch.cat([filters[nm].reshape(-1) for nm in names])
    r = resid(p)
    tn = t.norm().item() or 1.0
    lam = 1e-3
    it = 0
    while it < max_steps and r.norm().item() / tn > goal:
        j = jacobian(g, unflat(p))
        it += 1
        small = m <= n   # damp the smaller normal matrix: J Jᵀ (m x m) or Jᵀ J (n x n)
        a = j @ j.T if small else j.T @ j
        rhs = r if small else j.T @ r
        scale = a.diagonal().mean()
        improved = False
        while lam <= 1e8:
            chol, info = torch.linalg.cholesky_ex(a + (lam * scale) * torch.eye(a.shape[0], dtype=a.dtype))
            if int(info) == 0:
                sol = torch.cholesky_solve(rhs[:, None], chol)[:, 0]
                step = -(j.T @ sol) if small else -sol
                r_new = resid(p + step)
                if r_new.norm() < r.norm():
                    p, r = p + step, r_new
                    lam = max(lam / 3, 1e-15)
                    improved = True
                    break
            lam *= 4
        if not improved:
            break
    return IterResult(unflat(p), r.norm().item() / tn, "Levenberg-Marquardt", it)


def jacobian(g: FilterGraph, filters: dict[str, torch.Tensor]) -> torch.Tensor:
    """d(module filter)/d(filters), analytically: a path visits an edge at most once, so the module
    filter is affine in each ``F_e`` with ``dM = T_dst ∘ dF_e ∘ H_src`` (``H``: source -> blob,
    ``T``: blob -> sink). Rows ``(o, i, y, x)`` of the ``K x K`` filter, columns the flattened filters
    in ``g.edges`` order. (torch.func's Jacobian cost a 5 s import of torch._dynamo on first use.)"""
    kk = g.kernel
    cin, cout = g.widths[g.source], g.widths[g.sink]
    h = blob_functions(g, filters)
    t = blob_functions(g.reversed(), transpose(filters))
    cols = []
    for e in g.edges:
        hu, tv = h[e.src], t[e.dst].transpose(0, 1)
        ca, cb, ku, kt, k = hu.shape[0], tv.shape[1], hu.shape[-1], tv.shape[-1], e.kernel
        # compose with a 1-channel middle: every (b, a) pair kept apart
        cq = compose(hu.reshape(1, ca * cin, ku, ku), tv.reshape(cout * cb, 1, kt, kt))
        q = cq.shape[-1]
        cq = cq.reshape(cout, cb, ca, cin, q, q).permute(0, 3, 4, 5, 1, 2)
        je = hu.new_zeros(cout, cin, kk, kk, cb, ca, k, k)
        off = (kk - (q + k - 1)) // 2
        for jy in range(k):
            for jx in range(k):
                je[:, :, off + jy: off + jy + q, off + jx: off + jx + q, :, :, jy, jx] = cq
        cols.append(je.reshape(cout * cin * kk * kk, -1))
    return torch.cat(cols, 1)


def fit(g: FilterGraph, target: torch.Tensor, filters: dict[str, torch.Tensor], iterations: int,
        goal: float) -> IterResult:
    """Alternating solves (at most ``min(50, iterations)`` sweeps), then LM (when it fits) for at most
    ``iterations`` steps."""
    res = alternate(g, target, filters, min(50, iterations), goal)
    if res.residual <= goal:
        return res
    lm = levenberg_marquardt(g, target, res.filters, iterations, goal)
    if lm is not None and lm.residual < res.residual:
        lm.method = f"{res.method} ({res.iterations} sweeps), then {lm.method} ({lm.iterations} steps)"
        return lm
    if lm is None:
        res.method += " (Levenberg-Marquardt skipped: its Jacobian is too large for these widths or budget)"
    return res
