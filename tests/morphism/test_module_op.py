"""The ``module`` op on networks: pad-once exactness at the borders, strides, bias, BN/activation
identities, records, refusals, and the CLI."""
from __future__ import annotations

import json
import time

import pytest
import torch
import torch.nn.functional as F
from _paths import REPO  # noqa: E402

from morphnas.morphism.errors import NotApplicable, SpecError
from morphnas.morphism.graph import Network
from morphnas.morphism.layers import BatchNorm2d, Conv2d, Crop, PAct, Pad, PReLU
from morphnas.morphism.module import morph_to_module
from morphnas.morphism.module.library import MODULES
from morphnas.morphism.ops import apply_op, default_registry, replay
from morphnas.morphism.perturb import perturb
from morphnas.morphism.verify import output_diff

CONFIGS = REPO / "configs" / "modules"


def conv_net(cin=3, cout=8, k=3, stride=1, padding=1, bias=False, size=9, seed=0) -> Network:
    """input -> conv -> output: the whole output map, borders included, is compared."""
    net = Network((cin, size, size))
    net.add_edge("input", "output", Conv2d(cin, cout, k, stride, padding, bias=bias), "conv",
                 gen=torch.Generator().manual_seed(seed))
    if bias:
        net.params["conv"]["bias"] = torch.randn(cout, generator=torch.Generator().manual_seed(seed + 1))
    return net


def _errs(net, child):
    return output_diff(net, child, dtype=torch.float64, batch=2).rel_err


@pytest.mark.parametrize("module", ["D", "D_mixed", "3c3", str(CONFIGS / "module_d_bn.yaml"),
                                    str(CONFIGS / "module_c.yaml")])
def test_module_is_exact_on_the_whole_output_float64(module):
    net = conv_net().to(torch.float64)
    child, sol, new = morph_to_module(net, "conv", module, seed=3)
    assert sol.residual <= 1e-10
    assert _errs(net, child) <= 1e-10
    assert not net.has_edge("conv.pad") and net.has_edge("conv")      # the input is untouched
    assert "conv.pad" in new and not child.has_edge("conv")


@pytest.mark.parametrize("stride, padding, k, bias", [(2, 1, 3, True), (1, 0, 3, False), (2, 0, 1, True),
                                                      (1, 2, 5, False)])
def test_strides_paddings_and_bias(stride, padding, k, bias):
    net = conv_net(k=k, stride=stride, padding=padding, bias=bias, size=10).to(torch.float64)
    child, sol, _ = morph_to_module(net, "conv", "D", seed=0)
    assert child.shapes()["output"] == net.shapes()["output"]
    assert _errs(net, child) <= 1e-10
    biased = [e.name for e in child.edges() if isinstance(e.layer, Conv2d) and e.layer.bias]
    assert len(biased) == (1 if bias else 0)
    strided = sorted(e.name for e in child.edges() if isinstance(e.layer, Conv2d) and e.layer.stride == stride)
    if stride > 1:
        assert strided == ["conv.F5.conv", "conv.F6.conv", "conv.F7.conv"]    # the edges into the sink


def test_pad_once_layout_of_module_d():
    net = conv_net()
    child, sol, new = morph_to_module(net, "conv", "D", seed=0)
    layers = {n: child.edge(n).layer for n in new}
    assert layers["conv.pad"] == Pad(1 + 3 - 1)
    # F5 (a -> t, radius 1) and F7 (b -> t) skip two radii of the longest path: crop 1 before them.
    assert layers["conv.F5.crop"] == Crop(1) and layers["conv.F7.crop"] == Crop(1)
    assert not any(isinstance(layers[n], Crop) for n in new if n.startswith(("conv.F1", "conv.F3", "conv.F6")))
    assert all(l.padding == 0 for l in layers.values() if isinstance(l, Conv2d))


def test_per_layer_padding_would_be_wrong_at_the_border():
    """Why pad-once: the same solved 3x3 -> 3x3 chain run with per-layer zero padding is exact only in
    the interior."""
    net = conv_net(cin=4, cout=4).to(torch.float64)
    _, sol, _ = morph_to_module(net, "conv", {"edges": [{"name": "A", "from": "s", "to": "m", "kernel": 3},
                                                        {"name": "B", "from": "m", "to": "t", "kernel": 3}]})
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    ref = F.conv2d(x, net.params["conv"]["weight"], padding=1)
    per_layer = F.conv2d(F.conv2d(x, sol.filters["A"], padding=1), sol.filters["B"], padding=1)
    pad_once = F.conv2d(F.conv2d(F.pad(x, (2,) * 4), sol.filters["A"]), sol.filters["B"])
    scale = ref.abs().max()
    assert (pad_once - ref).abs().max() / scale < 1e-12
    assert (per_layer - ref)[..., 1:-1, 1:-1].abs().max() / scale < 1e-12
    assert (per_layer - ref).abs().max() / scale > 1e-2


def test_bn_and_activations_are_inserted_as_identities():
    net = conv_net()
    child, _, new = morph_to_module(net, "conv", CONFIGS / "module_d_bn.yaml", seed=1)
    kinds = {n: child.edge(n).layer for n in new}
    assert isinstance(kinds["conv.F1.bn"], BatchNorm2d) and isinstance(kinds["conv.F1.act"], PAct)
    assert isinstance(kinds["conv.F2.act"], PReLU)
    assert torch.equal(child.params["conv.F1.act"]["a"], torch.ones(kinds["conv.F1.act"].channels))
    assert torch.equal(child.params["conv.F2.act"]["weight"], torch.ones(kinds["conv.F2.act"].num_parameters))
    bn = child.params["conv.F1.bn"]
    assert torch.allclose(bn["running_var"] + kinds["conv.F1.bn"].eps, torch.ones_like(bn["running_var"]))
    assert child.meta["modules"][0]["widths"]["c"] == 16                       # pinned at 2x of 8


def test_op_on_a_perturbed_resnet_float32_and_float64(tiny_resnet):
    net = perturb(tiny_resnet, seed=5)
    site = "layer2.0.conv1"            # stride 2
    child, rec = apply_op(net, "module", site, {"module": str(CONFIGS / "module_d.yaml")}, seed=2)
    assert output_diff(net, child, dtype=torch.float32, batch=2).rel_err <= 1e-5
    child64, rec64 = apply_op(net.to(torch.float64), "module", site, {"module": "D"}, seed=2)
    assert output_diff(net.to(torch.float64), child64, dtype=torch.float64, batch=2).rel_err <= 1e-10
    assert rec.mode == "exact-dense" and rec.error <= 1e-10 and rec.removed_edges == (site,)
    assert "complex module" in rec.notes and "morph sequence: solve irreducible remainder" in rec.notes
    assert f"{site}.pad" in rec.new_edges and f"{site}.F6.conv" in rec.new_edges


def test_record_notes_give_the_morph_sequence_of_a_simple_module(tiny_resnet):
    _, rec = apply_op(tiny_resnet, "module", "layer1.0.conv2", {"module": str(CONFIGS / "module_c.yaml")})
    assert "simple morphable" in rec.notes
    assert "TYPE-I: (conv3∘((conv2∘conv1)+skip)) -> ((conv2∘conv1)+skip) then conv3 via blob b" in rec.notes


def test_sites_and_refusals(tiny_resnet):
    op = default_registry().get("module")
    convs = sorted(e.name for e in tiny_resnet.edges() if isinstance(e.layer, Conv2d))
    assert op.sites(tiny_resnet) == convs
    with pytest.raises(NotApplicable, match="is a batchnorm2d, not a conv2d"):
        op.check(tiny_resnet, "layer1.0.bn1", op.parse_params({"module": "D"}))
    with pytest.raises(NotApplicable, match="effective kernel 1, smaller than conv 'layer1.0.conv1'"):
        apply_op(tiny_resnet, "module", "layer1.0.conv1", {"module": '{"edges": [{"from": "s", "to": "t", "kernel": 1}]}'})
    # the defaults (the conv's kernel beside a 1c1 branch) pass check on every site of the op
    for site in op.sites(tiny_resnet):
        op.check(tiny_resnet, site, op.parse_params({}))
    with pytest.raises(NotApplicable, match="no edge named 'layer1.0.conv9'"):
        op.check(tiny_resnet, "layer1.0.conv9", op.parse_params({}))
    grouped = Network((4, 6, 6))
    grouped.add_edge("input", "output", Conv2d(4, 4, 3, 1, 1, groups=2), "g")
    with pytest.raises(NotApplicable, match="groups=2"):
        morph_to_module(grouped, "g", "D")
    with pytest.raises(SpecError, match="op module parameter 'iterations' must be >= 0, got -1"):
        op.parse_params({"module": "D", "iterations": "-1"})


def test_fixed_widths_refusal_through_the_op():
    net = conv_net(cin=8, cout=8)
    with pytest.raises(NotApplicable, match=r"fixed internal widths \(a=8, b=8, c=8\).*make it exact"):
        apply_op(net, "module", "conv", {"module": "D", "widen": "false", "iterations": "3"})


def test_cli_morph_with_a_module_file(tmp_path, capsys):
    from morphnas.morphism.serialize import save_network
    from morphnas.search.cli import main
    src = save_network(conv_net(), tmp_path / "net")
    code = main(["morph", str(src), "--op", "module", "--site", "conv", "--module",
                 str(CONFIGS / "module_d.yaml"), "--seed", "1", "-o", str(tmp_path / "child")])
    out = capsys.readouterr().out
    assert code == 0
    assert "error " in out and "morph sequence: solve irreducible remainder" in out
    rel = float(out.split("rel_err ")[1].split()[0])
    assert rel <= 1e-5


@pytest.mark.parametrize("seed", range(3))
def test_random_irreducible_modules_preserve_the_network(seed):
    import numpy as np

    from morphnas.morphism.module.generate import random_irreducible_module
    m = random_irreducible_module(np.random.default_rng(300 + seed), blobs=3, max_edges=8, kernels=(1, 3))
    k = 3 if m.effective_kernel >= 3 else 1
    net = conv_net(cin=4, cout=6, k=k, padding=k // 2, seed=seed)
    child, sol, _ = morph_to_module(net, "conv", m, seed=seed)
    assert sol.residual <= 1e-10
    assert output_diff(net, child, dtype=torch.float32, batch=2).rel_err <= 1e-5
    child64, _, _ = morph_to_module(net.to(torch.float64), "conv", m, seed=seed)
    assert _errs(net.to(torch.float64), child64) <= 1e-10


def same_tensors(a: Network, b: Network) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_record_stores_the_module_and_replays_without_the_file(tmp_path):
    net = conv_net(cin=4, cout=4)
    path = tmp_path / "mod.json"
    path.write_text(json.dumps(MODULES["1c1"]))
    child, rec = apply_op(net, "module", "conv", {"module": str(path)}, seed=3)
    assert isinstance(rec.params["module"], dict) and rec.params["module"]["name"] == "1c1"
    path.unlink()
    again = replay(net, [json.loads(json.dumps(rec.to_json()))])
    assert same_tensors(again, child)


def test_a_too_large_module_is_refused_fast():
    net = Network((512, 8, 8))
    net.add_edge("input", "output", Conv2d(512, 512, 3, 1, 1), "conv")
    op = default_registry().get("module")
    start = time.perf_counter()
    with pytest.raises(NotApplicable, match=r"needs a \d+x\d+ joint least-squares solve .* above the limit of 2e\+10"):
        op.check(net, "conv", op.parse_params({"module": "D"}))
    with pytest.raises(NotApplicable, match="above the limit"):
        apply_op(net, "module", "conv", {"module": "D"})
    assert time.perf_counter() - start < 5.0
