"""Irreducible modules: capacity, the cut solve with widening, fixed widths, the refusal."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from morphnas.morphism.errors import NotApplicable
from morphnas.morphism.module import as_module_spec, parse_module_spec, solve_module
from morphnas.morphism.module.capacity import cut_counts, min_cut_width
from morphnas.morphism.module.generate import random_irreducible_module
from morphnas.morphism.module.linalg import module_filter, rel_residual, solve_rows
from morphnas.morphism.module.solve import initial_widths, module_graph


def _g(cout, cin, k=3, seed=0):
    return torch.randn(cout, cin, k, k, dtype=torch.float64, generator=torch.Generator().manual_seed(1000 + seed))


def _check(module, g, sol):
    """The claimed residual is the real one, recomputed from the leaf filters."""
    fg = module_graph(module, sol.widths)
    assert rel_residual(g, module_filter(fg, sol.filters)) == pytest.approx(sol.residual, rel=1e-3, abs=1e-15)


def test_capacity_counts_of_module_d():
    d = as_module_spec("D")
    g = module_graph(d, initial_widths(d, 16, 16))
    c = cut_counts(g, "sink")
    # F5, F6, F7 with 16 channels at 3x3 each against 16 * 7 * 7 constraints: not enough at 1x.
    assert (c.unknowns, c.constraints, c.free, c.ok) == (3 * 16 * 9, 16 * 49, ("a", "c", "b"), False)
    assert cut_counts(g.with_widths({"a": 32, "b": 32, "c": 32}), "sink").ok
    # The numeric (proxy) capacity is smaller than counting: the target's outer ring is zero.
    w = min_cut_width(g, "sink", c.free, 3, torch.Generator().manual_seed(0))
    assert 16 < w <= 28


@pytest.mark.parametrize("name, width", [("D", 8), ("D", 16), ("D_mixed", 16)])
def test_module_d_is_exact_with_widening(name, width):
    d = as_module_spec(name)
    g = _g(width, width, seed=width)
    sol = solve_module(d, g, seed=1)
    assert not sol.simple and sol.mode == "exact-dense"
    assert sol.residual <= 1e-10 and sol.residual_f32 <= 1e-6
    _check(d, g, sol)
    if name == "D":
        assert sol.widened == ("a", "b", "c") and all(width < sol.widths[b] <= 2 * width for b in "abc")
    else:   # 1x1 inner edges: exact at the block width already
        assert sol.widened == () and "sink cut" in " ".join(sol.log) or "source cut" in " ".join(sol.log)


def test_module_d_at_width_64_is_exact():
    d = as_module_spec("D")
    g = _g(64, 64, seed=3)
    sol = solve_module(d, g, seed=0)
    assert sol.residual <= 1e-10 and sol.residual_f32 <= 1e-6
    assert all(sol.widths[b] <= 128 for b in "abc")


@pytest.mark.parametrize("seed", range(6))
def test_random_irreducible_modules_are_exact_with_widening(seed):
    rng = np.random.default_rng(100 + seed)
    m = random_irreducible_module(rng, blobs=int(rng.integers(2, 4)), max_edges=8)
    k = 3 if m.effective_kernel >= 3 else 1
    g = _g(8, 6, k, seed)
    sol = solve_module(m, g, seed=seed)
    assert not sol.simple and sol.residual <= 1e-10 and sol.mode == "exact-dense"
    _check(m, g, sol)


def test_pinned_widths_are_respected():
    data = as_module_spec("D").to_json()
    data["blobs"] = {"a": {}, "b": {}, "c": {"width": 20}}
    m = parse_module_spec(data)
    sol = solve_module(m, _g(12, 12), seed=0)
    assert sol.widths["c"] == 20 and sol.residual <= 1e-10


@pytest.mark.parametrize("seed", range(4))
def test_fixed_widths_reach_tolerance_or_refuse_clearly(seed):
    rng = np.random.default_rng(200 + seed)
    m = random_irreducible_module(rng, blobs=2, max_edges=6)
    k = 3 if m.effective_kernel >= 3 else 1
    g = _g(6, 6, k, seed)
    try:
        sol = solve_module(m, g, widen=False, iterations=20, seed=seed)
    except NotApplicable as err:
        msg = str(err)
        assert "relative residual" in msg and "above tol=1e-06" in msg and "make it exact" in msg
    else:
        assert sol.residual <= 1e-6 and all(sol.widths[b] == 6 for b in m.blobs)
        _check(m, g, sol)


def test_module_d_at_fixed_width_is_refused_with_the_width_that_works():
    d = as_module_spec("D")
    with pytest.raises(NotApplicable) as info:
        solve_module(d, _g(8, 8), widen=False, iterations=5, seed=0)
    msg = str(info.value)
    assert "fixed internal widths (a=8, b=8, c=8)" in msg
    assert "best one-shot residual" in msg and "within the 5-iteration budget" in msg
    # the widths it names do make it exact
    widths = dict(part.split("=") for part in msg.split("; internal widths ")[1].split(" make")[0].split(", "))
    data = d.to_json()
    data["blobs"] = {b: {"width": int(w)} for b, w in widths.items()}
    assert solve_module(parse_module_spec(data), _g(8, 8), widen=False, seed=0).residual <= 1e-10


def test_module_smaller_than_the_conv_is_not_applicable():
    one = parse_module_spec({"edges": [{"from": "s", "to": "t", "kernel": 1}]})
    with pytest.raises(NotApplicable, match="effective kernel 1.*smaller than the conv's 3x3"):
        solve_module(one, _g(4, 4))


def test_solve_rows_handles_rank_deficient_consistent_systems():
    gen = torch.Generator().manual_seed(0)
    b = torch.randn(30, 5, generator=gen, dtype=torch.float64) @ torch.randn(5, 40, generator=gen, dtype=torch.float64)
    x_true = torch.randn(3, 30, generator=gen, dtype=torch.float64)
    target = x_true @ b                      # rank 5 system, consistent
    x = solve_rows(b, target)
    assert (x @ b - target).norm() / target.norm() < 1e-10


def test_levenberg_marquardt_makes_a_fixed_width_module_exact():
    """Every cut of this module ends in 1x1 edges, so no one-shot cut is exact at width 6 (widening
    would need ~9x); the iterative fallback reaches float64 exactness at the given widths."""
    rows = [("e0", "s", "b0", 1), ("e1", "s", "b1", 1), ("e2", "s", "t", 1), ("e3", "b0", "b1", 1),
            ("e4", "b0", "b2", 3), ("e5", "b0", "t", 1), ("e6", "b1", "b2", 1), ("e7", "b2", "t", 1)]
    m = parse_module_spec({"edges": [{"name": n, "from": a, "to": b, "kernel": k} for n, a, b, k in rows]})
    g = _g(6, 6, seed=5)
    sol = solve_module(m, g, widen=False, seed=0)
    assert "Levenberg-Marquardt" in sol.method and "best one-shot residual" in sol.log[0]
    assert sol.residual <= 1e-10 and all(sol.widths[b] == 6 for b in m.blobs)
    _check(m, g, sol)


def test_widening_prefers_an_exact_fit_at_the_given_widths_over_a_tenfold_widening():
    rows = [("e0", "s", "b0", 1), ("e1", "s", "b1", 1), ("e2", "s", "t", 1), ("e3", "b0", "b1", 1),
            ("e4", "b0", "b2", 3), ("e5", "b0", "t", 1), ("e6", "b1", "b2", 1), ("e7", "b2", "t", 1)]
    m = parse_module_spec({"edges": [{"name": n, "from": a, "to": b, "kernel": k} for n, a, b, k in rows]})
    g = _g(6, 6, seed=5)
    sol = solve_module(m, g, seed=0)            # widen=True: the sink/source cuts alone would need ~10x
    assert sol.mode == "exact-dense" and sol.residual <= 1e-10 and "Levenberg-Marquardt" in sol.method
    assert sol.widened == ()
