"""The shrinking ops undo the growing ones exactly where that is possible, and say so.

Why: LEMONADE pairs exact growing morphs with approximate shrinking ones. A shrink that removes what
a growth added (a Net2Net replica, a NetMorph silent unit, a zero kernel ring, an identity layer, a
zero branch) must be exact and marked exact, so a search can tell a free shrink from a costly one
(and the worker fine-tunes with distillation only when needed). The conformance suite covers the
generic properties (reported error == measured error, replay, save/load) on every site.
"""
from __future__ import annotations

import pytest
import torch
from _ops_util import F64_TOL, perturbed_net, rel_err

from morphnas.morphism.channel_groups import channel_group
from morphnas.morphism.errors import NotApplicable, SpecError
from morphnas.morphism.ops import apply_op, default_registry


@pytest.fixture(scope="module")
def net():
    return perturbed_net("tiny_resnet", seed=3).to(torch.float64)


@pytest.mark.parametrize("method", ["net2net", "netmorph"])
def test_prune_undoes_widen_exactly(net, method):
    wide, _ = apply_op(net, "widen", "layer1.0.sum", {"factor": 1.5, "method": method}, seed=1)
    assert channel_group(wide, "layer1.0.sum").channels == 12
    narrow, rec = apply_op(wide, "prune_channels", "layer1.0.sum", {"channels": 4}, seed=0)
    assert rec.mode == "exact" and rec.error == 0.0, rec
    assert channel_group(narrow, "layer1.0.sum").channels == 8
    assert narrow.num_params() == net.num_params()
    assert rel_err(wide, narrow, torch.float64) <= F64_TOL
    assert rel_err(net, narrow, torch.float64) <= F64_TOL


def test_merge_refuses_without_duplicates_and_norm_prunes_the_weakest(net):
    with pytest.raises(NotApplicable, match="only 0 silent or duplicate channel"):
        apply_op(net, "prune_channels", "layer1.0.c1", {"channels": 2, "method": "merge"})
    w = net.params["layer1.0.conv1"]["weight"]
    weakest = sorted(range(8), key=lambda c: (float((w[c] ** 2).sum()), c))[:2]
    child, rec = apply_op(net, "prune_channels", "layer1.0.c1", {"channels": 2, "method": "norm"})
    assert rec.mode == "approximate" and rec.error > 0 and f"removed {sorted(weakest)}" in rec.notes
    assert child.edge("layer1.0.conv2").layer.in_channels == 6 and child.edge("layer1.0.bn1").layer.num_features == 6


def test_prune_keeps_one_channel_and_refuses_bad_counts(net):
    with pytest.raises(NotApplicable, match="at least one must stay"):
        apply_op(net, "prune_channels", "layer1.0.c1", {"channels": 8})
    with pytest.raises(SpecError, match="parameter 'fraction' must be < 1"):
        apply_op(net, "prune_channels", "layer1.0.c1", {"fraction": 1.0})
    with pytest.raises(NotApplicable, match="network's output"):
        apply_op(net, "prune_channels", "output", None)


def test_shrink_undoes_enlarge_exactly_and_refuses_what_it_cannot(net):
    big, _ = apply_op(net, "enlarge_kernel", "layer1.0.conv1", None)
    small, rec = apply_op(big, "shrink_kernel", "layer1.0.conv1", None)
    assert rec.mode == "exact" and small.edge("layer1.0.conv1").layer == net.edge("layer1.0.conv1").layer
    assert torch.equal(small.params["layer1.0.conv1"]["weight"], net.params["layer1.0.conv1"]["weight"])
    _, rec = apply_op(net, "shrink_kernel", "layer1.0.conv1", None)
    assert rec.mode == "approximate" and rec.error > 0
    with pytest.raises(NotApplicable, match="a 1x1 kernel cannot shrink"):
        apply_op(net, "shrink_kernel", "layer2.0.downsample.0", None)


def test_remove_layer_undoes_insert_layer_exactly(net):
    grown, rec = apply_op(net, "insert_layer", "layer1.0.a1", {"k": 3, "act": "prelu"})
    conv, bn, act = rec.new_edges
    cur = grown
    for name in (act, bn, conv):
        cur, r = apply_op(cur, "remove_layer", name, None)
        assert r.mode == "exact" and r.removed_edges == (name,), r
    assert len(cur) == len(net) and rel_err(net, cur, torch.float64) <= F64_TOL


def test_remove_layer_reconnects_and_keeps_block_meta(net):
    child, rec = apply_op(net, "remove_layer", "prelu1", None)
    assert rec.mode == "approximate"
    assert not child.has_blob("stem.a1") and child.edge("layer1.0.conv1").src == "stem.b1"
    assert child.meta["blocks"][0]["in"] == "stem.b1"
    with pytest.raises(NotApplicable, match="shapes differ"):
        apply_op(net, "remove_layer", "layer2.0.conv1", None)
    with pytest.raises(NotApplicable, match="join of 2 edges; remove a whole branch with remove_branch"):
        apply_op(net, "remove_layer", "layer1.0.bn2", None)


def test_remove_branch_takes_the_whole_path_and_is_exact_when_it_is_zero(net):
    child, rec = apply_op(net, "remove_branch", "layer1.0.bn2", None)
    assert set(rec.removed_edges) == {"layer1.0.bn2", "layer1.0.conv2", "layer1.0.prelu1", "layer1.0.bn1",
                                      "layer1.0.conv1"}
    assert rec.mode == "approximate" and [e.name for e in child.in_edges("layer1.0.sum")] == ["layer1.0.shortcut"]
    zeroed = net.copy()
    zeroed.params["layer1.0.bn2"]["weight"].zero_()
    zeroed.params["layer1.0.bn2"]["bias"].zero_()
    child, rec = apply_op(zeroed, "remove_branch", "layer1.0.bn2", None)
    assert rec.mode == "exact" and rel_err(zeroed, child, torch.float64) <= F64_TOL
    proj, rec = apply_op(net, "remove_branch", "layer2.0.downsample.1", None)
    assert set(rec.removed_edges) == {"layer2.0.downsample.0", "layer2.0.downsample.1"}


def test_remove_skip_and_split_identity_halves(net):
    child, rec = apply_op(net, "remove_skip", "layer1.0.shortcut", None)
    assert rec.mode == "approximate" and child.meta["blocks"][0]["shortcut"] is None
    with pytest.raises(NotApplicable, match="remove it with remove_skip"):
        apply_op(net, "remove_branch", "layer1.0.shortcut", None)
    with pytest.raises(NotApplicable, match="not an identity"):
        apply_op(net, "remove_skip", "layer1.0.bn2", None)


def test_shrinking_ops_are_registered_as_approximate():
    reg = default_registry()
    for name in ("remove_layer", "prune_channels", "remove_branch", "remove_skip", "shrink_kernel"):
        assert reg.get(name).approximate
    assert not reg.get("widen").approximate
