"""Linear solves behind the decomposition: given one factor, the other factor of a filter.

Composition is bilinear: with ``F1`` fixed, ``compose(F1, F2) = T`` is linear in ``F2`` and splits
into one system per output channel, all sharing one matrix ``M`` (``Cin*K^2`` rows, ``mid*k2^2``
columns). Solving for ``F1`` with ``F2`` fixed is the same problem on the transposed filters
(``compose(F1, F2)^T = compose(F2^T, F1^T)``), so only ``solve_second`` is written out.

Why not ``torch.linalg.lstsq``: its default CPU driver returned wrong answers on wide systems here
(docs/design.md, "Numerics"). Wide systems use the minimum-norm solution ``M^T (M M^T)^-1 t`` by Cholesky, tall
ones the normal equations by Cholesky, and only a failed factorisation falls back to ``gelsd``.
The callers check the residual of every solve themselves.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import NotApplicable

# Largest Gram matrix formed for a coupled (both kernels > 1) solve: 6400^2 float64 = 330 MB.
MAX_SYSTEM_ROWS = 6400


def is_centre_only(f: torch.Tensor) -> bool:
    """True when every off-centre tap of ``f`` is exactly zero (the filter acts as a 1x1)."""
    k = f.shape[-1]
    if k == 1:
        return True
    mask = torch.ones(k, k, dtype=torch.bool)
    mask[k // 2, k // 2] = False
    return bool((f[..., mask] == 0).all())


def compose_taps(f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
    """``filters.compose(f1, f2)`` as a sum of per-tap matrix products, skipping all-zero taps.

    Same result (a true convolution of the taps); much faster when a factor is centre-only, where
    ``compose``'s convolution would still multiply every zero (512 channels: 0.3 s instead of 7 s).
    """
    mid, cin, k1, _ = f1.shape
    cout, _, k2, _ = f2.shape
    out = f1.new_zeros(cout, cin, k1 + k2 - 1, k1 + k2 - 1)
    taps1 = [(i, j) for i in range(k1) for j in range(k1) if bool(f1[:, :, i, j].any())]
    taps2 = [(i, j) for i in range(k2) for j in range(k2) if bool(f2[:, :, i, j].any())]
    for i1, j1 in taps1:
        for i2, j2 in taps2:
            out[:, :, i1 + i2, j1 + j2] += f2[:, :, i2, j2] @ f1[:, :, i1, j1]
    return out


def conv_matrix(f1: torch.Tensor, k2: int) -> torch.Tensor:
    """``M`` with ``M @ F2[o].reshape(-1) == compose(f1, F2)[o].reshape(-1)`` for every ``o``.

    ``compose`` is a true (flipped) 2-D convolution of the taps, so
    ``T[o, i, p] = sum_m sum_b F1[m, i, p - b] F2[o, m, b]`` and ``M[(i, p), (m, b)] = F1[m, i, p - b]``.
    """
    mid, cin, k1, _ = f1.shape
    kk = k1 + k2 - 1
    m = f1.new_zeros(cin, kk, kk, mid, k2, k2)
    f = f1.permute(1, 2, 3, 0)
    for bh in range(k2):
        for bw in range(k2):
            m[:, bh:bh + k1, bw:bw + k1, :, bh, bw] = f
    return m.reshape(cin * kk * kk, mid * k2 * k2)


def _cholesky(gram: torch.Tensor) -> torch.Tensor | None:
    """The Cholesky factor of ``gram``, or None when it is not numerically positive definite."""
    chol, info = torch.linalg.cholesky_ex(gram)
    return chol if int(info) == 0 else None


def solve_matrix(m: torch.Tensor, t: torch.Tensor, null_std: float = 0.0,
                 rng: np.random.Generator | None = None) -> torch.Tensor:
    """Solve ``m @ x = t`` (``t`` has one column per system): minimum norm when wide, least squares
    when tall. With ``null_std > 0`` and a non-trivial null space, a random null-space component
    of that per-entry scale is added: the composition is unchanged, the factor gets no forced zeros.
    """
    rows, cols = m.shape
    if rows <= cols:
        chol = _cholesky(m @ m.T)
        if chol is None:
            return torch.linalg.lstsq(m, t, driver="gelsd").solution
        x = m.T @ torch.cholesky_solve(t, chol)
        if null_std > 0 and rows < cols and rng is not None:
            z = torch.from_numpy(rng.standard_normal((cols, t.shape[1]))).to(m.dtype) * null_std
            x = x + (z - m.T @ torch.cholesky_solve(m @ z, chol))
        return x
    chol = _cholesky(m.T @ m)
    if chol is None:
        return torch.linalg.lstsq(m, t, driver="gelsd").solution
    return torch.cholesky_solve(m.T @ t, chol)


def solve_second(t: torch.Tensor, f1: torch.Tensor, k2: int, null_std: float = 0.0,
                 rng: np.random.Generator | None = None) -> torch.Tensor:
    """The ``F2`` (``(Cout, mid, k2, k2)``) closest to ``compose(f1, F2) == t`` (exact when solvable).

    A centre-only ``f1`` decouples the system tap by tap into ``F2_b A = T_b`` with one
    ``mid x Cin`` matrix ``A`` (fast at any width); otherwise the full system is solved.
    """
    cout, cin, kk, _ = t.shape
    mid, _, k1, _ = f1.shape
    if is_centre_only(f1):
        c = k1 // 2
        a = f1[:, :, c, c]                                   # (mid, cin)
        window = t[:, :, c:c + k2, c:c + k2]                 # taps reachable through a 1x1 factor
        # per tap b: A^T F2_b^T = T_b^T; all taps share A, so one solve takes every tap's columns
        rhs = window.permute(1, 2, 3, 0).reshape(cin, k2 * k2 * cout)
        x = solve_matrix(a.T, rhs, null_std, rng)
        return x.reshape(mid, k2, k2, cout).permute(3, 0, 1, 2).contiguous()
    if cin * kk * kk > MAX_SYSTEM_ROWS and mid * k2 * k2 > MAX_SYSTEM_ROWS:
        raise NotApplicable(
            f"a direct solve for a {k1}x{k1} -> {k2}x{k2} factorisation at {cin} -> {mid} -> {cout} channels needs a "
            f"{min(cin * kk * kk, mid * k2 * k2)}-square Gram matrix (limit {MAX_SYSTEM_ROWS}); use a 1x1 factor (k1=1 or "
            f"k2=1) or mode 'sparse', which solve tap by tap at any width")
    m = conv_matrix(f1, k2)
    x = solve_matrix(m, t.reshape(cout, cin * kk * kk).T, null_std, rng)
    return x.T.reshape(cout, mid, k2, k2).contiguous()


def solve_first(t: torch.Tensor, f2: torch.Tensor, k1: int, null_std: float = 0.0,
                rng: np.random.Generator | None = None) -> torch.Tensor:
    """The ``F1`` (``(mid, Cin, k1, k1)``) closest to ``compose(F1, f2) == t``, by transposition."""
    x = solve_second(t.transpose(0, 1), f2.transpose(0, 1), k1, null_std, rng)
    return x.transpose(0, 1).contiguous()
