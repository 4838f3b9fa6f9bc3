"""The conformance suite every morph op passes (registry driven, like timm's model tests).

For every op in ``default_registry()`` x every test seed x a seeded sample of the op's sites, on a
network whose BN statistics/affine parameters and activation slopes are random (``perturb``):

* float64 max relative output error <= 1e-10 and float32 <= 1e-5 (eval mode, whole output);
* the input network is unchanged; the result lints;
* the same seed gives the same child, and replaying the record rebuilds it;
* save / load round-trips the child bit for bit.

An op added to the registry is tested here without touching this file. Ops that need more than
their defaults at a site (e.g. ``module`` needs a module file) say so in ``op.example_params``.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from _ops_util import F32_TOL, F64_TOL, NETS, perturbed_net, rel_err, same_tensors

from morphnas.morphism.errors import MorphnasError, NotApplicable
from morphnas.morphism.lint import lint_problems
from morphnas.morphism.ops import apply_op, default_registry, replay
from morphnas.morphism.serialize import load_network, save_network

REGISTRY = default_registry()
OPS = REGISTRY.names()
EXACT_OPS = [n for n in OPS if not REGISTRY.get(n).approximate]
APPROX_OPS = [n for n in OPS if REGISTRY.get(n).approximate]   # shrinking ops: see the test at the end
# Sites sampled per op and seed; the ImageNet-style net is 10x slower per check, one site is enough.
SAMPLE = {"tiny_resnet": 2, "small_cnn": 2, "resnet20": 2, "resnet18": 1, "tiny_densenet": 2, "tiny_mobilenet": 2,
          "mlp": 2, "tiny_vit": 2}


@pytest.fixture(scope="module")
def nets():
    """Perturbed float32 nets and their float64 copies, built once for the module."""
    out = {}
    for name in NETS:
        n32 = perturbed_net(name, seed=7)
        out[name] = (n32, n32.to(torch.float64))
    return out


def _sample(sites: list[str], k: int, key: str) -> list[str]:
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    return sorted(rng.choice(sites, size=min(k, len(sites)), replace=False).tolist())


@pytest.mark.parametrize("net_name", list(NETS))
@pytest.mark.parametrize("op_name", EXACT_OPS)
def test_op_preserves_the_function(op_name, net_name, nets, tmp_path):
    op = REGISTRY.get(op_name)
    n32, n64 = nets[net_name]
    sites = op.sites(n32)
    if not sites:
        # "No site here" is a claim too: every candidate of the op's site kind is refused with a reason.
        candidates = n32.edge_names() if op.site_kind == "edge" else n32.blobs()
        for c in candidates:
            with pytest.raises(NotApplicable, match=r"\S"):
                op.check(n32, c, op.parse_params(None))
        return
    for i, site in enumerate(_sample(sites, SAMPLE[net_name], f"{op_name}/{net_name}")):
        params = op.example_params(n32, site)
        where = f"{op_name} at {site!r} of {net_name} with {params}"
        before = n64.copy()
        child64, rec = apply_op(n64, op, site, params, seed=i)
        assert same_tensors(n64, before) and n64.meta == before.meta, f"{where}: the input was modified"
        assert lint_problems(child64) == [], where
        assert rec.mode != "approximate", f"{where}: default parameters must be exact, got {rec}"
        e64 = rel_err(n64, child64, torch.float64)
        assert e64 <= F64_TOL, f"{where}: float64 relative error {e64:.3g}"

        child32, rec32 = apply_op(n32, op, site, params, seed=i)
        e32 = rel_err(n32, child32, torch.float32)
        assert e32 <= F32_TOL, f"{where}: float32 relative error {e32:.3g}"
        again, _ = apply_op(n32, op, site, params, seed=i)
        assert same_tensors(child32, again), f"{where}: the same seed gave a different child"
        assert same_tensors(replay(n32, [rec32.to_json()]), child32), f"{where}: replaying the record differs"
        loaded = load_network(save_network(child32, tmp_path / f"child{i}"))
        assert same_tensors(loaded, child32), f"{where}: save/load changed the child"
        assert rec32.op == op_name and rec32.site == site and 0.0 <= rec32.zero_fraction <= 1.0


@pytest.mark.parametrize("op_name", OPS)
def test_sites_are_typed_and_wrong_sites_are_refused(op_name, nets):
    op = REGISTRY.get(op_name)
    assert op.site_kind in ("edge", "blob")
    found = False
    for net_name in ("tiny_resnet", "resnet20", "tiny_densenet", "tiny_mobilenet", "tiny_vit"):
        net = nets[net_name][0]
        sites = op.sites(net)
        found |= bool(sites)
        universe = net.edge_names() if op.site_kind == "edge" else list(net.graph.nodes)
        assert set(sites) <= set(universe), f"{op_name}: sites must be {op.site_kind} names"
        assert sites == sorted(sites)
        wrong = sorted(set(universe) - set(sites))
        if wrong:
            with pytest.raises(NotApplicable):
                op.check(net, wrong[0], op.parse_params(None))
        with pytest.raises(MorphnasError):
            apply_op(net, op, "no.such.site", None)
    assert found, f"{op_name} has no site in tiny_resnet, resnet20, tiny_densenet, tiny_mobilenet nor tiny_vit"


def test_every_issue_op_is_registered():
    mine = {"widen", "split_identity", "insert_path", "morph_block",
            "deepen_linear", "deepen_depthwise", "insert_branch", "concat_skip"}   # issue 14
    assert mine <= set(OPS)


@pytest.mark.parametrize("net_name", list(NETS))
@pytest.mark.parametrize("op_name", APPROX_OPS)
def test_approximate_op_reports_the_error_it_makes(op_name, net_name, nets, tmp_path):
    """Shrinking ops change the function: the record's error must be the error measured on the
    documented batch (``_shrink.ERROR_BATCH`` N(0, 1) inputs seeded ``ERROR_SEED``, the parent's dtype),
    and a record that claims ``exact`` must be exact. The rest is as for every op."""
    from morphnas.morphism.ops._shrink import ERROR_BATCH, ERROR_SEED
    from morphnas.morphism.verify import output_diff
    op = REGISTRY.get(op_name)
    n32, n64 = nets[net_name]
    for i, site in enumerate(_sample(op.sites(n32), SAMPLE[net_name], f"{op_name}/{net_name}")):
        params = op.example_params(n32, site)
        where = f"{op_name} at {site!r} of {net_name} with {params}"
        for net, tol in ((n64, F64_TOL), (n32, F32_TOL)):
            before = net.copy()
            child, rec = apply_op(net, op, site, params, seed=i)
            assert same_tensors(net, before) and net.meta == before.meta, f"{where}: the input was modified"
            assert lint_problems(child) == [], where
            measured = output_diff(net, child, dtype=net.dtype, batch=ERROR_BATCH, seed=ERROR_SEED).rel_err
            if rec.mode == "exact":
                assert rec.error == 0.0 and measured <= tol, f"{where}: claims exact, measured {measured:.3g}"
            else:
                assert rec.mode == "approximate" and rec.error == pytest.approx(measured, rel=1e-9, abs=0), where
            assert rec.op == op_name and rec.site == site, where
            assert len(child) < len(net) or child.num_params() < net.num_params(), f"{where}: nothing was removed"
        # child and rec are now the float32 ones
        again, rec2 = apply_op(n32, op, site, params, seed=i)
        assert same_tensors(child, again) and rec2 == rec, f"{where}: the same seed gave a different child"
        assert same_tensors(replay(n32, [rec.to_json()]), child), f"{where}: replaying the record differs"
        loaded = load_network(save_network(child, tmp_path / f"child{i}"))
        assert same_tensors(loaded, child), f"{where}: save/load changed the child"
