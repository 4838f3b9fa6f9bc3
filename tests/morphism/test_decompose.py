"""The NetMorph decomposition solver: exactness, density, capacity limits, determinism."""
import math

import numpy as np
import pytest
import torch

from morphnas.morphism.errors import NotApplicable, SpecError
from morphnas.morphism.filters import compose, identity_filter, pad_to
from morphnas.morphism.solver import (
    decompose,
    dense_capacity_ok,
    min_dense_width,
    recommended_dense_width,
    relative_residual,
)
from morphnas.morphism.solver.linsolve import compose_taps, conv_matrix, solve_matrix


def _filter(seed, cout, cin, k):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.standard_normal((cout, cin, k, k))) * math.sqrt(2 / (cout * k * k))


def _he(out, k):
    return math.sqrt(2 / (out * k * k))


def test_conv_matrix_matches_compose():
    f1, f2 = _filter(0, 5, 3, 3), _filter(1, 4, 5, 3)
    m = conv_matrix(f1, 3)
    t = compose(f1, f2)
    got = (m @ f2.reshape(4, -1).T).T.reshape(t.shape)
    assert torch.allclose(got, t, atol=1e-14, rtol=0)


def test_compose_taps_matches_compose():
    f1, f2 = _filter(0, 5, 3, 3), _filter(1, 4, 5, 1)
    assert torch.allclose(compose_taps(f1, f2), compose(f1, f2), atol=1e-14, rtol=0)
    f1 = torch.zeros(5, 3, 3, 3, dtype=torch.float64)
    f1[:, :, 1, 1] = _filter(2, 5, 3, 1)[:, :, 0, 0]
    f2 = _filter(3, 4, 5, 3)
    assert torch.allclose(compose_taps(f1, f2), compose(f1, f2), atol=1e-14, rtol=0)


def test_wide_solve_is_min_norm_and_exact():
    rng = np.random.default_rng(0)
    m = torch.from_numpy(rng.standard_normal((30, 50)))
    t = torch.from_numpy(rng.standard_normal((30, 4)))
    x = solve_matrix(m, t)
    assert (m @ x - t).abs().max() < 1e-12
    # min norm: x lies in the row space of m
    x_perp = x - m.T @ torch.linalg.solve(m @ m.T, m @ x)
    assert x_perp.abs().max() < 1e-12


@pytest.mark.parametrize("k1,k2", [(3, 1), (1, 3)])
def test_one_by_one_factor_is_dense_exact_at_same_width(k1, k2):
    g = _filter(2, 16, 16, 3)
    d = decompose(g, k1, k2, rng=np.random.default_rng(0))
    assert d.mode == "dense" and d.exact
    assert d.zero_fraction == 0.0
    assert d.residual <= 1e-13
    assert relative_residual(d.f1, d.f2, g) == pytest.approx(d.residual)
    assert d.f1.shape == (16, 16, k1, k1) and d.f2.shape == (16, 16, k2, k2)
    # rescaled: both factors within a small factor of their He scale
    r1 = d.f1.std().item() / _he(16, k1)
    r2 = d.f2.std().item() / _he(16, k2)
    assert 0.3 < r1 < 3 and 0.3 < r2 < 3
    assert r1 / r2 == pytest.approx(1.0, rel=0.35)


def test_1c1_identity_path_dense():
    g = 0.5 * identity_filter(16, 1)
    d = decompose(g, 1, 1, rng=np.random.default_rng(3))
    assert d.mode == "dense" and d.zero_fraction == 0.0 and d.residual < 1e-13
    assert torch.allclose(d.f2[:, :, 0, 0] @ d.f1[:, :, 0, 0], 0.5 * torch.eye(16, dtype=torch.float64), atol=1e-13)


def test_3x3_into_3x3s_same_width_is_sparse_exact():
    g = _filter(4, 16, 16, 3)
    assert not dense_capacity_ok(16, 16, 3, 3, 16, 3)
    d = decompose(g, 3, 3, rng=np.random.default_rng(0))
    assert d.mode == "sparse" and d.residual <= 1e-13
    # one factor is centre-only (8 of 9 taps zero), the other dense: 4/9 of all entries zero
    assert d.zero_fraction == pytest.approx(4 / 9)
    with pytest.raises(NotApplicable, match=r"mid >= 45"):
        decompose(g, 3, 3, mode="dense")


def test_3x3_into_3x3s_widened_is_dense_exact():
    g = _filter(5, 8, 8, 3)
    w = min_dense_width(8, 8, 3, 3, 3)
    assert w == math.ceil(8 * 25 / 9)
    d = decompose(g, 3, 3, mid=w, mode="dense", rng=np.random.default_rng(0))
    assert d.mode == "dense" and d.zero_fraction == 0.0 and d.residual <= 1e-12
    assert d.f1.shape == (w, 8, 3, 3)


@pytest.mark.parametrize("k1,k2,sparse_zf", [(3, 1, 0.8), (3, 3, 8 / 9)])
def test_identity_paths_at_block_width_sparse_then_dense_when_widened(k1, k2, sparse_zf):
    c = 8
    g = 0.5 * identity_filter(c, 1)
    d = decompose(g, k1, k2, rng=np.random.default_rng(0))
    assert d.mode == "sparse" and d.residual <= 1e-13
    assert d.zero_fraction == pytest.approx(sparse_zf)
    w = min_dense_width(c, c, k1, k2, 1)
    assert w == (c + 1 if k2 == 1 else math.ceil(c * 25 / 9))
    d = decompose(g, k1, k2, mid=w, rng=np.random.default_rng(0))
    assert d.mode == "dense" and d.zero_fraction == 0.0 and d.residual <= 1e-12


def test_approx_mode_is_dense_and_reports_residual():
    g = _filter(6, 8, 8, 3)
    d = decompose(g, 3, 3, mode="approx", noise=0.01, rng=np.random.default_rng(0))
    assert d.mode == "approx" and not d.exact
    assert d.zero_fraction == 0.0
    assert 1e-6 < d.residual < 0.2
    assert relative_residual(d.f1, d.f2, g) == pytest.approx(d.residual)
    bigger = decompose(g, 3, 3, mode="approx", noise=0.1, rng=np.random.default_rng(0))
    assert bigger.residual > d.residual
    # where dense exact is possible, "approx" gives it
    assert decompose(g, 3, 1, mode="approx").mode == "dense"


def test_deterministic_given_rng_and_different_across_seeds():
    g = _filter(7, 8, 4, 3)
    a = decompose(g, 1, 3, rng=np.random.default_rng(11))
    b = decompose(g, 1, 3, rng=np.random.default_rng(11))
    c = decompose(g, 1, 3, rng=np.random.default_rng(12))
    assert torch.equal(a.f1, b.f1) and torch.equal(a.f2, b.f2)
    assert not torch.equal(a.f1, c.f1)


def test_input_filter_not_modified_and_wider_mid_uses_null_space():
    g = _filter(8, 6, 4, 3)
    before = g.clone()
    d = decompose(g, 3, 1, mid=10, rng=np.random.default_rng(0))
    assert torch.equal(g, before)
    assert d.mode == "dense" and d.zero_fraction == 0.0 and d.residual < 1e-13
    # the extra inner channels carry non-trivial (cancelling) features, not zeros
    assert (d.f1.reshape(10, -1).norm(dim=1) > 1e-3).all()


def test_bad_arguments_name_the_problem():
    g = _filter(9, 4, 4, 3)
    with pytest.raises(NotApplicable, match=r"k1 \+ k2 - 1 = 1 must be >= the filter size k=3"):
        decompose(g, 1, 1)
    with pytest.raises(NotApplicable, match="k2=2 must be odd"):
        decompose(g, 3, 2)
    with pytest.raises(SpecError, match="mode 'dens'"):
        decompose(g, 3, 1, mode="dens")
    with pytest.raises(NotApplicable, match="mid >= 4"):
        decompose(g, 3, 3, mid=2, mode="sparse")
    with pytest.raises(SpecError, match="square"):
        decompose(torch.zeros(4, 4, 3), 3, 1)


def test_recommended_width_is_better_conditioned():
    g = _filter(11, 8, 8, 3)
    assert min_dense_width(8, 8, 3, 3) == 23 and recommended_dense_width(8, 8, 3, 3) == 26
    assert recommended_dense_width(8, 8, 3, 1) == 8          # a 1x1 factor needs no margin
    assert recommended_dense_width(8, 8, 3, 1, 1) == 9       # 3c1 path: one spare channel
    tight = decompose(g, 3, 3, mid=23, rng=np.random.default_rng(0))
    roomy = decompose(g, 3, 3, mid=26, rng=np.random.default_rng(0))
    assert tight.mode == roomy.mode == "dense"
    assert roomy.residual < 1e-12
    big = lambda d: max(d.f1.std().item() / _he(d.f1.shape[0], 3), d.f2.std().item() / _he(8, 3))
    assert big(roomy) < big(tight) and big(roomy) < 2.0


def test_five_by_five_needs_width_for_two_threes():
    g = _filter(10, 4, 4, 5)
    with pytest.raises(NotApplicable, match="mid >= 12"):
        decompose(g, 3, 3)
    d = decompose(g, 3, 3, mid=12, rng=np.random.default_rng(0))
    assert d.mode == "dense" and d.residual < 1e-12
    assert torch.allclose(compose(d.f1, d.f2), pad_to(g, 5), atol=1e-12)
    # no exact start at width 4: alternating least squares, reported as approximate
    a = decompose(g, 3, 3, mode="approx", rng=np.random.default_rng(0))
    assert a.mode == "approx" and "alternating" in a.notes and a.zero_fraction == 0.0
    assert 0.01 < a.residual < 0.6
    assert relative_residual(a.f1, a.f2, g) == pytest.approx(a.residual)
