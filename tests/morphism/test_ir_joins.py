"""Joins (concat, mul) and the layer kinds beyond ResNets: shapes, lint, compile, save/load, export."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from morphnas.morphism.compile import compile_network
from morphnas.morphism.errors import SpecError
from morphnas.morphism.graph import Network
from morphnas.morphism.layers import AvgPool2d, Conv2d, GlobalAvgPool, Identity, MaxPool2d
from morphnas.morphism.layers_extra import (
    AdaptiveAvgPool2d,
    ChannelLayerNorm,
    ChannelShuffle,
    ChannelSlice,
    LayerScale,
    StochasticDepth,
)
from morphnas.morphism.lint import lint_problems
from morphnas.morphism.serialize import load_network, save_network


def gated_concat() -> Network:
    """input -> conv a; cat[input, conv(a), a] ; gate = gap(cat) ; output = cat * gate."""
    net = Network((3, 6, 6))
    net.add_edge("input", "a", Conv2d(3, 4, 3, padding=1), "c1", gen=torch.Generator().manual_seed(1))
    net.add_blob("cat", join="concat")
    net.add_edge("a", "cat", Conv2d(4, 5, 1), "zb", gen=torch.Generator().manual_seed(2))
    net.add_edge("a", "cat", Identity(), "aa")
    net.add_edge("input", "cat", Identity(), "in0", position=0)
    net.add_edge("cat", "g", GlobalAvgPool(), "gap")
    net.add_blob("output", join="mul")
    net.add_edge("g", "output", Identity(), "gate")
    net.add_edge("cat", "output", Identity(), "x")
    return net


def reference(net: Network, x: torch.Tensor) -> torch.Tensor:
    gm = compile_network(net)
    a = gm.c1(x)
    c = torch.cat([x, gm.zb(a), a], 1)
    return c.mean((2, 3), keepdim=True) * c


def test_concat_order_offsets_and_compile():
    net = gated_concat()
    assert [e.name for e in net.in_edges("cat")] == ["in0", "zb", "aa"]
    assert net.concat_offsets("cat") == {"in0": (0, 3), "zb": (3, 8), "aa": (8, 12)}
    assert net.shapes()["cat"] == (12, 6, 6) and net.shapes()["output"] == (12, 6, 6)
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(compile_network(net)(x), reference(net, x))
    copy = net.copy()
    copy.remove_edge("aa")
    assert [e.name for e in copy.in_edges("cat")] == ["in0", "zb"] and len(net.in_edges("cat")) == 3


def test_join_lint_and_errors():
    net = gated_concat()
    assert lint_problems(net) == []
    net.add_edge("input", "cat", MaxPool2d(2), "small")
    assert any("'cat' (concat join)" in p and "one spatial size" in p for p in lint_problems(net))
    with pytest.raises(SpecError, match="unknown join 'cat'; did you mean 'concat'"):
        net.set_join("cat", "cat")
    with pytest.raises(SpecError, match="must list exactly its in-edges"):
        net.set_join("cat", "concat", ["in0"])


def test_joins_round_trip_through_save_and_load(tmp_path):
    net = gated_concat()
    back = load_network(save_network(net, tmp_path / "n"))
    assert back.join("cat") == "concat" and back.join("output") == "mul"
    assert [e.name for e in back.in_edges("cat")] == ["in0", "zb", "aa"]
    x = torch.randn(1, 3, 6, 6)
    assert torch.equal(compile_network(back)(x), compile_network(net)(x))


def test_a_network_without_joins_is_still_written_as_version_1(tmp_path):
    import json
    net = Network((3, 4, 4))
    net.add_edge("input", "output", Conv2d(3, 2, 1), "c")
    save_network(net, tmp_path / "n")
    assert json.loads((tmp_path / "n" / "network.json").read_text())["version"] == 1


def test_export_loader_understands_joins(tmp_path):
    from morphnas.search.export.exporter import export_network
    res = export_network(gated_concat(), tmp_path / "exp")
    assert res.rel_err <= 1e-6


def _single(layer, shape, params=None) -> torch.Tensor:
    net = Network(shape)
    net.add_edge("input", "output", layer, "l", params=params)
    return compile_network(net).eval()


def test_new_kinds_compute_what_torch_computes():
    x = torch.randn(2, 8, 7, 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(_single(ChannelSlice(2, 5), (8, 7, 7))(x), x[:, 2:5])
    shuffled = _single(ChannelShuffle(2), (8, 7, 7))(x)
    assert torch.equal(shuffled, x[:, ChannelShuffle(2).permutation(8)])
    w, b = torch.randn(8), torch.randn(8)
    ln = _single(ChannelLayerNorm(8), (8, 7, 7), {"weight": w, "bias": b})(x)
    want = F.layer_norm(x.permute(0, 2, 3, 1), (8,), w, b, 1e-6).permute(0, 3, 1, 2)
    assert torch.equal(ln, want)
    g = torch.randn(8, 1, 1)
    assert torch.equal(_single(LayerScale(8), (8, 7, 7), {"weight": g})(x), g * x)
    assert torch.equal(_single(StochasticDepth(0.5), (8, 7, 7))(x), x)            # eval: identity
    assert torch.equal(_single(AdaptiveAvgPool2d(3, 2), (8, 7, 7))(x), F.adaptive_avg_pool2d(x, (3, 2)))
    for ceil in (False, True):
        y = _single(MaxPool2d(3, 2, 0, ceil_mode=ceil), (8, 6, 6))(x[..., :6, :6])
        assert torch.equal(y, F.max_pool2d(x[..., :6, :6], 3, 2, 0, ceil_mode=ceil))
        assert MaxPool2d(3, 2, 0, ceil_mode=ceil).out_shape((8, 6, 6)) == tuple(y.shape[1:])
        a = _single(AvgPool2d(3, 2, 1, ceil_mode=ceil), (8, 6, 6))(x[..., :6, :6])
        assert torch.equal(a, F.avg_pool2d(x[..., :6, :6], 3, 2, 1, ceil_mode=ceil))
    assert Conv2d(8, 8, 3, groups=8).depthwise and not Conv2d(8, 8, 3, groups=2).depthwise


def test_concat_bounds_a_channel_group():
    from morphnas.morphism.channel_groups import channel_group
    g = channel_group(gated_concat(), "cat")
    assert "concat" in g.problem
