"""split_identity, insert_path and morph_block: the paper's block morph, exact, dense where possible."""
from __future__ import annotations

import math

import pytest
import torch
from _ops_util import F32_TOL, F64_TOL, perturbed_net, rel_err, same_tensors

from morphnas.morphism.blocks import morph_blocks
from morphnas.morphism.compile import compile_network
from morphnas.morphism.errors import NotApplicable, SpecError
from morphnas.morphism.filters import compose, identity_filter, pad_to
from morphnas.morphism.identity import calibrate_identity_bns
from morphnas.morphism.layers import BatchNorm2d, Conv2d, Identity, PAct, Pad, PReLU
from morphnas.morphism.ops import apply_op, replay
from morphnas.morphism.ops.morph_block import OP as MORPH_BLOCK
from morphnas.morphism.solver.decompose import min_dense_width


@pytest.fixture(scope="module")
def r20():
    return perturbed_net("resnet20", seed=5)


def _composed(child, prefix):
    f1 = child.params[f"{prefix}.conv1"]["weight"].double()
    f2 = child.params[f"{prefix}.conv2"]["weight"].double()
    return f1, f2, compose(f1, f2)


def test_split_identity_is_exact(r20):
    child, rec = apply_op(r20, "split_identity", "layer2.1.shortcut", {})
    assert rec.new_edges == ("layer2.1.shortcut.0", "layer2.1.shortcut.1") and rec.removed_edges == ("layer2.1.shortcut",)
    assert [child.edge(n).layer for n in rec.new_edges] == [Identity(0.5), Identity(0.5)]
    assert rel_err(r20.to(torch.float64), child.to(torch.float64), torch.float64) <= 1e-15
    # a second split of a half gives quarters; a custom ratio keeps the sum
    grand, _ = apply_op(child, "split_identity", "layer2.1.shortcut.1", {"ratio": 0.25})
    scales = sorted(e.layer.scale for e in grand.edges_between("layer2.0.out", "layer2.1.sum") if isinstance(e.layer, Identity))
    assert scales == [0.125, 0.375, 0.5]
    assert rel_err(r20, grand, torch.float32) <= F32_TOL


def test_insert_path_1c1_is_dense_exact_and_well_scaled(r20):
    n64 = r20.to(torch.float64)
    child, rec = apply_op(n64, "insert_path", "layer3.1.shortcut", {}, seed=1)
    p = "layer3.1.shortcut"
    assert rec.new_edges == tuple(f"{p}.{n}" for n in ("conv1", "bn1", "prelu1", "conv2", "bn2"))
    assert rec.mode == "exact-dense" and rec.zero_fraction == 0.0
    f1, f2, g = _composed(child, p)
    assert (f1 != 0).all() and (f2 != 0).all()
    assert (g - identity_filter(64, 1)).abs().max() < 1e-12
    # He scale of a 64 -> 64 1x1 conv is sqrt(2/64): both factors within a small multiple of it
    he = math.sqrt(2 / 64)
    for f in (f1, f2):
        assert 0.2 * he < f.std().item() < 5 * he
    assert rel_err(n64, child, torch.float64) <= F64_TOL
    assert isinstance(child.edge(f"{p}.prelu1").layer, PReLU) and (child.params[f"{p}.prelu1"]["weight"] == 1).all()
    bn = child.params[f"{p}.bn1"]
    assert torch.allclose(bn["weight"], torch.sqrt(bn["running_var"] + 1e-5)) and torch.equal(bn["bias"], bn["running_mean"])


@pytest.mark.parametrize("k1,k2", [(3, 1), (1, 3), (3, 3)])
def test_block_width_paths_with_k_gt_1_are_sparse_exact(r20, k1, k2):
    n64 = r20.to(torch.float64)
    child, rec = apply_op(n64, "insert_path", "layer1.2.shortcut", {"k1": k1, "k2": k2}, seed=2)
    assert rec.mode == "exact-sparse" and 0.5 < rec.zero_fraction < 1.0
    assert not any(isinstance(child.edge(n).layer, Pad) for n in rec.new_edges)  # centre-only: per-layer padding
    f1, f2, g = _composed(child, "layer1.2.shortcut")
    assert (g - pad_to(identity_filter(16, 1), k1 + k2 - 1)).abs().max() < 1e-12
    assert rel_err(n64, child, torch.float64) <= F64_TOL
    c32, _ = apply_op(r20, "insert_path", "layer1.2.shortcut", {"k1": k1, "k2": k2}, seed=2)
    assert rel_err(r20, c32, torch.float32) <= F32_TOL


def test_widened_3c3_path_is_dense_and_runs_pad_once(r20):
    n64 = r20.to(torch.float64)
    width = min_dense_width(16, 16, 3, 3, 1)
    child, rec = apply_op(n64, "insert_path", "layer1.2.shortcut", {"k1": 3, "k2": 3, "mode": "dense"}, seed=3)
    p = "layer1.2.shortcut"
    assert rec.mode == "exact-dense" and rec.zero_fraction == 0.0 and "pad once" in rec.notes
    assert rec.new_edges[0] == f"{p}.pad" and child.edge(f"{p}.pad").layer == Pad(2)
    assert child.edge(f"{p}.conv1").layer == Conv2d(16, width, 3, 1, 0)
    assert child.edge(f"{p}.conv2").layer == Conv2d(width, 16, 3, 1, 0)
    f1, f2, _ = _composed(child, p)
    assert (f1 != 0).all() and (f2 != 0).all()
    for f in (f1, f2):  # within a small multiple of the He scale of its conv
        he = math.sqrt(2 / (f.shape[0] * 9))
        assert 0.2 * he < f.std().item() < 5 * he
    # exact on the whole output, borders included (the 8x8 maps are mostly border)
    assert rel_err(n64, child, torch.float64, batch=4) <= F64_TOL
    c32, _ = apply_op(r20, "insert_path", "layer1.2.shortcut", {"k1": 3, "k2": 3, "mode": "dense"}, seed=3)
    assert rel_err(r20, c32, torch.float32) <= F32_TOL


def test_dense_at_block_width_is_refused_with_the_width_that_works(r20):
    with pytest.raises(NotApplicable, match=f"mid >= {min_dense_width(16, 16, 3, 3, 1)}"):
        apply_op(r20, "insert_path", "layer1.2.shortcut", {"k1": 3, "k2": 3, "mode": "dense", "width": 16})


def test_approx_mode_reports_its_error(r20):
    child, rec = apply_op(r20.to(torch.float64), "insert_path", "layer1.2.shortcut", {"k1": 3, "k2": 1, "mode": "approx"})
    assert rec.mode == "approximate" and rec.zero_fraction == 0.0 and 0 < rec.error < 0.2
    assert rel_err(r20.to(torch.float64), child, torch.float64) > 1e-8


def test_parametric_activation_and_no_activation(r20):
    child, rec = apply_op(r20, "insert_path", "layer1.1.shortcut", {"act": "relu"})
    act = child.edge("layer1.1.shortcut.act1").layer
    assert act == PAct(16, "relu") and (child.params["layer1.1.shortcut.act1"]["a"] == 1).all()
    assert rel_err(r20, child, torch.float32) <= F32_TOL
    bare, rec = apply_op(r20, "insert_path", "layer1.1.shortcut", {"act": "none"})
    assert len(rec.new_edges) == 4 and rel_err(r20, bare, torch.float32) <= F32_TOL


@pytest.mark.parametrize("branches", [1, 2])
@pytest.mark.parametrize("k1,k2", [(1, 1), (3, 3)])
def test_morph_block_is_exact(r20, k1, k2, branches):
    n64 = r20.to(torch.float64)
    params = {"k1": k1, "k2": k2, "branches": branches}
    child, rec = apply_op(n64, "morph_block", "layer2.2.shortcut", params, seed=1)
    assert rel_err(n64, child, torch.float64) <= F64_TOL
    c32, _ = apply_op(r20, "morph_block", "layer2.2.shortcut", params, seed=1)
    assert rel_err(r20, c32, torch.float32) <= F32_TOL
    joins = child.in_edges("layer2.2.sum")
    if branches == 1:
        assert child.edge("layer2.2.shortcut").layer == Identity(0.5) and rec.removed_edges == ()
        assert {e.name for e in joins} == {"layer2.2.bn2", "layer2.2.shortcut", "layer2.2.morph.bn2"}
    else:
        assert not child.has_edge("layer2.2.shortcut") and rec.removed_edges == ("layer2.2.shortcut",)
        assert {e.name for e in joins} == {"layer2.2.bn2", "layer2.2.morph0.bn2", "layer2.2.morph1.bn2"}
    assert rec.mode == ("exact-dense" if k1 == k2 == 1 else "exact-sparse")
    assert len(rec.new_edges) == 5 * branches
    if branches == 2 and k1 == 1:  # the two paths are drawn independently
        assert not torch.equal(child.params["layer2.2.morph0.conv1"]["weight"], child.params["layer2.2.morph1.conv1"]["weight"])


def test_morph_block_twice_on_one_block_and_replay(r20):
    a, ra = apply_op(r20, "morph_block", "layer1.1.shortcut", {}, seed=0)
    b, rb = apply_op(a, "morph_block", "layer1.1.shortcut", {"k1": 3}, seed=1)
    assert b.edge("layer1.1.shortcut").layer == Identity(0.25)
    assert b.has_edge("layer1.1.morph.conv1") and b.has_edge("layer1.1.morph_1.conv1")
    assert rel_err(r20, b, torch.float32) <= F32_TOL
    assert same_tensors(replay(r20, [ra, rb.to_json()]), b)


def test_morph_block_sites_and_refusals(r20):
    assert MORPH_BLOCK.sites(r20) == sorted(f"layer{s}.{b}.shortcut" for s in (1, 2, 3) for b in (0, 1, 2)
                                            if not (s > 1 and b == 0))
    with pytest.raises(NotApplicable, match="not an identity"):
        apply_op(r20, "morph_block", "layer1.1.conv1", {})
    with pytest.raises(NotApplicable, match="did you mean"):
        apply_op(r20, "morph_block", "layer1.1.shortcu", {})
    with pytest.raises(SpecError, match="'branches' must be one of 1, 2, got 3"):
        apply_op(r20, "morph_block", "layer1.1.shortcut", {"branches": 3})
    with pytest.raises(SpecError, match="odd kernel"):
        apply_op(r20, "morph_block", "layer1.1.shortcut", {"k1": 2})
    lone, _ = apply_op(r20, "split_identity", "layer1.1.shortcut", {})
    solo, _ = apply_op(lone, "insert_path", "layer1.1.shortcut.1", {})
    assert "layer1.1.shortcut.0" in MORPH_BLOCK.sites(solo)  # still a shortcut into a sum


def test_calibrated_bns_keep_eval_function_and_hold_data_statistics(r20):
    child, rec = apply_op(r20, "morph_block", "layer1.1.shortcut", {}, seed=0)
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    cal = calibrate_identity_bns(child, rec.new_edges, x)
    assert rel_err(r20, cal, torch.float32) <= F32_TOL
    bn = cal.params["layer1.1.morph.bn1"]
    assert not torch.allclose(bn["running_mean"], torch.zeros(16))
    assert torch.allclose(bn["weight"], torch.sqrt(bn["running_var"] + 1e-5))
    # in train mode (batch statistics everywhere) the calibrated child matches the parent on this batch
    def train_err(net):
        m, ref = compile_network(net).train(), compile_network(r20).train()
        with torch.no_grad():
            return ((m(x) - ref(x)).abs().max() / ref(x).abs().max()).item()
    assert train_err(cal) < 1e-5 < 0.01 < train_err(child)
    assert isinstance(cal.edge("layer1.1.morph.bn2").layer, BatchNorm2d)


@pytest.mark.parametrize("params", [{}, {"k1": 3, "k2": 3, "branches": 2}])
def test_morph_blocks_equals_one_op_at_a_time(r20, params):
    sites = [b["shortcut"] for b in r20.meta["blocks"] if b["index"] >= 1]
    assert len(sites) == 6
    child, records = morph_blocks(r20, sites, params, seed=10)
    assert [r.seed for r in records] == list(range(10, 16)) and [r.site for r in records] == sites
    one_by_one = r20
    for i, site in enumerate(sites):
        one_by_one, rec = apply_op(one_by_one, "morph_block", site, params, seed=10 + i)
        assert rec == records[i]
    assert same_tensors(child, one_by_one) and same_tensors(replay(r20, records), child)
    assert rel_err(r20, child, torch.float32) <= F32_TOL
    with pytest.raises(NotApplicable):
        morph_blocks(r20, ["layer1.1.shortcut", "layer1.1.conv1"])


def test_block_ops_on_an_imported_torchvision_resnet():
    from morphnas.morphism.perturb import perturb
    from morphnas.spaces.resolve import resolve_network
    net = perturb(resolve_network("torchvision:resnet18", num_classes=10, input_size=32), seed=0)
    assert MORPH_BLOCK.sites(net) == ["layer1.0.shortcut", "layer1.1.shortcut", "layer2.1.shortcut",
                                      "layer3.1.shortcut", "layer4.1.shortcut"]
    child, _ = morph_blocks(net, ["layer1.1.shortcut", "layer4.1.shortcut"], {"branches": 2})
    child, _ = apply_op(child, "widen", "layer2.1.sum", {"factor": 1.25}, seed=1)
    assert rel_err(net, child, torch.float32) <= F32_TOL
