"""insert_layer, split, enlarge_kernel, activation, insert_bn: exact, deterministic, typed sites."""
import math

import pytest
import torch

from morphnas.morphism.compile import compile_network
from morphnas.morphism.errors import NotApplicable, SpecError
from morphnas.morphism.layers import Conv2d, Linear, PAct
from morphnas.morphism.ops import apply_op, default_registry, replay
from morphnas.morphism.ops.insert_bn import blob_statistics
from morphnas.morphism.perturb import perturb
from morphnas.morphism.verify import output_diff, sample_inputs
from morphnas.spaces.seeds.builders import plain_cnn


@pytest.fixture
def net64(tiny_resnet):
    return perturb(tiny_resnet, seed=7).to(torch.float64)


@pytest.fixture
def cnn64():
    return perturb(plain_cnn(), seed=2).to(torch.float64)


def _errors(parent, child):
    e64 = output_diff(parent, child, dtype=torch.float64, batch=3).rel_err
    e32 = output_diff(parent.to(torch.float32), child.to(torch.float32), dtype=torch.float32, batch=3).rel_err
    return e64, e32


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


CASES = [
    ("insert_layer", "layer1.0.a1", {}),
    ("insert_layer", "layer2.0.sum", {"k": 1, "act": "prelu"}),
    ("insert_layer", "layer1.0.c1", {"k": 1, "dense": True}),
    ("insert_layer", "layer3.0.c2", {"k": 3, "dense": True}),
    ("insert_layer", "stem.a1", {"k": 5, "bn": False, "act": "none"}),
    ("split", "layer1.0.conv1", {}),
    ("split", "layer2.0.downsample.0", {"mode": "random"}),
    ("split", "fc", {"mode": "random"}),
    ("split", "conv1", {"alpha": 0.3}),
    ("enlarge_kernel", "layer1.0.conv2", {}),
    ("enlarge_kernel", "layer3.0.downsample.0", {"k": 5}),
    ("activation", "layer1.0.prelu1", {}),
    ("activation", "prelu1", {}),
    ("activation", "layer2.0.bn1", {"fn": "tanh"}),
    ("activation", "flatten", {"per_channel": False}),
    ("activation", "layer1.0.prelu2", {"insert": True}),
    ("insert_bn", "layer1.0.c1", {}),
    ("insert_bn", "layer2.0.b1", {"stats": "preceding"}),
    ("insert_bn", "layer3.0.out", {"stats": "unit"}),
]


@pytest.mark.parametrize("op,site,params", CASES)
def test_exact_deterministic_input_unchanged(net64, op, site, params):
    before = net64.copy()
    child, rec = apply_op(net64, op, site, params, seed=3)
    e64, e32 = _errors(net64, child)
    assert e64 <= 1e-10 and e32 <= 1e-5
    assert rec.mode.startswith("exact") and rec.error is None
    assert _same(net64, before) and net64.edge_names() == before.edge_names()
    again, _ = apply_op(net64, op, site, params, seed=3)
    assert _same(child, again)
    assert _same(replay(net64, [rec.to_json()]), child)
    assert child.num_params() >= net64.num_params()


# ---------------------------------------------------------------------------------- insert_layer
def test_insert_layer_structure_and_zero_fraction(net64):
    child, rec = apply_op(net64, "insert_layer", "layer1.0.a1", {"k": 3})
    conv, bn, act = (child.edge(n) for n in rec.new_edges)
    assert (conv.layer, bn.layer.kind, act.layer.kind) == (Conv2d(8, 8, 3, 1, 1), "batchnorm2d", "pact")
    assert conv.src == "layer1.0.a1"
    assert [e.name for e in child.out_edges("layer1.0.a1")] == [conv.name]   # all readers moved
    assert [e.name for e in child.in_edges("layer1.0.c2")] == ["layer1.0.conv2"]
    assert child.edge("layer1.0.conv2").src == act.dst
    assert rec.mode == "exact-sparse" and rec.zero_fraction == pytest.approx(1 - 1 / (8 * 9))


def test_insert_layer_dense_folds_into_producer(net64):
    child, rec = apply_op(net64, "insert_layer", "layer1.0.c1", {"k": 1, "dense": True}, seed=0)
    assert rec.mode == "exact-dense" and rec.zero_fraction == 0.0
    a = child.params[rec.new_edges[0]]["weight"][:, :, 0, 0]
    g_new = child.params["layer1.0.conv1"]["weight"]
    g_old = net64.params["layer1.0.conv1"]["weight"]
    assert not torch.allclose(g_new, g_old)
    assert torch.allclose((a @ g_new.reshape(8, -1)).reshape(g_old.shape), g_old, atol=1e-12)
    sv = torch.linalg.svdvals(a)
    assert (sv[0] / sv[-1]).item() <= 4.0 + 1e-9     # well conditioned, so float32 stays exact
    with pytest.raises(NotApplicable, match="single groups=1 conv"):
        apply_op(net64, "insert_layer", "layer1.0.sum", {"dense": True})


def test_insert_layer_updates_block_meta(net64):
    child, rec = apply_op(net64, "insert_layer", "layer1.0.out", {})
    block = next(b for b in child.meta["blocks"] if b["name"] == "layer2.0")
    assert block["in"] == child.edge(rec.new_edges[-1]).dst
    assert child.edge("layer2.0.conv1").src == block["in"]
    assert next(b for b in child.meta["blocks"] if b["name"] == "layer1.0")["out"] == "layer1.0.out"


# A refusal that depends on the network or site is NotApplicable; a bad parameter value is refused
# by the op's Params before any network is looked at, as a SpecError naming the parameter and value.
@pytest.mark.parametrize("site,params,exc,msg", [
    ("input", {}, NotApplicable, "network's input"),
    ("output", {}, NotApplicable, "network's output"),
    ("head.flat", {}, NotApplicable, "not a \\(C, H, W\\) feature map"),
    ("layer1.0.a1", {"k": 2}, SpecError, "'k' must be an odd kernel size.*got 2"),
    ("layer1.0.a2", {}, NotApplicable, "did you mean"),
    ("layer1.0.a1", {"act": "rleu"}, SpecError, "did you mean 'relu'"),
])
def test_insert_layer_not_applicable(net64, site, params, exc, msg):
    with pytest.raises(exc, match=msg):
        apply_op(net64, "insert_layer", site, params)


def test_insert_layer_on_blob_named_like_an_edge(cnn64):
    # plain_cnn's pool blob and pool edge share the name "features.0.pool"
    child, rec = apply_op(cnn64, "insert_layer", "features.0.pool", {})
    assert all(not n.startswith("features.0.pool.") for n in rec.new_edges)
    assert _errors(cnn64, child)[0] <= 1e-10


# ---------------------------------------------------------------------------------- split
def test_split_scale_and_random(net64):
    g = net64.params["conv1"]["weight"]
    child, rec = apply_op(net64, "split", "conv1", {"alpha": 0.3})
    (other,) = rec.new_edges
    assert child.edge(other).src == "input" and child.edge(other).dst == "stem.c1"
    assert torch.allclose(child.params["conv1"]["weight"], 0.3 * g, rtol=0, atol=1e-15)
    assert torch.allclose(child.params[other]["weight"], 0.7 * g, rtol=0, atol=1e-15)
    child, rec = apply_op(net64, "split", "fc", {"mode": "random"}, seed=4)
    other = rec.new_edges[0]
    w1, w2 = child.params["fc"]["weight"], child.params[other]["weight"]
    assert rec.mode == "exact-dense" and rec.zero_fraction == 0.0
    assert torch.allclose(w1 + w2, net64.params["fc"]["weight"], atol=1e-14)
    assert 0.5 < w1.std().item() * math.sqrt(3 * 32) < 2    # uniform-He scale of Linear(32, 10)
    assert torch.allclose(child.params["fc"]["bias"] + child.params[other]["bias"], net64.params["fc"]["bias"])
    other_seed, _ = apply_op(net64, "split", "fc", {"mode": "random"}, seed=5)
    assert not torch.equal(other_seed.params["fc"]["weight"], w1)


@pytest.mark.parametrize("site,params,exc,msg", [
    ("layer1.0.bn1", {}, NotApplicable, "only conv2d and linear"),
    ("conv1", {"alpha": 1.0}, SpecError, "'alpha'.*got 1.0; choose 0 < alpha < 1"),
    ("conv1", {"mode": "half"}, SpecError, "'mode': unknown value 'half'"),
])
def test_split_not_applicable(net64, site, params, exc, msg):
    with pytest.raises(exc, match=msg):
        apply_op(net64, "split", site, params)


def test_split_sites(net64):
    sites = default_registry().get("split").sites(net64)
    assert sites == sorted(e.name for e in net64.edges() if isinstance(e.layer, (Conv2d, Linear)))


# ---------------------------------------------------------------------------------- enlarge_kernel
def test_enlarge_kernel_pads_filter_and_padding(net64):
    child, rec = apply_op(net64, "enlarge_kernel", "layer1.0.conv2", {})
    spec = child.edge("layer1.0.conv2").layer
    assert (spec.kernel_size, spec.padding) == (5, 2)
    w = child.params["layer1.0.conv2"]["weight"]
    assert torch.equal(w[:, :, 1:4, 1:4], net64.params["layer1.0.conv2"]["weight"])
    assert rec.mode == "exact-sparse" and rec.zero_fraction == pytest.approx(1 - 9 / 25)
    child, _ = apply_op(net64, "enlarge_kernel", "layer2.0.downsample.0", {})   # 1x1 stride 2
    spec = child.edge("layer2.0.downsample.0").layer
    assert (spec.kernel_size, spec.padding, spec.stride) == (3, 1, 2)


def test_enlarge_kernel_noise_is_approximate(net64):
    child, rec = apply_op(net64, "enlarge_kernel", "layer1.0.conv2", {"noise": 0.05}, seed=1)
    assert rec.mode == "approximate" and rec.zero_fraction == 0.0 and 0 < rec.error < 0.1
    assert 0 < _errors(net64, child)[0] < 0.1


@pytest.mark.parametrize("params,exc,msg", [({"k": 4}, NotApplicable, "even amount"),
                                            ({"k": 3}, NotApplicable, "larger than 3"),
                                            ({"noise": -1.0}, SpecError, "'noise' must be >= 0, got -1.0")])
def test_enlarge_kernel_not_applicable(net64, params, exc, msg):
    with pytest.raises(exc, match=msg):
        apply_op(net64, "enlarge_kernel", "layer1.0.conv2", params)
    with pytest.raises(NotApplicable, match="not a conv2d"):
        apply_op(net64, "enlarge_kernel", "fc")


# ---------------------------------------------------------------------------------- activation
def test_activation_replaces_prelu_and_relu(net64, cnn64):
    child, rec = apply_op(net64, "activation", "layer1.0.prelu1")
    spec = child.edge("layer1.0.prelu1").layer
    assert spec == PAct(8, "relu", True)
    assert torch.equal(child.params["layer1.0.prelu1"]["a"], net64.params["layer1.0.prelu1"]["weight"])
    child, rec = apply_op(cnn64, "activation", "features.0.relu1")
    assert child.edge("features.0.relu1").layer == PAct(16, "relu", True)
    assert torch.equal(child.params["features.0.relu1"]["a"], torch.zeros(16, dtype=torch.float64))
    assert _errors(cnn64, child)[0] <= 1e-10


def test_activation_sites_and_insertion(cnn64):
    op = default_registry().get("activation")
    sites = op.sites(cnn64)
    assert sites == sorted(e.name for e in cnn64.edges() if e.name != "fc")   # fc writes the output
    # at a non-activation edge: insert after its output blob (here a blob named like its edge)
    child, rec = apply_op(cnn64, "activation", "features.0.pool", {"fn": "elu"})
    (new,) = rec.new_edges
    assert child.edge(new).src == "features.0.pool" and child.edge(new).layer == PAct(16, "elu", True)
    assert torch.equal(child.params[new]["a"], torch.ones(16, dtype=torch.float64))
    assert child.edge("features.1.conv1").src == child.edge(new).dst
    assert _errors(cnn64, child)[0] <= 1e-10
    same, _ = apply_op(cnn64, "activation", "blob:features.0.pool", {"fn": "elu"})
    assert _same(same, child)
    # insert=true at an activation edge keeps it and adds one after it
    child, rec = apply_op(cnn64, "activation", "features.0.relu1", {"insert": True})
    assert child.edge("features.0.relu1").layer.kind == "activation" and len(rec.new_edges) == 1


def test_activation_not_applicable(net64):
    with pytest.raises(NotApplicable, match="writes the network's output"):
        apply_op(net64, "activation", "fc")
    with pytest.raises(SpecError, match="'fn': unknown value 'tahn'; did you mean 'tanh'"):
        apply_op(net64, "activation", "layer1.0.conv1", {"fn": "tahn"})
    with pytest.raises(NotApplicable, match="network's input"):
        apply_op(net64, "activation", "blob:input")
    with pytest.raises(NotApplicable, match="no edge named"):
        apply_op(net64, "activation", "layer1.0.c1")


# ---------------------------------------------------------------------------------- insert_bn
def test_insert_bn_uses_preceding_bn_statistics(net64):
    child, rec = apply_op(net64, "insert_bn", "layer2.0.b1", {})
    (bn,) = rec.new_edges
    prev = net64.params["layer2.0.bn1"]
    p = child.params[bn]
    assert torch.allclose(p["running_mean"], prev["bias"]) and torch.allclose(p["running_var"], prev["weight"] ** 2)
    assert torch.allclose(p["weight"], torch.sqrt(p["running_var"] + 1e-5)) and torch.equal(p["bias"], p["running_mean"])
    assert "preceding BN" in rec.notes


def test_insert_bn_data_statistics_roundtrip(net64):
    x = sample_inputs(net64, batch=16, seed=1, dtype=torch.float64)
    stats = blob_statistics(net64, "layer1.0.c1", x)
    assert len(stats["mean"]) == 8 and min(stats["var"]) > 0
    child, rec = apply_op(net64, "insert_bn", "layer1.0.c1", stats)
    (bn,) = rec.new_edges
    assert torch.allclose(child.params[bn]["running_mean"], torch.tensor(stats["mean"], dtype=torch.float64))
    assert _errors(net64, child)[0] <= 1e-10
    # in train mode the new BN normalises the batch: with the data's statistics it barely moves it
    # (only the new BN in train mode, so every other layer computes exactly what it did when the
    # statistics were taken; its batch mean/var are then the stored ones and it is the identity)
    module = compile_network(child).eval()
    module.get_submodule(bn).train()
    with torch.no_grad():
        y_train = module(x)
        y_parent = compile_network(net64).eval()(x)
    assert ((y_train - y_parent).norm() / y_parent.norm()).item() <= 1e-10
    module.get_submodule(bn).eval()     # and training on that batch left its statistics where they were
    assert torch.allclose(module.get_submodule(bn).running_mean, child.params[bn]["running_mean"], atol=1e-12)
    assert _same(replay(net64, [rec.to_json()]), child)


def test_insert_bn_paper_mode_is_approximate(net64):
    x = sample_inputs(net64, batch=16, seed=1, dtype=torch.float64)
    child, rec = apply_op(net64, "insert_bn", "layer1.0.c1", {"mode": "paper", **blob_statistics(net64, "layer1.0.c1", x)})
    (bn,) = rec.new_edges
    assert torch.equal(child.params[bn]["weight"], torch.ones(8, dtype=torch.float64))
    assert rec.mode == "approximate" and rec.error > 1e-3
    assert rec.error == pytest.approx(output_diff(net64, child, dtype=torch.float64, batch=2, seed=0).rel_err)


@pytest.mark.parametrize("site,params,exc,msg", [
    ("head.flat", {}, NotApplicable, "not a \\(C, H, W\\)"),
    ("layer1.0.c1", {"mean": [0.0] * 3, "var": [1.0] * 3}, NotApplicable,
     "3 values but blob 'layer1.0.c1' has 8 channels"),
    ("layer1.0.c1", {"mean": [0.0] * 8}, SpecError, "'mean' and 'var': give both"),
    ("layer1.0.c1", {"stats": "preceding"}, NotApplicable, "straight out of a BN"),
    ("layer1.0.c1", {"mode": "cheap"}, SpecError, "'mode': unknown value 'cheap'"),
])
def test_insert_bn_not_applicable(net64, site, params, exc, msg):
    with pytest.raises(exc, match=msg):
        apply_op(net64, "insert_bn", site, params)


def test_blob_sites_exclude_input_output_and_flat(net64):
    reg = default_registry()
    for op in ("insert_layer", "insert_bn"):
        sites = reg.get(op).sites(net64)
        assert "input" not in sites and "output" not in sites and "head.flat" not in sites
        # every blob but input, output and the flat one (head.pool is a (C, 1, 1) map)
        assert "layer1.0.sum" in sites and "head.pool" in sites and len(sites) == len(net64.graph.nodes) - 3
