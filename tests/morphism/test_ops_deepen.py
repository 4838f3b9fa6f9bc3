"""``deepen`` (NetMorph TYPE-I): exact on perturbed networks, dense where capacity allows."""
import math

import pytest
import torch

from morphnas.morphism.errors import NotApplicable, SpecError
from morphnas.morphism.graph import Network
from morphnas.morphism.layers import Activation, Conv2d, Flatten, GlobalAvgPool, Linear, PAct, Pad, PReLU
from morphnas.morphism.ops import apply_op, default_registry, replay
from morphnas.morphism.perturb import perturb
from morphnas.morphism.solver import recommended_dense_width
from morphnas.morphism.verify import output_diff


@pytest.fixture
def net64(tiny_resnet):
    return perturb(tiny_resnet, seed=3).to(torch.float64)


def _errors(parent, child):
    e64 = output_diff(parent, child, dtype=torch.float64, batch=3).rel_err
    e32 = output_diff(parent.to(torch.float32), child.to(torch.float32), dtype=torch.float32, batch=3).rel_err
    return e64, e32


def _new_convs(child, record):
    return [child.params[n]["weight"] for n in record.new_edges if isinstance(child.edge(n).layer, Conv2d)]


def _biased_net():
    """A valid (unpadded), strided conv with a bias on an odd-sized input."""
    g = torch.Generator().manual_seed(0)
    net = Network((2, 9, 9))
    net.add_edge("input", "c", Conv2d(2, 4, 3, 2, 0, bias=True), "conv", gen=g)
    net.add_edge("c", "a", Activation("relu"), "relu")
    net.add_edge("a", "p", GlobalAvgPool(), "pool")
    net.add_edge("p", "f", Flatten(), "flat")
    net.add_edge("f", "output", Linear(4, 3), "fc", gen=g)
    net.params["conv"]["bias"] = torch.randn(4, generator=g)
    return net.to(torch.float64)


@pytest.mark.parametrize("site", ["conv1", "layer1.0.conv2", "layer2.0.conv1", "layer3.0.downsample.0"])
@pytest.mark.parametrize("params,mode", [
    ({}, "exact-dense"),
    ({"k1": 1, "k2": 3}, "exact-dense"),
    ({"k1": 3, "k2": 3, "widen": True}, "exact-dense"),
    ({"k1": 5, "k2": 1, "act": "prelu", "bn": False}, None),
])
def test_deepen_preserves_function(net64, site, params, mode):
    child, rec = apply_op(net64, "deepen", site, params, seed=1)
    e64, e32 = _errors(net64, child)
    assert e64 <= 1e-10
    assert e32 <= 1e-5
    if mode:
        assert rec.mode == mode
    assert not child.has_edge(site) and rec.removed_edges == (site,)
    assert rec.new_edges and all(child.has_edge(n) for n in rec.new_edges)


def test_default_is_dense_with_sane_scale(net64):
    child, rec = apply_op(net64, "deepen", "layer1.0.conv1", seed=0)
    assert rec.mode == "exact-dense" and rec.zero_fraction == 0.0
    f1, f2 = _new_convs(child, rec)
    assert f1.shape == (8, 8, 3, 3) and f2.shape == (8, 8, 1, 1)
    for w in (f1, f2):
        assert (w != 0).all()
        he = math.sqrt(2 / (w.shape[0] * w.shape[2] * w.shape[3]))
        assert 0.2 < w.std().item() / he < 5
    kinds = [child.edge(n).layer.kind for n in rec.new_edges]
    assert kinds == ["conv2d", "batchnorm2d", "pact", "conv2d"]
    act = child.params[rec.new_edges[2]]["a"]
    assert torch.equal(act, torch.ones(8, dtype=torch.float64))


def test_three_by_three_pair_sparse_at_same_width_dense_when_widened(net64):
    child, rec = apply_op(net64, "deepen", "layer1.0.conv1", {"k1": 3, "k2": 3}, seed=0)
    assert rec.mode == "exact-sparse"
    f1, f2 = _new_convs(child, rec)
    # F1 centre-only (8 of 9 taps zero), F2 dense: 4/9 of all entries
    assert rec.zero_fraction == pytest.approx(4 / 9)
    assert (f1[:, :, 1, 1] != 0).all() and (f2 != 0).all()
    assert not any(isinstance(child.edge(n).layer, Pad) for n in rec.new_edges)   # per-layer padding is exact

    wide, rec2 = apply_op(net64, "deepen", "layer1.0.conv1", {"k1": 3, "k2": 3, "widen": True}, seed=0)
    assert rec2.mode == "exact-dense" and rec2.zero_fraction == 0.0
    f1, f2 = _new_convs(wide, rec2)
    assert f1.shape[0] == recommended_dense_width(8, 8, 3, 3, 3) == 26     # 10% over the minimum 23
    pads = [wide.edge(n).layer for n in rec2.new_edges if isinstance(wide.edge(n).layer, Pad)]
    assert pads == [Pad(2)]                                       # pad once by the chain's radius
    convs = [wide.edge(n).layer for n in rec2.new_edges if isinstance(wide.edge(n).layer, Conv2d)]
    assert [c.padding for c in convs] == [0, 0]


def test_dense_mode_without_capacity_names_the_width(net64):
    with pytest.raises(NotApplicable, match=r"needs mid >= 23"):
        apply_op(net64, "deepen", "layer1.0.conv1", {"k1": 3, "k2": 3, "mode": "dense"})
    child, rec = apply_op(net64, "deepen", "layer1.0.conv1", {"k1": 3, "k2": 3, "mode": "dense", "mid": 23})
    assert rec.mode == "exact-dense"


def test_approx_mode_reports_error(net64):
    child, rec = apply_op(net64, "deepen", "layer1.0.conv1", {"k1": 3, "k2": 3, "mode": "approx", "noise": 0.01},
                          seed=0)
    assert rec.mode == "approximate" and rec.zero_fraction == 0.0
    assert 1e-6 < rec.error < 0.2
    e64, _ = _errors(net64, child)
    assert 1e-8 < e64 < 0.1


@pytest.mark.parametrize("params,conv_strides", [({}, [2, 1]), ({"k1": 1, "k2": 3}, [1, 2]),
                                                 ({"k1": 3, "k2": 3, "widen": True}, [1, 2])])
def test_stride_placement(net64, params, conv_strides):
    child, rec = apply_op(net64, "deepen", "layer2.0.conv1", params, seed=0)
    convs = [child.edge(n).layer for n in rec.new_edges if isinstance(child.edge(n).layer, Conv2d)]
    assert [c.stride for c in convs] == conv_strides
    assert _errors(net64, child)[0] <= 1e-10


@pytest.mark.parametrize("params", [{}, {"k1": 1, "k2": 3}, {"k1": 3, "k2": 3, "widen": True},
                                    {"k1": 3, "k2": 3, "mid": 4}])
def test_bias_unpadded_strided_conv(params):
    net = _biased_net()
    child, rec = apply_op(net, "deepen", "conv", params, seed=0)
    e64, e32 = _errors(net, child)
    assert e64 <= 1e-10 and e32 <= 1e-5
    last = child.edge(rec.new_edges[-1])
    assert last.layer.bias and torch.equal(child.params[last.name]["bias"], net.params["conv"]["bias"])
    assert child.shapes()["c"] == net.shapes()["c"] == (4, 4, 4)


def test_options_bn_act(net64):
    child, rec = apply_op(net64, "deepen", "layer1.0.conv2", {"bn": "false", "act": "none", "k1": "1", "k2": "3"})
    assert [child.edge(n).layer.kind for n in rec.new_edges] == ["conv2d", "conv2d"]
    child, rec = apply_op(net64, "deepen", "layer1.0.conv2", {"act": "prelu"})
    prelu = [n for n in rec.new_edges if isinstance(child.edge(n).layer, PReLU)]
    assert len(prelu) == 1 and torch.equal(child.params[prelu[0]]["weight"], torch.ones(8, dtype=torch.float64))
    child, rec = apply_op(net64, "deepen", "layer1.0.conv2", {"act": "tanh"})
    assert any(isinstance(child.edge(n).layer, PAct) and child.edge(n).layer.fn == "tanh" for n in rec.new_edges)
    assert _errors(net64, child)[0] <= 1e-10


@pytest.mark.parametrize("site,params,msg", [
    ("layer1.0.bn1", {}, "batchnorm2d, not a conv2d"),
    ("layer1.0.conv1", {"k1": 1, "k2": 1}, r"k1 \+ k2 - 1 = 1 is smaller than the conv's kernel 3"),
    ("layer1.0.conv1", {"k1": 3, "k2": 3, "mid": 4}, r"mid >= 8"),
    ("layer1.0.convv1", {}, "did you mean"),
])
def test_not_applicable(net64, site, params, msg):
    with pytest.raises(NotApplicable, match=msg):
        apply_op(net64, "deepen", site, params)


@pytest.mark.parametrize("params,msg", [
    ({"k1": 2}, "'k1' must be an odd kernel size"),
    ({"mid": 0}, "'mid' must be >= 1, got 0"),
    ({"mode": "fancy"}, "'mode': unknown value 'fancy'"),
    ({"act": "relux"}, "did you mean 'relu'"),
])
def test_bad_params_are_refused_before_the_site(net64, params, msg):
    with pytest.raises(SpecError, match=msg):
        apply_op(net64, "deepen", "layer1.0.conv1", params)


def test_grouped_conv_not_a_site():
    net = Network((4, 6, 6))
    net.add_edge("input", "c", Conv2d(4, 4, 3, 1, 1, groups=2), "gconv")
    net.add_edge("c", "output", Conv2d(4, 2, 1), "conv")
    op = default_registry().get("deepen")
    assert op.sites(net) == ["conv"]
    with pytest.raises(NotApplicable, match="groups=2"):
        apply_op(net, "deepen", "gconv")


def test_unknown_param_is_spec_error(net64):
    with pytest.raises(SpecError, match="did you mean 'mid'"):
        apply_op(net64, "deepen", "layer1.0.conv1", {"midd": 3})


def test_deterministic_input_unchanged_and_replayable(net64):
    before = {k: v.clone() for k, v in net64.state_dict().items()}
    edges = net64.edge_names()
    a, rec = apply_op(net64, "deepen", "layer1.0.conv1", {"k1": 1, "k2": 3}, seed=5)
    b, _ = apply_op(net64, "deepen", "layer1.0.conv1", {"k1": 1, "k2": 3}, seed=5)
    c, _ = apply_op(net64, "deepen", "layer1.0.conv1", {"k1": 1, "k2": 3}, seed=6)
    assert net64.edge_names() == edges
    assert all(torch.equal(v, net64.state_dict()[k]) for k, v in before.items())
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    r = replay(net64, [rec.to_json()]).state_dict()
    assert all(torch.equal(sa[k], r[k]) for k in sa)


def test_sites_are_every_plain_conv(net64):
    sites = default_registry().get("deepen").sites(net64)
    convs = sorted(e.name for e in net64.edges() if isinstance(e.layer, Conv2d))
    assert sites == convs and len(sites) == 9


def test_deepen_twice_and_float32_net(tiny_resnet):
    net = perturb(tiny_resnet, seed=4)
    child, rec = apply_op(net, "deepen", "layer3.0.conv2", {"k1": 1, "k2": 3}, seed=0)
    assert child.dtype == torch.float32
    again, _ = apply_op(child, "deepen", rec.new_edges[-1], {}, seed=1)
    assert output_diff(net, again, dtype=torch.float32).rel_err <= 1e-5
    assert again.has_edge("layer3.0.conv2.conv_b.conv_a") and again.has_edge("layer3.0.conv2.conv_b.conv_b")


def test_random_convs_and_params_are_exact_or_refused():
    """A seeded sweep over kernel/padding/stride/bias/channels x k1/k2/mid/mode: every applied
    exact deepen is exact in float64 and keeps the output size; the rest are NotApplicable."""
    import random
    rnd = random.Random(1)
    applied = refused = 0
    for trial in range(60):
        k, p, s = rnd.choice([1, 3, 5]), rnd.randint(0, 2), rnd.choice([1, 2])
        cin, cout, size = rnd.choice([1, 3, 4]), rnd.choice([2, 4, 6]), rnd.choice([7, 8])
        g = torch.Generator().manual_seed(trial)
        net = Network((cin, size, size))
        net.add_edge("input", "c", Conv2d(cin, cout, k, s, p, bias=True), "conv", gen=g)
        net.add_edge("c", "a", Activation("tanh"), "act")
        net.add_edge("a", "q", GlobalAvgPool(), "pool")
        net.add_edge("q", "f", Flatten(), "flat")
        net.add_edge("f", "output", Linear(cout, 3), "fc", gen=g)
        net.params["conv"]["bias"] = torch.randn(cout, generator=g)
        net = net.to(torch.float64)
        params = {"k1": rnd.choice([1, 3, 5]), "k2": rnd.choice([1, 3, 5]), "mid": rnd.choice([None, 2, 4, 12]),
                  "mode": rnd.choice(["auto", "dense", "sparse"]), "widen": rnd.random() < 0.3,
                  "act": rnd.choice(["relu", None])}
        try:
            child, rec = apply_op(net, "deepen", "conv", params, seed=trial)
        except NotApplicable:
            refused += 1
            continue
        applied += 1
        assert output_diff(net, child, dtype=torch.float64, batch=2).rel_err <= 1e-10, (k, p, s, cin, cout, params)
        assert child.shapes()["c"] == net.shapes()["c"]
    assert applied >= 30 and refused >= 5
