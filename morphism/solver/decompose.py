"""NetMorph decomposition: write a filter ``G`` as ``F1`` (k1 x k1) followed by ``F2`` (k2 x k2).

``compose(F1, F2) == pad_to(G, K)`` with ``K = k1 + k2 - 1 >= k``. Exactness is the contract;
density (no forced zeros, "stable" morphism) the preference. What is possible:

* **dense** (exact, no zeros): fix one factor at random (He scale) and solve the other. The
  system for ``F2`` has ``mid*k2^2`` unknowns and ``Cin*K^2`` equations per output channel, the one
  for ``F1`` ``mid*k1^2`` and ``Cout*K^2`` per input channel: NetMorph's capacity condition
  ``max(mid*Cin*k1^2, Cout*mid*k2^2) >= Cout*Cin*K^2``. When the fixed factor is 1x1 and ``G`` is
  smaller than ``K`` the zero taps of the target force zeros unless the null space is non-trivial,
  so one more inner channel is needed there. ``min_dense_width`` gives the smallest ``mid``.
  Any spare capacity gets a random null-space component so the solved factor has no zeros either.
* **sparse** (exact, zeros in one factor): the fixed factor is centre-only (a random ``mid x C``
  matrix in the middle tap, the rest zero, so it acts as a 1x1) and the other is solved tap by
  tap. Needs ``k2 >= k`` and ``mid >= Cin`` (centre-only F1) or ``k1 >= k`` and ``mid >= Cout``
  (centre-only F2). A centre-only factor also keeps per-layer padding exact at the borders.
* **approx**: start from the sparse solution, add ``noise`` (relative to He scale) to every entry of
  its centre-only factor, and re-solve the other by least squares; the residual is reported.
* **auto**: dense where the capacity allows, else sparse.

Every result is rescaled per inner channel (``F1[m] *= s``, ``F2[:, m] /= s``, which leaves the
composition unchanged) so both factors sit at comparable multiples of their He scale: a solved
factor otherwise comes out 7-17x too large (docs/design.md, "Numerics"). All solving is float64 and every result
is checked by recomposing, never trusted from the solver.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import NotApplicable, PreservationError, SpecError
from ..filters import pad_to
from .linsolve import compose_taps, is_centre_only, solve_first, solve_second

EXACT_TOL = 1e-10     # relative filter residual an exact mode must reach
MODES = ("auto", "dense", "sparse", "approx")
_TRIES = 3            # fresh random factors tried before an exact mode gives up


@dataclass(frozen=True)
class Decomposition:
    """``f1``: ``(mid, Cin, k1, k1)``, ``f2``: ``(Cout, mid, k2, k2)`` (float64).

    ``mode`` is what was achieved ("dense" | "sparse" | "approx"), ``residual`` the relative
    Frobenius error of the recomposed filter, ``zero_fraction`` the share of exact zeros over both.
    """

    f1: torch.Tensor
    f2: torch.Tensor
    mode: str
    residual: float
    zero_fraction: float
    notes: str = ""

    @property
    def exact(self) -> bool:
        return self.mode in ("dense", "sparse")


def _widths(cout: int, cin: int, k1: int, k2: int, k: int | None) -> tuple[int, int]:
    """Smallest ``mid`` for a dense exact solve of (F2 given F1, F1 given F2)."""
    kk = k1 + k2 - 1
    k = kk if k is None else k
    w_second = math.ceil(cin * kk * kk / (k2 * k2))
    w_first = math.ceil(cout * kk * kk / (k1 * k1))
    if k < kk and k1 == 1:   # a 1x1 F1 decouples the taps: zero target taps need a null space
        w_second = max(w_second, cin + 1)
    if k < kk and k2 == 1:
        w_first = max(w_first, cout + 1)
    return w_second, w_first


def min_dense_width(cout: int, cin: int, k1: int, k2: int, k: int | None = None) -> int:
    """The smallest inner width ``mid`` at which a dense exact decomposition can exist (counting).

    Necessary, and sufficient for generic filters once the channel counts are not tiny; with a
    1-3 channel side the taps' syzygies can make the system rank deficient, which ``decompose``
    detects (it verifies every result) and reports.
    ``k`` is the size of the target filter (default ``k1 + k2 - 1``); a smaller target (e.g. the
    1x1 identity of an ``insert_path``) can need one more channel, see the module docstring.
    """
    return min(_widths(cout, cin, k1, k2, k))


def recommended_dense_width(cout: int, cin: int, k1: int, k2: int, k: int | None = None) -> int:
    """The inner width to widen to for a dense exact decomposition that is also well conditioned.

    At exactly :func:`min_dense_width` a coupled system (both kernels > 1) is square and ill
    conditioned (width 64, 3x3 -> 3x3 . 3x3: residual 6e-11, factors 5x their He scale); 10% more
    channels bring it to 7e-14 and 1.4x (bench/results/decompose.md). A 1x1 factor's tap-by-tap
    system is well conditioned at the minimum already.
    """
    w_second, w_first = _widths(cout, cin, k1, k2, k)
    if k1 > 1:   # F1 fixed dense k1 x k1: the F2 system couples the taps
        w_second = max(w_second + 1, math.ceil(1.1 * w_second))
    if k2 > 1:
        w_first = max(w_first + 1, math.ceil(1.1 * w_first))
    return min(w_second, w_first)


def dense_capacity_ok(cout: int, cin: int, k1: int, k2: int, mid: int, k: int | None = None) -> bool:
    """NetMorph's capacity condition (with the zero-tap refinement): dense exact is possible."""
    return mid >= min_dense_width(cout, cin, k1, k2, k)


def sparse_ok(cout: int, cin: int, k: int, k1: int, k2: int, mid: int) -> bool:
    """An exact decomposition with a centre-only factor exists."""
    return (k2 >= k and mid >= cin) or (k1 >= k and mid >= cout)


def relative_residual(f1: torch.Tensor, f2: torch.Tensor, g: torch.Tensor) -> float:
    """``||compose(f1, f2) - pad_to(g, K)|| / ||g||`` (absolute when ``g`` is zero)."""
    t = pad_to(g, f1.shape[-1] + f2.shape[-1] - 1)
    err = torch.linalg.vector_norm(compose_taps(f1, f2) - t).item()
    scale = torch.linalg.vector_norm(t).item()
    return err / scale if scale > 0 else err


def _he_std(out_channels: int, k: int) -> float:
    # fan-out He scale, as Conv2d.init_params uses
    return math.sqrt(2.0 / (out_channels * k * k))


def _gaussian(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> torch.Tensor:
    return torch.from_numpy(rng.standard_normal(shape)) * std


def well_conditioned(rng: np.random.Generator, rows: int, cols: int, std: float) -> torch.Tensor:
    """A dense random ``rows x cols`` matrix with condition number <= 4 and He-scale entries.

    A plain Gaussian square matrix has condition number ~ its size (often 100s), and the solved
    factor inherits it: float32 rounding is amplified by it and so is approximate-mode noise.
    Clipping the singular values to [mean/2, 2*mean] keeps the random directions (the matrix stays
    dense and non-orthogonal, docs/design.md, "Numerics") and bounds the amplification.
    """
    a = _gaussian(rng, (rows, cols), 1.0)
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    m = s.mean()
    a = u @ torch.diag(s.clamp(m / 2, m * 2)) @ vh
    return a * (std * math.sqrt(rows * cols) / torch.linalg.vector_norm(a))


def _centre_factor(rng: np.random.Generator, rows: int, cols: int, k: int, std: float) -> torch.Tensor:
    """A centre-only ``(rows, cols, k, k)`` factor holding a well-conditioned random matrix."""
    f = torch.zeros(rows, cols, k, k, dtype=torch.float64)
    f[:, :, k // 2, k // 2] = well_conditioned(rng, rows, cols, std)
    return f


def _rescale(f1: torch.Tensor, f2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Balance each inner channel so both factors are at the same multiple of their He norm."""
    mid, cin, k1, _ = f1.shape
    cout, _, k2, _ = f2.shape
    h1 = _he_std(mid, k1) * math.sqrt(cin * k1 * k1)     # expected norm of one F1 row
    h2 = _he_std(cout, k2) * math.sqrt(cout * k2 * k2)   # expected norm of one F2 column
    n1 = torch.linalg.vector_norm(f1.reshape(mid, -1), dim=1) / h1
    n2 = torch.linalg.vector_norm(f2.transpose(0, 1).reshape(mid, -1), dim=1) / h2
    ok = (n1 > 0) & (n2 > 0)
    s = torch.where(ok, torch.sqrt(n2 / torch.where(ok, n1, 1.0)), torch.ones_like(n1))
    return f1 * s.view(-1, 1, 1, 1), f2 / s.view(1, -1, 1, 1)


def _zero_fraction(*ts: torch.Tensor) -> float:
    n = sum(t.numel() for t in ts)
    return sum(int((t == 0).sum()) for t in ts) / n if n else 0.0


def _validate(g: torch.Tensor, k1: int, k2: int, mid: int, mode: str) -> None:
    if g.dim() != 4 or g.shape[2] != g.shape[3]:
        raise SpecError(f"decompose needs a square (Cout, Cin, k, k) filter, got shape {tuple(g.shape)}")
    k = g.shape[-1]
    for name, v in (("k", k), ("k1", k1), ("k2", k2)):
        if v < 1 or v % 2 == 0:
            raise NotApplicable(f"decompose: {name}={v} must be odd and >= 1 (centred filters)")
    if k1 + k2 - 1 < k:
        raise NotApplicable(f"decompose: k1 + k2 - 1 = {k1 + k2 - 1} must be >= the filter size k={k}; "
                            f"use larger k1/k2")
    if mid < 1:
        raise NotApplicable(f"decompose: the inner width mid={mid} must be >= 1")
    if mode not in MODES:
        raise SpecError(f"decompose: mode {mode!r} is not one of {', '.join(MODES)}")


def decompose(g: torch.Tensor, k1: int, k2: int, mid: int | None = None, mode: str = "auto",
              rng: np.random.Generator | None = None, noise: float = 0.01) -> Decomposition:
    """Factor ``g`` (``(Cout, Cin, k, k)``) into ``f1`` (k1) then ``f2`` (k2) with ``mid`` inner
    channels (default ``Cout``). Raises :class:`NotApplicable` naming the width that would work
    when the requested mode is impossible; the random factor comes only from ``rng``.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    g = g.detach().to(torch.float64)
    mid = (g.shape[0] if g.dim() == 4 else 1) if mid is None else int(mid)
    _validate(g, k1, k2, mid, mode)
    cout, cin, k, _ = g.shape
    dense_ok = dense_capacity_ok(cout, cin, k1, k2, mid, k)
    auto = mode == "auto"
    if auto:
        mode = "dense" if dense_ok else "sparse"
    if mode == "dense" and not dense_ok:
        raise NotApplicable(
            f"decompose: no dense exact {k1}x{k1} -> {k2}x{k2} factorisation of a {cout}x{cin}x{k}x{k} filter "
            f"at inner width {mid}; it needs mid >= {min_dense_width(cout, cin, k1, k2, k)} "
            f"(or use mode 'sparse' / 'approx')")
    if mode == "approx" and dense_ok:
        mode = "dense"   # exact and dense is strictly better than approximately dense
    if mode in ("sparse", "approx") and not sparse_ok(cout, cin, k, k1, k2, mid):
        if mode == "sparse":
            raise NotApplicable(
                f"decompose: no exact {k1}x{k1} -> {k2}x{k2} factorisation of a {cout}x{cin}x{k}x{k} filter at "
                f"inner width {mid}: a centre-only factor needs k2 >= {k} and mid >= {cin}, or k1 >= {k} and "
                f"mid >= {cout}; a dense one needs mid >= {min_dense_width(cout, cin, k1, k2, k)}")
    t = pad_to(g, k1 + k2 - 1)
    fallback = auto and mode == "dense" and sparse_ok(cout, cin, k, k1, k2, mid)
    for attempt in range(_TRIES):
        if mode == "dense":
            f1, f2, notes = _dense(t, k, k1, k2, mid, rng)
        elif mode == "sparse":
            f1, f2, notes = _sparse(t, k, k1, k2, mid, rng)
        else:
            f1, f2, notes = _approx(t, k, k1, k2, mid, rng, noise)
        f1, f2 = _rescale(f1, f2)
        res = relative_residual(f1, f2, g)
        if mode == "approx" or res <= EXACT_TOL:
            break
        if fallback:   # auto: a dense solve at the edge of capacity missed; sparse is exact anyway
            mode, fallback = "sparse", False
    else:
        if mode == "dense":
            # Counting unknowns is necessary, not sufficient: with few channels (a 1- or 3-channel
            # input) the syzygies of the random factor's taps leave the system rank deficient.
            raise NotApplicable(
                f"decompose: no dense exact {k1}x{k1} -> {k2}x{k2} factorisation of a {cout}x{cin}x{k}x{k} filter "
                f"found at inner width {mid} (residual {res:.3g} > {EXACT_TOL:g}: the system is rank deficient "
                f"at this width); use a larger mid, or mode 'sparse' / 'approx'")
        raise PreservationError(
            f"decompose: the {mode} solve of a {cout}x{cin}x{k}x{k} filter into {k1}x{k1} -> {k2}x{k2} "
            f"at width {mid} left a relative residual {res:.3g} > {EXACT_TOL:g} after {_TRIES} random draws")
    zf = _zero_fraction(f1, f2)
    achieved = "approx" if (mode == "approx" and res > EXACT_TOL) else ("dense" if zf == 0 else "sparse")
    return Decomposition(f1, f2, achieved, res, zf, notes)


def _dense(t, k, k1, k2, mid, rng):
    cout, cin = t.shape[:2]
    w_second, w_first = _widths(cout, cin, k1, k2, k)
    can_second, can_first = mid >= w_second, mid >= w_first
    # Prefer the side whose fixed factor is 1x1 (a tap-by-tap solve), else the smaller system.
    second = can_second and (not can_first or k1 == 1 or (k2 != 1 and cin <= cout))
    if second:
        f1 = (_centre_factor(rng, mid, cin, 1, _he_std(mid, k1)) if k1 == 1
              else _gaussian(rng, (mid, cin, k1, k1), _he_std(mid, k1)))
        f2 = solve_second(t, f1, k2, _he_std(cout, k2), rng)
        return f1, f2, f"dense: F1 random, F2 solved (mid={mid})"
    f2 = (_centre_factor(rng, cout, mid, 1, _he_std(cout, k2)) if k2 == 1
          else _gaussian(rng, (cout, mid, k2, k2), _he_std(cout, k2)))
    f1 = solve_first(t, f2, k1, _he_std(mid, k1), rng)
    return f1, f2, f"dense: F2 random, F1 solved (mid={mid})"


def _sparse_side(cout, cin, k, k1, k2, mid) -> str:
    """'first' = centre-only F1 (F2 solved), 'second' = centre-only F2; the one with fewer zeros."""
    a = k2 >= k and mid >= cin
    b = k1 >= k and mid >= cout
    if a and b:
        return "first" if mid * cin * (k1 * k1 - 1) <= cout * mid * (k2 * k2 - 1) else "second"
    return "first" if a else "second"


def _sparse(t, k, k1, k2, mid, rng):
    cout, cin = t.shape[:2]
    if _sparse_side(cout, cin, k, k1, k2, mid) == "first":
        f1 = _centre_factor(rng, mid, cin, k1, _he_std(mid, k1))
        f2 = solve_second(t, f1, k2, _he_std(cout, k2), rng)
        return f1, f2, f"sparse: F1 centre-only, F2 solved tap by tap (mid={mid})"
    f2 = _centre_factor(rng, cout, mid, k2, _he_std(cout, k2))
    f1 = solve_first(t, f2, k1, _he_std(mid, k1), rng)
    return f1, f2, f"sparse: F2 centre-only, F1 solved tap by tap (mid={mid})"


def _approx(t, k, k1, k2, mid, rng, noise):
    cout, cin = t.shape[:2]
    if sparse_ok(cout, cin, k, k1, k2, mid):
        # The noise must land on a factor with off-centre taps, or the zeros stay.
        ok = {"first": k2 >= k and mid >= cin and k1 > 1, "second": k1 >= k and mid >= cout and k2 > 1}
        side = (_sparse_side(cout, cin, k, k1, k2, mid) if ok["first"] == ok["second"]
                else ("first" if ok["first"] else "second"))
    else:   # no exact start: alternating least squares from a random dense F1
        return _als(t, k1, k2, mid, rng)
    if side == "first":
        std = _he_std(mid, k1)
        f1 = _centre_factor(rng, mid, cin, k1, std) + _gaussian(rng, (mid, cin, k1, k1), std * noise)
        f2 = solve_second(t, f1, k2, 0.0, rng)
        return f1, f2, f"approx: F1 centre + noise {noise:g}, F2 least squares (mid={mid})"
    std = _he_std(cout, k2)
    f2 = _centre_factor(rng, cout, mid, k2, std) + _gaussian(rng, (cout, mid, k2, k2), std * noise)
    f1 = solve_first(t, f2, k1, 0.0, rng)
    return f1, f2, f"approx: F2 centre + noise {noise:g}, F1 least squares (mid={mid})"


def _als(t, k1, k2, mid, rng, sweeps: int = 25):
    """Alternate exact least-squares solves of F2 and F1 (each a convex problem) from a random F1;
    keeps the best pair. Used only when no exact decomposition exists at this width."""
    cout, cin = t.shape[:2]
    f1 = _gaussian(rng, (mid, cin, k1, k1), _he_std(mid, k1))
    best, best_err = None, math.inf
    scale = max(torch.linalg.vector_norm(t).item(), 1e-300)
    for _ in range(sweeps):
        f2 = solve_second(t, f1, k2)
        f1 = solve_first(t, f2, k1)
        err = torch.linalg.vector_norm(compose_taps(f1, f2) - t).item() / scale
        if err < best_err - 1e-12:
            best, best_err = (f1, f2), err
        else:
            break
    if best is None:  # the first sweep always improves on inf unless the target is not finite
        raise RuntimeError(f"alternating least squares found no finite solution (mid={mid})")
    return best[0], best[1], f"approx: {sweeps}-sweep alternating least squares from random (mid={mid})"


__all__ = ["Decomposition", "decompose", "dense_capacity_ok", "min_dense_width", "recommended_dense_width",
           "sparse_ok",
           "relative_residual", "is_centre_only", "well_conditioned", "EXACT_TOL", "MODES"]
