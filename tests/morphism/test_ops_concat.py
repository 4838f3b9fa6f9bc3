"""The morphs of issue 14: dense layers, concatenations, depthwise convs and gates.

Each is exact (float64 <= 1e-10 on perturbed networks, like the conformance suite, which also runs
them) and refuses what it cannot do with the reason; these tests pin the structure of the result.
"""
from __future__ import annotations

import pytest
import torch

from morphnas.morphism.channel_groups import channel_group
from morphnas.morphism.errors import NotApplicable
from morphnas.morphism.graph import Network
from morphnas.morphism.joins import CONCAT, MUL
from morphnas.morphism.layers import Activation, BatchNorm2d, Conv2d, Flatten, GlobalAvgPool, Identity, Linear
from morphnas.morphism.ops import apply_op
from morphnas.morphism.perturb import perturb
from morphnas.morphism.verify import output_diff
from morphnas.spaces.registry import create_network

TOL = 1e-10


def _net(name: str, **kw) -> Network:
    return perturb(create_network(name, **kw), seed=3).to(torch.float64)


def _exact(net: Network, op: str, site: str, params=None, seed: int = 0) -> Network:
    child, rec = apply_op(net, op, site, params, seed=seed)
    assert rec.mode != "approximate"
    assert output_diff(net, child, dtype=torch.float64).rel_err <= TOL, (op, site, params)
    return child


def test_dense_layer_morphs_on_the_mlp():
    net = _net("mlp", features=12, hidden=(16, 8))
    assert net.input_shape == (12,)
    child = _exact(net, "deepen_linear", "fc1")
    assert [child.edge(n).layer.kind for n in ("fc1.fc_a", "fc1.act", "fc1.fc_b")] == ["linear", "pact", "linear"]
    assert torch.equal(child.params["fc1.fc_b"]["weight"], torch.eye(16, dtype=torch.float64))
    dense = _exact(net, "deepen_linear", "fc", {"dense": True})
    assert (dense.params["fc.fc_b"]["weight"] != 0).all()
    wide = _exact(net, "widen", "hidden1.out", {"width": 24})
    assert wide.edge("fc1").layer.out_features == 24 and wide.edge("fc2").layer.in_features == 24
    _exact(net, "split", "fc2", {"mode": "random"})
    with pytest.raises(NotApplicable, match="use op deepen_linear|deepen it with op deepen_linear"):
        apply_op(net, "deepen", "fc1")


def test_widen_grows_one_slice_of_a_concatenation():
    net = _net("tiny_densenet")
    growth = "features.denseblock1.denselayer1.new"
    g = channel_group(net, growth)
    assert g.channels == 4 and not g.problem
    assert g.wide["features.denseblock1.denselayer1.cat"] == (8, 1)      # after the 8 stem channels
    child = _exact(net, "widen", growth, {"width": 6})
    assert child.shapes()["features.denseblock1.denselayer2.cat"][0] == net.shapes()[
        "features.denseblock1.denselayer2.cat"][0] + 2
    _exact(net, "widen", growth, {"width": 7, "method": "netmorph"})
    with pytest.raises(NotApplicable, match="concatenates several channel groups; widen one of its parts"):
        apply_op(net, "widen", "features.denseblock1.denselayer1.cat")


def test_widen_through_depthwise_convs_grows_their_groups():
    net = _net("tiny_mobilenet")
    dw = next(e for e in net.edges() if isinstance(e.layer, Conv2d) and e.layer.groups > 1 and e.layer.groups > 8)
    child = _exact(net, "widen", dw.src, {"factor": 1.5})
    layer = child.edge(dw.name).layer
    assert layer.groups == layer.in_channels == layer.out_channels == round(dw.layer.groups * 1.5)


def _se_net() -> Network:
    """conv -> BN -> x; gate = sigmoid(conv(relu(conv(gap(x))))); y = x * gate -> conv -> head."""
    net = Network((3, 6, 6))
    g = torch.Generator().manual_seed(0)
    net.add_edge("input", "c", Conv2d(3, 8, 3, 1, 1), "conv1", gen=g)
    net.add_edge("c", "x", BatchNorm2d(8), "bn1", gen=g)
    net.add_edge("x", "se.p", GlobalAvgPool(), "se.pool")
    net.add_edge("se.p", "se.r", Conv2d(8, 2, 1, bias=True), "se.fc1", gen=g)
    net.add_edge("se.r", "se.a", Activation("relu"), "se.relu")
    net.add_edge("se.a", "se.s", Conv2d(2, 8, 1, bias=True), "se.fc2", gen=g)
    net.add_blob("y", join=MUL)
    net.add_edge("se.s", "y", Activation("sigmoid"), "se.gate")
    net.add_edge("x", "y", Identity(), "se.keep")
    net.add_edge("y", "z", Conv2d(8, 4, 1), "conv2", gen=g)
    net.add_edge("z", "h.p", GlobalAvgPool(), "avgpool")
    net.add_edge("h.p", "h.f", Flatten(), "flatten")
    net.add_edge("h.f", "output", Linear(4, 5), "fc", gen=g)
    return perturb(net, seed=1).to(torch.float64)


def test_widen_through_a_squeeze_excitation_gate():
    net = _se_net()
    g = channel_group(net, "x")
    assert {"x", "y", "se.p", "se.s"} <= set(g.blobs) and "se.fc2" in g.producers and not g.problem
    child = _exact(net, "widen", "x", {"width": 12, "split": "random"})
    assert child.edge("se.fc2").layer.out_channels == 12 and child.edge("se.fc1").layer.in_channels == 12


def test_insert_branch_on_a_concatenation_and_on_a_block_output():
    dense = _net("tiny_densenet")
    site = "features.denseblock1.denselayer1.cat"
    child = _exact(dense, "insert_branch", site, {"k": 3, "width": 3})
    assert child.join(site) == CONCAT and child.shapes()[site][0] == dense.shapes()[site][0] + 3
    reader = child.edge("features.denseblock1.denselayer2.conv1").layer
    assert reader.in_channels == dense.edge("features.denseblock1.denselayer2.conv1").layer.in_channels + 3
    # The new input channels of a consumer start at zero: they sit right after the old 12 of the concat.
    w = child.params["features.transition1.conv"]["weight"]
    assert torch.count_nonzero(w[:, 12:15]) == 0 and torch.count_nonzero(w[:, :12]) > 0

    res = _net("tiny_resnet")
    child = _exact(res, "insert_branch", "layer1.0.out", {"k": 1})
    cat = next(b for b in child.graph.nodes if child.join(b) == CONCAT)
    assert child.shapes()[cat][0] == 8 + 2 and child.edge("layer2.0.conv1").src == cat
    with pytest.raises(NotApplicable, match="neither a channel concatenation nor a recorded block"):
        apply_op(res, "insert_branch", "layer1.0.sum")


def test_concat_skip_feeds_an_earlier_blob_with_zero_weights():
    net = _net("tiny_resnet")
    child = _exact(net, "concat_skip", "layer1.0.conv2")
    layer = child.edge("layer1.0.conv2").layer
    assert child.join(child.edge("layer1.0.conv2").src) == CONCAT and layer.in_channels == 16
    assert torch.count_nonzero(child.params["layer1.0.conv2"]["weight"][:, 8:]) == 0
    _exact(net, "concat_skip", "layer1.0.conv2", {"source": "stem.a1"})
    with pytest.raises(NotApplicable, match="not an earlier blob"):
        apply_op(net, "concat_skip", "layer1.0.conv2", {"source": "layer3.0.out"})


def test_deepen_depthwise_and_refusals_at_joins():
    net = _net("tiny_mobilenet")
    dw = next(e.name for e in net.edges() if isinstance(e.layer, Conv2d) and e.layer.groups > 1)
    for kind in ("pointwise", "depthwise"):
        child = _exact(net, "deepen_depthwise", dw, {"kind": kind, "k": 3})
        assert len(child) == len(net) + 3
    with pytest.raises(NotApplicable, match="not a depthwise conv"):
        apply_op(net, "deepen_depthwise", "features.0.0")
    dense = _net("tiny_densenet")
    with pytest.raises(NotApplicable, match="concat join: a parallel edge there would be a separate"):
        apply_op(dense, "split_identity", "features.denseblock1.denselayer1.keep")
    # An op that rebuilds a concatenated part keeps its channel slot (else the channels would reorder).
    _exact(dense, "activation", "features.denseblock1.denselayer1.add")
