"""Algorithm 1: reduction, the simple-morphable verdict, the morph sequence, exact rebuilds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from morphnas.morphism.module import as_module_spec, is_simple_morphable, parse_module_spec, reduce_module
from morphnas.morphism.module.generate import random_simple_module
from morphnas.morphism.module.linalg import module_filter, rel_residual
from morphnas.morphism.module.solve import module_graph, solve_module


def _m(*rows):
    return parse_module_spec({"edges": [{"name": n, "from": a, "to": b, "kernel": k} for n, a, b, k in rows]})


# The paper's Fig. 2a modules: (A) a chain, (B) two parallel paths, (C) parallel paths of chains
# joined and continued; (D) the irreducible one.
MOD_A = _m(("F1", "s", "a", 3), ("F2", "a", "t", 3))
MOD_B = _m(("F1", "s", "t", 3), ("F2", "s", "t", 1))
MOD_C = _m(("F1", "s", "a", 3), ("F2", "a", "b", 1), ("F3", "s", "b", 3), ("F4", "b", "t", 3))


def test_verdicts_for_the_paper_modules():
    assert is_simple_morphable(MOD_A) and is_simple_morphable(MOD_B) and is_simple_morphable(MOD_C)
    d = as_module_spec("D")
    red = reduce_module(d)
    assert not red.simple and red.steps == ()            # neither TYPE-I nor TYPE-II applies anywhere
    assert len(red.remainder) == 7 and red.remainder_blobs() == ["a", "b", "c"]


def test_reduction_of_module_c_and_its_morph_sequence():
    red = reduce_module(MOD_C)
    assert red.simple
    assert [s.kind for s in red.steps] == ["TYPE-I", "TYPE-II", "TYPE-I"]
    (root,) = red.remainder
    assert root.kernel == 5 and sorted(root.leaves()) == ["F1", "F2", "F3", "F4"]
    seq = red.morph_sequence()
    assert seq[0].startswith("TYPE-I: (F4∘((F2∘F1)+F3)) -> ((F2∘F1)+F3) then F4 via blob b")
    assert seq[1].startswith("TYPE-II") and seq[2] == "TYPE-I: (F2∘F1) -> F1 then F2 via blob a"


def test_complex_module_reduces_to_its_irreducible_core():
    # Module (D) with its F5 split into a chain through blob x and a parallel 1x1 beside F6.
    m = _m(("F1", "s", "a", 3), ("F2", "s", "b", 3), ("F3", "a", "c", 3), ("F4", "b", "c", 3),
           ("F5a", "a", "x", 1), ("F5b", "x", "t", 3), ("F6", "c", "t", 3), ("F6p", "c", "t", 1),
           ("F7", "b", "t", 3))
    red = reduce_module(m)
    assert not red.simple and len(red.remainder) == 7 and len(red.steps) == 2
    assert {n.label() for n in red.remainder} >= {"(F5b∘F5a)", "(F6+F6p)"}


@pytest.mark.parametrize("seed", range(12))
def test_random_simple_modules_reduce_and_rebuild_exactly(seed):
    rng = np.random.default_rng(seed)
    m = random_simple_module(rng, edges=int(rng.integers(2, 8)))
    red = reduce_module(m)
    assert red.simple and len(red.steps) == len(m.edges) - 1
    k = 3 if m.effective_kernel >= 3 else 1
    cin, cout = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    g = torch.randn(cout, cin, k, k, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    sol = solve_module(m, g, seed=seed)
    assert sol.simple and sol.mode == "exact-dense"
    assert sol.residual <= 1e-10
    # Independent check of the claim from the leaf filters, and shapes follow the widths.
    fg = module_graph(m, sol.widths)
    assert rel_residual(g, module_filter(fg, sol.filters)) <= 1e-10
    for e in m.edges:
        assert tuple(sol.filters[e.name].shape) == (sol.widths[e.dst], sol.widths[e.src], e.kernel, e.kernel)
    # Dense: no filter of the rebuilt module is (nearly) all zero.
    assert all(f.abs().max() > 1e-3 * g.abs().max() for f in sol.filters.values())


def test_parallel_split_is_not_symmetric():
    g = torch.randn(4, 4, 3, 3, dtype=torch.float64)
    sol = solve_module(_m(("P", "s", "t", 3), ("Q", "s", "t", 3)), g, seed=0)
    assert sol.residual <= 1e-14
    assert (sol.filters["P"] - sol.filters["Q"]).abs().max() > 0.1 * g.abs().max()
