"""``morphnas export --onnx``: model.onnx reproduces the member under onnxruntime, with a dynamic batch."""
from __future__ import annotations

import json
import sys

import pytest
import torch
from _fake_run import make_fake_run, member_net

from morphnas.morphism.compile import compile_network
from morphnas.morphism.errors import MorphnasError
from morphnas.morphism.graph import Network
from morphnas.morphism.layers import Conv2d, GlobalAvgPool
from morphnas.morphism.layers_extra import (
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    ChannelLayerNorm,
    ChannelShuffle,
    ChannelSlice,
    LayerScale,
    StochasticDepth,
)
from morphnas.morphism.ops import apply_op
from morphnas.morphism.perturb import perturb
from morphnas.search.cli import main
from morphnas.search.export.exporter import ONNX_OPSET, export_network

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

TOL = 1e-5


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_fake_run(tmp_path_factory.mktemp("runs"), publish=False)


def onnx_rel_err(path, net: Network, batch: int, seed: int = 0) -> float:
    """max |onnxruntime - morphnas| / max |morphnas| on a fresh batch of ``batch`` inputs."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn((batch, *net.input_shape), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = compile_network(net).eval()(x)
    y = torch.from_numpy(session.run(["output"], {"input": x.numpy()})[0])
    assert y.shape == expected.shape
    return (y - expected).abs().max().item() / expected.abs().max().item()


def extra_kinds_network() -> Network:
    """The kinds beyond ResNets: slice + shuffle + layer norm + layer scale + stochastic depth, and
    adaptive pools to sizes that do not divide their 7x7 input (torch's ONNX exporter refuses those)."""
    gen = torch.Generator().manual_seed(4)
    net = Network((3, 7, 7))
    net.add_edge("input", "a", Conv2d(3, 8, 3, padding=1, bias=True), "stem", gen=gen)
    net.add_edge("a", "b", ChannelShuffle(2), "shuffle", gen=gen)
    net.add_edge("b", "c", ChannelLayerNorm(8), "ln", gen=gen)
    net.add_edge("c", "d", LayerScale(8), "scale", gen=gen)
    net.add_edge("d", "e", StochasticDepth(0.2), "sd", gen=gen)
    net.add_edge("e", "s", ChannelSlice(2, 6), "slice", gen=gen)
    net.add_edge("s", "p", AdaptiveAvgPool2d(3, 2), "apool", gen=gen)
    net.add_edge("p", "q", AdaptiveMaxPool2d(2, 1), "mpool", gen=gen)
    net.add_edge("q", "output", GlobalAvgPool(), "gap", gen=gen)
    return perturb(net, seed=5)


def seed_network(name: str) -> Network:
    from morphnas.spaces.registry import create_seed
    return perturb(create_seed(name), seed=1)


def morphed_child() -> Network:
    """tiny_resnet after deepen, widen, insert_bn, split, a parametric activation and a new conv path."""
    net = seed_network("tiny_resnet")
    for i, op in enumerate(["deepen", "widen", "insert_bn", "split", "activation", "insert_path"]):
        net, _ = apply_op(net, op, None, None, seed=i)
    return perturb(net, seed=9)


def mobilenet_child() -> Network:
    """tiny_mobilenet (depthwise convs, residual adds) after a depthwise deepen and a concat skip."""
    net = seed_network("tiny_mobilenet")
    for i, op in enumerate(["deepen_depthwise", "concat_skip", "widen"]):
        net, _ = apply_op(net, op, None, None, seed=i)
    return perturb(net, seed=9)


NETWORKS = {
    "tiny_resnet": lambda: seed_network("tiny_resnet"),
    "tiny_mobilenet": lambda: seed_network("tiny_mobilenet"),
    "tiny_densenet": lambda: seed_network("tiny_densenet"),
    "mlp": lambda: seed_network("mlp"),
    "resnet20": lambda: seed_network("resnet20"),
    "morphed_tiny_resnet": morphed_child,
    "morphed_tiny_mobilenet": mobilenet_child,
    "extra_kinds": extra_kinds_network,
}


@pytest.mark.parametrize("which", list(NETWORKS))
def test_onnx_matches_pytorch_and_keeps_the_batch_dynamic(tmp_path, which):
    net = NETWORKS[which]()
    result = export_network(net, tmp_path / "exp", onnx=True)
    assert set(result.checks) == {"onnx"} and 0.0 <= result.checks["onnx"] <= TOL
    assert "model.onnx" in result.files
    manifest = json.loads((tmp_path / "exp" / "export.json").read_text())
    assert manifest["check"]["onnx"] == result.checks["onnx"]          # recorded like the other formats
    assert manifest["onnx"]["opset"] == ONNX_OPSET and manifest["onnx"]["input"] == "input"
    model = onnx.load(str(tmp_path / "exp" / "model.onnx"))
    assert model.opset_import[0].version == ONNX_OPSET
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    # exported with a batch of 2; run on 1 and 7
    for batch in (1, 7):
        assert onnx_rel_err(tmp_path / "exp" / "model.onnx", net, batch, seed=batch) <= TOL


def test_onnx_with_the_other_formats_and_stale_file_removal(tmp_path):
    net = member_net(3)
    result = export_network(net, tmp_path / "exp", torchscript=True, torch_export=True, onnx=True)
    assert set(result.checks) == {"torchscript", "torch_export", "onnx"}
    assert result.checks["torchscript"] == 0.0 and result.checks["onnx"] <= TOL
    export_network(net, tmp_path / "exp")
    assert not (tmp_path / "exp" / "model.onnx").exists()


def test_onnx_mismatch_is_one_line(tmp_path):
    with pytest.raises(MorphnasError) as err:
        export_network(seed_network("tiny_resnet"), tmp_path / "exp", onnx=True, tol=1e-12)
    msg = str(err.value)
    assert "\n" not in msg and "model.onnx differs from the member under onnxruntime" in msg
    assert "tol=1e-12" in msg and "export without --onnx" in msg


def test_float64_network_is_refused_in_one_line(tmp_path):
    """onnxruntime's CPU provider has no float64 Conv: a clear refusal, not a traceback."""
    with pytest.raises(MorphnasError) as err:
        export_network(member_net(1).to(torch.float64), tmp_path / "exp", onnx=True)
    msg = str(err.value)
    assert "\n" not in msg and "onnxruntime cannot load model.onnx (the network is float64" in msg


def test_export_cli_onnx_on_a_run(fake, tmp_path, capsys):
    run = fake[0]
    assert main(["export", str(run.root), "--trial", "2", "--onnx", "-o", str(tmp_path / "e"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["trial"], data["member"]) == (2, "m2") and "model.onnx" in data["files"]
    assert 0.0 <= data["checks"]["onnx"] <= TOL
    assert onnx_rel_err(tmp_path / "e" / "model.onnx", member_net(2), 5) <= TOL
    manifest = json.loads((tmp_path / "e" / "export.json").read_text())
    assert manifest["check"]["onnx"] == data["checks"]["onnx"] and "model.onnx" in manifest["files"]
    # the plain text report names the check like the other formats'
    assert main(["export", str(run.root), "--onnx", "-o", str(tmp_path / "e"), "--force"]) == 0
    out = capsys.readouterr().out
    assert ", onnx rel_err=" in out and "model.onnx" in out


def test_export_cli_ensemble_onnx_is_one_graph(fake, tmp_path, capsys):
    from morphnas.morphism.serialize import load_network
    from morphnas.search.study.leaderboard import Leaderboard
    run = fake[0]
    assert main(["export", str(run.root), "--ensemble", "2", "--onnx", "-o", str(tmp_path / "ens"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert 0.0 <= data["checks"]["onnx"] <= TOL and "model.onnx" in data["files"]
    spec = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert spec["check"]["onnx"] == data["checks"]["onnx"]
    lb = Leaderboard.open(run)
    nets = [load_network(lb.member_dir(lb.row_of(m))) for m in data["members"]]
    x = torch.randn((4, *nets[0].input_shape), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = torch.log(sum(torch.softmax(compile_network(n).eval()(x), 1) for n in nets) / len(nets))
    session = ort.InferenceSession(str(tmp_path / "ens" / "model.onnx"), providers=["CPUExecutionProvider"])
    y = torch.from_numpy(session.run(["output"], {"input": x.numpy()})[0])
    assert (y - expected).abs().max().item() / expected.abs().max().item() <= TOL


@pytest.mark.parametrize("missing", ["onnxruntime", "onnx"])
def test_missing_onnx_packages_is_exit_2_and_one_line(fake, tmp_path, capsys, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)   # `import onnxruntime` now raises ImportError
    assert main(["export", str(fake[0].root), "--onnx", "-o", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "install with pip install 'morphnas[onnx]'" in err and f"({missing} is not installed)" in err
    assert not (tmp_path / "e").exists()
