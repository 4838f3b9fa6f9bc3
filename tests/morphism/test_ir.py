"""The IR container, layer specs and shape inference: exact behaviour and error messages."""
import dataclasses

import pytest
import torch

from morphnas.morphism.errors import LintError, MorphnasError, SpecError
from morphnas.morphism.graph import Network
from morphnas.morphism.kinds import layer_kinds
from morphnas.morphism.layer_json import spec_from_json, spec_to_json
from morphnas.morphism.layers import (
    Activation,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Crop,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Identity,
    Linear,
    MaxPool2d,
    PAct,
    Pad,
    PReLU,
)
from morphnas.morphism.layers_extra import (
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    ChannelLayerNorm,
    ChannelShuffle,
    ChannelSlice,
    LayerScale,
    StochasticDepth,
)
from morphnas.morphism.kinds.attention import Attention
from morphnas.morphism.kinds.class_token import ClassToken
from morphnas.morphism.kinds.layer_norm import LayerNorm
from morphnas.morphism.kinds.pos_embed import PosEmbed
from morphnas.morphism.kinds.token_pool import TokenPool
from morphnas.morphism.kinds.tokens import Tokens
from morphnas.morphism.shapes import infer_shapes


def small() -> Network:
    net = Network((2, 6, 6))
    net.add_edge("input", "c", Conv2d(2, 4, 3, 1, 1), "conv")
    net.add_edge("c", "s", BatchNorm2d(4), "bn")
    net.add_edge("input", "s", Conv2d(2, 4, 1), "proj")
    net.add_edge("s", "p", MaxPool2d(2), "pool")
    net.add_edge("p", "g", GlobalAvgPool(), "gap")
    net.add_edge("g", "f", Flatten(), "flat")
    net.add_edge("f", "output", Linear(4, 3), "fc")
    return net


EXAMPLES = [Conv2d(4, 8, 3, 2, 1, groups=2, bias=True, dilation=1), BatchNorm2d(8, eps=1e-3, momentum=0.2),
            Activation("gelu"), PAct(8, "tanh", per_channel=False), PReLU(8, 0.1), Identity(0.5), MaxPool2d(3, 2, 1),
            AvgPool2d(2, None, 0, False), GlobalAvgPool(), Flatten(), Linear(8, 3, False), Dropout(0.2), Pad(1),
            Crop(2), ChannelSlice(2, 6), ChannelShuffle(2), ChannelLayerNorm(8, 1e-6), LayerScale(8),
            StochasticDepth(0.1, "row"), AdaptiveAvgPool2d(3, 2), AdaptiveMaxPool2d(1, 1),
            Tokens(), LayerNorm(8, 1e-6), PosEmbed(5, 8), ClassToken(8), TokenPool("mean"),
            Attention(8, 2, 4, 0.5, True, 0.1)]


def test_every_kind_round_trips_through_json():
    assert {type(s) for s in EXAMPLES} == set(layer_kinds().values())
    for s in EXAMPLES:
        d = spec_to_json(s)
        assert d["kind"] == s.kind
        assert spec_from_json(d) == s
        assert dataclasses.is_dataclass(s)
        for f in dataclasses.fields(s)[:1]:
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(s, f.name, 1)


def test_spec_json_errors_name_the_problem():
    with pytest.raises(SpecError, match="unknown layer kind 'conv2' ; did you mean 'conv2d'".replace(" ;", ";")):
        spec_from_json({"kind": "conv2", "in_channels": 1})
    with pytest.raises(SpecError, match=r"edge 'x': conv2d has no field\(s\) \['kernel'\]"):
        spec_from_json({"kind": "conv2d", "in_channels": 1, "out_channels": 1, "kernel": 3}, where="edge 'x'")
    with pytest.raises(SpecError, match="expected an object with a 'kind' field"):
        spec_from_json([1])
    with pytest.raises(SpecError, match="divisible by groups"):
        Conv2d(3, 4, 3, groups=2)
    with pytest.raises(SpecError, match="unknown activation function 'rellu'; did you mean 'relu'"):
        Activation("rellu")
    with pytest.raises(SpecError, match="0 <= p < 1"):
        Dropout(1.0)


def test_shapes_follow_each_layer():
    net = small()
    assert infer_shapes(net) == {"input": (2, 6, 6), "c": (4, 6, 6), "s": (4, 6, 6), "p": (4, 3, 3),
                                 "g": (4, 1, 1), "f": (4,), "output": (3,)}
    assert Conv2d(3, 5, 3, 2, 0).out_shape((3, 9, 9)) == (5, 4, 4)
    assert Conv2d(3, 5, 3, 1, 2, dilation=2).out_shape((3, 9, 9)) == (5, 9, 9)
    assert Pad(2).out_shape((3, 4, 4)) == (3, 8, 8) and Crop(1).out_shape((3, 4, 4)) == (3, 2, 2)
    assert AvgPool2d(3, 2, 1).out_shape((3, 8, 8)) == (3, 4, 4)
    with pytest.raises(SpecError, match="conv2d expects 3 input channels but the blob has 2"):
        Conv2d(3, 5, 3).out_shape((2, 9, 9))
    with pytest.raises(SpecError, match="linear needs a flat input.*insert a flatten"):
        Linear(4, 2).out_shape((4, 1, 1))
    with pytest.raises(SpecError, match="kernel 5 does not fit a 3x3 input"):
        Conv2d(1, 1, 5).out_shape((1, 3, 3))


def test_shapes_of_the_cifar_resnet(tiny_resnet):
    s = tiny_resnet.shapes()
    assert s["input"] == (1, 8, 8)
    assert s["layer1.0.sum"] == (8, 8, 8)
    assert s["layer2.0.sum"] == (16, 4, 4)
    assert s["layer3.0.out"] == (32, 2, 2)
    assert s["output"] == (10,)


def test_add_edge_rules():
    net = small()
    with pytest.raises(SpecError, match="edge name 'conv' is already used"):
        net.add_edge("c", "x", Activation(), "conv")
    with pytest.raises(SpecError, match="not a dotted identifier"):
        net.add_edge("c", "x", Activation(), "bad name")
    with pytest.raises(SpecError, match="must be a LayerSpec"):
        net.add_edge("c", "x", torch.nn.ReLU(), "r")
    with pytest.raises(MorphnasError, match="no edge named 'convv' in the network; did you mean conv"):
        net.edge("convv")
    assert net.fresh_name("conv") == "conv_1"
    assert net.fresh_name("new") == "new"
    with pytest.raises(SpecError, match="edge 'conv' is a layer, so no edge can live under its path"):
        net.fresh_name("conv.w")
    net.add_edge("c", "x", Activation(), "act.a")
    assert net.fresh_name("act") == "act_1"           # 'act' would be the parent path of 'act.a'
    assert net.fresh_name("c", blob=True) == "c_1"


def test_parallel_edges_order_and_queries():
    net = small()
    net.add_edge("input", "s", Identity(0.5), "half")
    assert [e.name for e in net.in_edges("s")] == ["bn", "half", "proj"]
    assert [e.name for e in net.out_edges("input")] == ["conv", "half", "proj"]
    assert [e.name for e in net.edges_between("input", "s")] == ["half", "proj"]
    assert net.edges_between("c", "output") == []
    assert [e.name for e in net.edges()] == ["conv", "half", "proj", "bn", "pool", "gap", "flat", "fc"]
    assert net.blobs() == ["input", "c", "s", "p", "g", "f", "output"]
    e = net.remove_edge("half")
    assert e.layer == Identity(0.5) and not net.has_edge("half") and "half" not in net.params


def test_copy_is_deep_and_to_changes_dtype():
    net = small()
    net.meta["tag"] = [1]
    c = net.copy()
    c.params["conv"]["weight"].zero_()
    c.meta["tag"].append(2)
    c.add_edge("f", "output", Linear(4, 3), "fc2")
    assert net.params["conv"]["weight"].abs().sum() > 0 and net.meta["tag"] == [1] and not net.has_edge("fc2")
    d = net.to(torch.float64)
    assert d.dtype == torch.float64 and net.dtype == torch.float32
    assert d.params["bn"]["num_batches_tracked"].dtype == torch.long
    assert torch.equal(d.params["conv"]["weight"].float(), net.params["conv"]["weight"])


def test_state_dict_round_trip_and_errors():
    net = small()
    sd = {k: v + 1 if v.is_floating_point() else v for k, v in net.state_dict().items()}
    other = small()
    other.load_state_dict(sd)
    assert torch.equal(other.params["fc"]["bias"], net.params["fc"]["bias"] + 1)
    with pytest.raises(MorphnasError, match=r"missing \['fc.bias'\]"):
        other.load_state_dict({k: v for k, v in sd.items() if k != "fc.bias"})
    bad = dict(sd)
    bad["fc.bias"] = torch.zeros(4)
    with pytest.raises(MorphnasError, match=r"'fc.bias' has shape \(4,\), the network needs \(3,\)"):
        other.load_state_dict(bad)


def test_init_params_are_seeded_and_identity_bn():
    a = Conv2d(3, 8, 3).init_params(torch.Generator().manual_seed(1))
    b = Conv2d(3, 8, 3).init_params(torch.Generator().manual_seed(1))
    assert torch.equal(a["weight"], b["weight"])
    # He init (fan out): std sqrt(2 / (8 * 9))
    assert abs(a["weight"].std().item() - (2 / 72) ** 0.5) < 0.05
    bn = BatchNorm2d(4).init_params(torch.Generator())
    assert torch.equal(bn["weight"], torch.ones(4)) and torch.equal(bn["running_var"], torch.ones(4))
    assert torch.equal(PAct(4).init_params(torch.Generator())["a"], torch.ones(4))


def test_strict_shape_inference_raises_naming_the_edge():
    net = small()
    net.add_edge("input", "s", Conv2d(2, 5, 1), "wrong")
    with pytest.raises(LintError, match="blob 's' sums in-edges of different shapes"):
        infer_shapes(net)
