"""morphnas describe / new / verify through main([...]), and once through the installed script."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from _ops_util import cifar_resnet_macs, cifar_resnet_params, spec_macs, spec_params
from torch import nn

from morphnas.morphism.serialize import SPEC_FILE, WEIGHTS_FILE, load_network
from morphnas.search.cli import main
from morphnas.spaces.counting import count
from morphnas.spaces.registry import create_network


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc, err, *fragments):
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_describe_json_counts_resnet20(capsys):
    rc, out, _ = run(capsys, "describe", "resnet20", "--json")
    assert rc == 0
    d = json.loads(out)
    net = create_network("resnet20")
    # Expected values from the architecture's definition (depth 20, width 16, 3x32x32, 10 classes),
    # not from spaces/counting.py; the closed form and the per-layer sum must agree with each other.
    params, macs = cifar_resnet_params(20, 16, 3, 10), cifar_resnet_macs(20, 16, 3, 32, 10)
    assert (params, macs) == (spec_params(net), spec_macs(net)) == (274_730, 40_813_184)
    assert d["name"] == "resnet20"
    assert d["params"] == count(net).params == params
    assert d["flops"] == macs                # MACs of conv + FC at 32x32
    assert d["params_mb"] == 4 * params / 2**20
    assert d["input_shape"] == [3, 32, 32] and d["output_shape"] == [10]
    # 9 blocks of conv-BN-PReLU-conv-BN-PReLU + a shortcut (identity, or 1x1 conv + BN in the 2
    # downsampling blocks); stem conv-BN-PReLU; head pool, flatten, FC.
    assert d["blocks"] == 9
    assert d["edges"] == 3 + 9 * 7 + 2 + 3
    assert d["layers"]["conv2d"] == 1 + 9 * 2 + 2 and d["layers"]["identity"] == 9 - 2
    rc, out, _ = run(capsys, "describe", "resnet20", "--classes", "100", "--json")
    assert json.loads(out)["output_shape"] == [100]
    assert json.loads(out)["params"] == cifar_resnet_params(20, 16, 3, 100) == params + 64 * 90 + 90


def test_describe_human_and_edges(capsys):
    rc, out, _ = run(capsys, "describe", "tiny_resnet", "--edges")
    assert rc == 0
    assert f"params    {cifar_resnet_params(8, 8, 1, 10):,} " in out and "(1, 8, 8) -> output (10,)" in out
    assert f"flops     {cifar_resnet_macs(8, 8, 1, 8, 10):,} MACs" in out
    assert "layer1.0.shortcut" in out


def test_describe_torchvision_model(capsys):
    rc, out, _ = run(capsys, "describe", "torchvision:resnet18", "--classes", "10", "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["name"] == "torchvision:resnet18" and d["input_shape"] == [3, 224, 224]
    # Counted on torchvision's own module: parameters + BN running statistics, and MACs of every
    # conv and linear layer from a forward pass (weights per output element x output elements).
    tv = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    params = sum(p.numel() for p in tv.parameters()) + sum(
        m.running_mean.numel() + m.running_var.numel() for m in tv.modules() if isinstance(m, nn.BatchNorm2d))
    macs = []

    def hook(m, inp, out):
        macs.append(out[0].numel() * m.weight[0].numel())
    for m in tv.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        tv(torch.zeros(1, 3, 224, 224))
    assert d["params"] == params == 11_191_242
    assert d["flops"] == sum(macs) == 1_813_566_464


def test_describe_draw(capsys, tmp_path):
    target = tmp_path / "net.svg"
    rc, out, err = run(capsys, "describe", "tiny_resnet", "--draw", str(target))
    if importlib.util.find_spec("morphnas.spaces.draw") is None:
        one_line_error(rc, err, "--draw is not available")
    else:
        assert rc == 0, err
        assert target.exists() and target.stat().st_size > 0


def test_new_then_verify(capsys, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    rc, out, _ = run(capsys, "new", "tiny_resnet", "-o", str(a), "--perturb", "--seed", "4")
    assert rc == 0 and "wrote" in out and "perturbed" in out
    assert sorted(p.name for p in a.iterdir()) == [SPEC_FILE, WEIGHTS_FILE]
    net = load_network(a)
    assert net.meta["perturbed_seed"] == 4 and net.meta["name"] == "tiny_resnet"
    run(capsys, "new", str(a), "-o", str(b))                # a copy of a saved network
    run(capsys, "new", "tiny_resnet", "-o", str(c), "--seed", "5", "--classes", "3")
    rc, out, _ = run(capsys, "verify", str(a), str(b), "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["max_abs_err"] == 0.0 and d["rel_err"] == 0.0 and d["dtype"] == "float64" and d["batch"] == 4
    rc, out, _ = run(capsys, "verify", str(a), "tiny_resnet", "--dtype", "float32", "--batch", "2", "--seed", "3")
    assert rc == 0 and out.startswith("max_abs_err ") and "rel_err" in out and "float32" in out
    # Perturbing changes the function: relative error is large, --tol turns it into exit 1.
    rc, out, _ = run(capsys, "verify", str(a), "tiny_resnet", "--json", "--tol", "1e-6")
    d = json.loads(out)
    assert rc == 1 and d["ok"] is False and d["rel_err"] > 1e-3
    assert load_network(c).shapes()["output"] == (3,)
    # Seeds give different weights.
    w4 = load_network(a).params["conv1"]["weight"]
    w5 = load_network(c).params["conv1"]["weight"]
    assert not torch.equal(w4, w5)


@pytest.mark.parametrize("argv, fragments", [
    (["describe", "resnt20"], ["unknown network name 'resnt20'", "did you mean 'resnet20'"]),
    (["describe", "torchvision:resnett18"], ["unknown torchvision model", "torchvision:resnet18"]),
    (["describe", "./no/such/net"], ["no saved network at './no/such/net'"]),
    (["describe", "resnet20", "--classes", "0"], ["--classes must be a positive integer, got '0'"]),
    (["describe", "resnet20", "--classes", "ten"], ["--classes must be a positive integer, got 'ten'"]),
    (["new", "resnet20", "-o", "{tmp}/x", "--seed", "abc"], ["--seed must be an integer"]),
    (["verify", "{net}", "{net}", "--dtype", "float16"], ["--dtype must be one of float32, float64", "float64"]),
    (["verify", "{net}", "{net}", "--batch", "-1"], ["--batch must be a positive integer"]),
    (["verify", "{net}", "{corrupt}"], ["is not valid JSON", "corrupt or truncated"]),
    (["verify", "{net}", "{tmp}"], ["has no network.json"]),
    (["verify", "{net}", "resnet20"], ["the networks take different inputs"]),
    (["new", "{net}", "-o", "{net}", "--classes", "5"], ["outputs shape (10,), not 5 classes"]),
])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, argv, fragments):
    net = tmp_path / "net"
    main(["new", "tiny_resnet", "-o", str(net)])
    corrupt = tmp_path / "corrupt"
    main(["new", "tiny_resnet", "-o", str(corrupt)])
    (corrupt / SPEC_FILE).write_text((corrupt / SPEC_FILE).read_text()[:200])
    capsys.readouterr()
    argv = [a.format(tmp=tmp_path, net=net, corrupt=corrupt) for a in argv]
    rc, _, err = run(capsys, *argv)
    one_line_error(rc, err, *fragments)


def test_installed_script(tmp_path):
    exe = Path(sys.executable).parent / "morphnas"
    ok = subprocess.run([str(exe), "describe", "tiny_resnet", "--json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["params"] == cifar_resnet_params(8, 8, 1, 10)
    bad = subprocess.run([str(exe), "new", "tiny_resnett", "-o", str(tmp_path / "x")], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        bad.stderr.strip()] and "did you mean 'tiny_resnet'" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "x").exists()
