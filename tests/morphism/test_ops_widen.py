"""widen: channel groups, Net2WiderNet and NetMorph widening, exactness, noise, refusals."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from _ops_util import F32_TOL, F64_TOL, perturbed_net, rel_err, same_tensors

from morphnas.morphism.channel_groups import all_groups, channel_group
from morphnas.morphism.errors import NotApplicable, SpecError
from morphnas.morphism.graph import Network
from morphnas.morphism.layers import Activation, BatchNorm2d, Conv2d, Flatten, Identity, Linear, PAct, PReLU
from morphnas.morphism.ops import apply_op
from morphnas.morphism.ops.widen import OP as WIDEN
from morphnas.morphism.perturb import perturb


@pytest.fixture(scope="module")
def r20():
    return perturbed_net("resnet20", seed=3)


def test_a_residual_stage_is_one_group_with_its_border_convs(r20):
    g = channel_group(r20, "layer2.1.sum")
    # layer2.0 (projection) .. layer2.2: sum and out of each block = 6 blobs, plus layer2.0.ds (the
    # projection conv's output, tied by its BN), layer2.0.c2, layer2.1.c2, layer2.2.c2.
    assert sorted(g.blobs) == sorted(
        [f"layer2.{b}.{x}" for b in range(3) for x in ("sum", "out", "c2")] + ["layer2.0.ds"])
    assert g.channels == 32 and g.problem == ""
    assert g.producers == ("layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2", "layer2.2.conv2")
    assert g.consumers == ("layer2.1.conv1", "layer2.2.conv1", "layer3.0.conv1", "layer3.0.downsample.0")
    assert set(g.internal) >= {"layer2.1.shortcut", "layer2.2.shortcut", "layer2.0.downsample.1", "layer2.1.bn2"}


def test_the_last_stage_group_reaches_the_classifier(r20):
    g = channel_group(r20, "head.flat")
    assert g.blobs["head.flat"] == 1 and g.blobs["head.pool"] == 1 and g.channels == 64
    assert g.consumers == ("fc", "layer3.1.conv1", "layer3.2.conv1")
    groups = all_groups(r20)
    # stem + stage 1 (tied through identity shortcuts), stage 2, stage 3, and one inner group
    # (conv1 -> bn1 -> prelu1) per block: 3 + 9.
    assert len(groups) == 12 and all(not g.problem for g in groups)
    assert sum(len(g.blobs) for g in groups) == len(r20.graph.nodes) - 2


@pytest.mark.parametrize("method,split", [("net2net", "equal"), ("net2net", "random"), ("netmorph", "equal")])
@pytest.mark.parametrize("site", ["layer1.1.b1", "layer2.1.sum", "head.flat", "stem.a1"])
def test_widen_is_exact(r20, site, method, split):
    n64 = r20.to(torch.float64)
    child, rec = apply_op(n64, "widen", site, {"method": method, "split": split, "factor": 1.5}, seed=4)
    assert rel_err(n64, child, torch.float64) <= F64_TOL
    assert rec.mode == ("exact-dense" if method == "net2net" else "exact-sparse") and rec.error is None
    c32, _ = apply_op(r20, "widen", site, {"method": method, "split": split, "factor": 1.5}, seed=4)
    assert rel_err(r20, c32, torch.float32) <= F32_TOL
    g_old, g_new = channel_group(r20, site), channel_group(child, site)
    assert g_new.channels == round(1.5 * g_old.channels)
    assert set(g_new.blobs) == set(g_old.blobs)


def test_net2net_replicates_units_and_divides_outgoing_weights(r20):
    child, _ = apply_op(r20, "widen", "layer1.1.b1", {"width": 24}, seed=0)
    w_old = r20.params["layer1.1.conv1"]["weight"]
    w_new = child.params["layer1.1.conv1"]["weight"]
    assert w_new.shape == (24, 16, 3, 3)
    assert torch.equal(w_new[:16], w_old)
    # each new unit copies one old unit (balanced: 8 distinct ones for 8 new units)
    src = [next(j for j in range(16) if torch.equal(w_new[i], w_old[j])) for i in range(16, 24)]
    assert len(set(src)) == 8
    bn_old, bn_new = r20.params["layer1.1.bn1"], child.params["layer1.1.bn1"]
    for k in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(bn_new[k][16:], bn_old[k][src])
    assert torch.equal(child.params["layer1.1.prelu1"]["weight"][16:], r20.params["layer1.1.prelu1"]["weight"][src])
    c_old, c_new = r20.params["layer1.1.conv2"]["weight"], child.params["layer1.1.conv2"]["weight"]
    for i, j in zip(range(16, 24), src):
        assert torch.allclose(c_new[:, i], c_old[:, j] / 2) and torch.allclose(c_new[:, j], c_old[:, j] / 2)
    assert child.edge("layer1.1.conv2").layer.in_channels == 24


def test_random_split_breaks_symmetry_exactly(r20):
    child, rec = apply_op(r20, "widen", "layer1.1.b1", {"width": 32, "split": "random"}, seed=1)
    c_old, c_new = r20.params["layer1.1.conv2"]["weight"].double(), child.params["layer1.1.conv2"]["weight"].double()
    # with 32 = 2 x 16 every old unit has exactly one replica: shares sum to one, and are not 1/2
    pair_sum = c_new[:, :16] + c_new[:, 16:][:, _replica_order(r20, child)]
    assert torch.allclose(pair_sum, c_old, atol=1e-6)
    assert not torch.allclose(c_new[:, :16], c_old / 2, atol=1e-3)


def _replica_order(parent, child):
    w_old, w_new = parent.params["layer1.1.conv1"]["weight"], child.params["layer1.1.conv1"]["weight"]
    src = [next(j for j in range(16) if torch.equal(w_new[i], w_old[j])) for i in range(16, 32)]
    return np.argsort(src).tolist()


def test_netmorph_units_are_silent_but_random(r20):
    child, rec = apply_op(r20, "widen", "layer1.1.b1", {"width": 24, "method": "netmorph"}, seed=0)
    w_in = child.params["layer1.1.conv1"]["weight"][16:]
    w_out = child.params["layer1.1.conv2"]["weight"][:, 16:]
    assert (w_out == 0).all() and (w_in != 0).all()
    old_std = r20.params["layer1.1.conv1"]["weight"].std().item()
    assert 0.5 * old_std < w_in.std().item() < 2 * old_std
    # zero fraction over the new slices: the 16x8x9 outgoing zeros among them and the 8x16x9 random incoming
    assert rec.zero_fraction == pytest.approx(0.5)


def test_noise_is_approximate_and_reports_the_measured_error(r20):
    child, rec = apply_op(r20, "widen", "layer1.1.b1", {"noise": 0.05}, seed=2)
    assert rec.mode == "approximate"
    measured = rel_err(r20, child, torch.float32, batch=4, seed=0)
    assert 1e-5 < rec.error < 0.2 and 1e-5 < measured < 0.2


def test_seed_decides_the_replicas_and_input_is_untouched(r20):
    before = r20.copy()
    a, _ = apply_op(r20, "widen", "layer2.1.sum", {}, seed=5)
    b, _ = apply_op(r20, "widen", "layer2.1.sum", {}, seed=5)
    c, _ = apply_op(r20, "widen", "layer2.1.sum", {}, seed=6)
    assert same_tensors(a, b) and not same_tensors(a, c) and same_tensors(r20, before)


def test_replication_is_balanced_beyond_double_width(r20):
    child, _ = apply_op(r20, "widen", "layer1.1.b1", {"width": 56}, seed=0)  # 16 -> 56: 3.5x
    w_old, w_new = r20.params["layer1.1.conv1"]["weight"], child.params["layer1.1.conv1"]["weight"]
    counts = np.zeros(16, int)
    for i in range(56):
        counts[next(j for j in range(16) if torch.equal(w_new[i], w_old[j]))] += 1
    assert sorted(set(counts)) == [3, 4] and counts.sum() == 56
    assert rel_err(r20, child, torch.float32) <= F32_TOL


def _mlp_and_flatten_net() -> Network:
    """conv -> BN -> PAct -> flatten (4x4 map, no pooling) -> linear -> PReLU(features) -> linear, and
    a 1x1 conv inside a residual group (both a producer and a consumer of the same group)."""
    g = torch.Generator().manual_seed(0)
    net = Network((2, 4, 4))
    net.add_edge("input", "c", Conv2d(2, 3, 3, 1, 1), "conv", gen=g)
    net.add_edge("c", "b", BatchNorm2d(3), "bn", gen=g)
    net.add_edge("b", "a", PAct(3), "act", gen=g)
    net.add_edge("a", "s", Conv2d(3, 3, 1), "mix", gen=g)       # a and s tied by the identity below
    net.add_edge("a", "s", Identity(), "skip")
    net.add_edge("s", "f", Flatten(), "flatten")
    net.add_edge("f", "h", Linear(48, 6), "fc1", gen=g)
    net.add_edge("h", "h2", PReLU(6), "prelu", gen=g)
    net.add_edge("h2", "h3", Activation("tanh"), "tanh")
    net.add_edge("h3", "output", Linear(6, 5), "fc2", gen=g)
    return perturb(net, seed=1)


def test_flatten_with_pixels_and_linear_groups_widen_exactly():
    net = _mlp_and_flatten_net().to(torch.float64)
    g = channel_group(net, "f")
    assert g.blobs == {"a": 1, "b": 1, "c": 1, "f": 16, "s": 1} and g.channels == 3
    assert "mix" in g.producers and "mix" in g.consumers and g.consumers == ("fc1", "mix")
    child, _ = apply_op(net, "widen", "f", {"width": 5}, seed=0)
    assert child.edge("fc1").layer.in_features == 80 and child.edge("mix").layer == Conv2d(5, 5, 1)
    assert rel_err(net, child, torch.float64) <= F64_TOL
    child2, _ = apply_op(net, "widen", "h2", {"width": 9, "split": "random"}, seed=1)
    assert child2.edge("prelu").layer.num_parameters == 9 and child2.edge("fc2").layer.in_features == 9
    assert rel_err(net, child2, torch.float64) <= F64_TOL


def test_refusals_name_the_reason(r20):
    with pytest.raises(NotApplicable, match="input"):
        apply_op(r20, "widen", "input", {})
    with pytest.raises(NotApplicable, match="did you mean"):
        apply_op(r20, "widen", "layer2.1.sun", {})
    with pytest.raises(NotApplicable, match="must be larger"):
        apply_op(r20, "widen", "layer2.1.sum", {"width": 32})
    with pytest.raises(SpecError, match="'factor' must be > 1, got 0.5"):
        apply_op(r20, "widen", "layer2.1.sum", {"factor": 0.5})
    with pytest.raises(SpecError, match="method"):
        apply_op(r20, "widen", "layer2.1.sum", {"method": "net2wider"})
    g = torch.Generator().manual_seed(0)
    net = Network((4, 4, 4))
    net.add_edge("input", "c", Conv2d(4, 4, 3, 1, 1), "conv", gen=g)
    net.add_edge("c", "d", Conv2d(4, 4, 3, 1, 1, groups=2), "dw", gen=g)
    net.add_edge("d", "output", Flatten(), "flat")
    assert WIDEN.sites(net) == []
    with pytest.raises(NotApplicable, match="grouped conv"):
        apply_op(net, "widen", "c", {})
