"""Export: spec + weights + a torch-only loader that reproduces the member's outputs."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from _fake_run import make_fake_run, member_net

from morphnas.morphism.compile import compile_network
from morphnas.morphism.graph import Network
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
from morphnas.morphism.perturb import perturb
from morphnas.search.cli import main
from morphnas.search.export.exporter import export_network, export_run


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_fake_run(tmp_path_factory.mktemp("runs"), publish=False)


def every_kind_network() -> Network:
    """A small DAG using every layer kind, with a pad-once chain, a scaled shortcut and a 3-way sum."""
    gen = torch.Generator().manual_seed(3)
    net = Network((2, 8, 8))
    net.add_edge("input", "a", Conv2d(2, 4, 3, padding=1, bias=True), "stem.conv", gen=gen)
    net.add_edge("a", "b", BatchNorm2d(4), "stem.bn", gen=gen)
    net.add_edge("b", "c", PReLU(4), "stem.prelu", gen=gen)
    net.add_edge("c", "p", Pad(1), "path.pad", gen=gen)
    net.add_edge("p", "q", Conv2d(4, 4, 3), "path.conv_a", gen=gen)           # pad once, then unpadded
    net.add_edge("q", "r", PAct(4, "elu"), "path.act", gen=gen)
    net.add_edge("r", "s", Crop(0), "path.crop", gen=gen)
    net.add_edge("s", "j", Conv2d(4, 4, 1), "path.conv_b", gen=gen)
    net.add_edge("c", "j", Identity(0.5), "shortcut", gen=gen)
    net.add_edge("c", "j", Activation("tanh"), "side", gen=gen)
    net.add_edge("j", "k", MaxPool2d(2), "pool", gen=gen)
    net.add_edge("k", "k2", AvgPool2d(2, 1, 0), "avg", gen=gen)
    net.add_edge("k2", "g", GlobalAvgPool(), "gap", gen=gen)
    net.add_edge("g", "f", Flatten(), "flatten", gen=gen)
    net.add_edge("f", "d", Dropout(0.3), "drop", gen=gen)
    net.add_edge("d", "output", Linear(4, 5), "fc", gen=gen)
    net = perturb(net, seed=7)
    net.params["path.act"]["a"] = torch.tensor([0.2, 0.5, 0.7, 0.9])
    return net


# A child process that may import torch and nothing of morphnas: load the export, run a fresh
# input through it and save the output.
STANDALONE = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, sys.argv[1])
    import load_model
    model = load_model.load(sys.argv[1])
    x = torch.load(sys.argv[2], weights_only=True)
    with torch.no_grad():
        torch.save(model(x), sys.argv[3])
    leaked = sorted(m for m in sys.modules if m == "morphnas" or m.startswith("morphnas."))
    assert not leaked, leaked
    print(load_model.check(sys.argv[1]))
""")


def run_standalone(export_dir, x, tmp_path):
    torch.save(x, tmp_path / "x.pt")
    script = tmp_path / "standalone.py"
    script.write_text(STANDALONE)
    out = subprocess.run([sys.executable, str(script), str(export_dir), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
                         capture_output=True, text=True, cwd=tmp_path, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert out.returncode == 0, out.stderr
    return torch.load(tmp_path / "y.pt", weights_only=True), out.stdout


@pytest.mark.parametrize("which", ["tiny_resnet", "every_kind"])
def test_export_round_trips_in_a_torch_only_process(tmp_path, which):
    net = member_net(2) if which == "tiny_resnet" else every_kind_network()
    result = export_network(net, tmp_path / "exp", info={"member_id": "m2"})
    assert result.max_abs_err == 0.0 and result.rel_err == 0.0  # same ops, same summation order
    x = torch.randn((3, *net.input_shape), generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        expected = compile_network(net).eval()(x)
    y, stdout = run_standalone(tmp_path / "exp", x, tmp_path)
    assert torch.equal(y, expected)
    assert stdout.strip() == "(0.0, 0.0)"  # the loader's own check against the saved outputs
    spec = json.loads((tmp_path / "exp" / "model.json").read_text())
    assert spec["format"] == "morphnas-export" and spec["member"] == {"member_id": "m2"}
    assert {e["name"] for e in spec["edges"]} == set(net.edge_names())
    state = torch.load(tmp_path / "exp" / "weights.pt", weights_only=True)
    assert state.keys() == net.state_dict().keys()


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_torchscript_and_torch_export(tmp_path):
    net = every_kind_network()
    result = export_network(net, tmp_path / "exp", torchscript=True, torch_export=True)
    assert result.checks == {"torchscript": 0.0, "torch_export": 0.0}
    x = torch.randn((5, *net.input_shape), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = compile_network(net).eval()(x)
        ts = torch.jit.load(str(tmp_path / "exp" / "model.torchscript.pt"))
        ep = torch.export.load(tmp_path / "exp" / "model.pt2").module()
        assert torch.equal(ts(x), expected)
        assert torch.equal(ep(x), expected)  # the batch dimension stays dynamic
    # re-exporting without the extra formats removes their stale files
    export_network(net, tmp_path / "exp")
    assert not (tmp_path / "exp" / "model.pt2").exists() and not (tmp_path / "exp" / "model.torchscript.pt").exists()


def test_export_run_best_and_by_trial(fake, tmp_path):
    run, _, results = fake
    res, row = export_run(run, tmp_path / "best")
    assert (row.trial, row.member_id) == (4, "m4")
    manifest = json.loads((tmp_path / "best" / "export.json").read_text())
    assert manifest["member"]["member_id"] == "m4" and manifest["member"]["values"] == [0.75]
    assert manifest["check"]["rel_err"] == 0.0
    x = torch.randn((2, 1, 8, 8), generator=torch.Generator().manual_seed(5))
    y, _ = run_standalone(tmp_path / "best", x, tmp_path)
    with torch.no_grad():
        assert torch.equal(y, compile_network(member_net(4)).eval()(x))
    _, row = export_run(run, tmp_path / "t2", trial=2)
    assert row.member_id == "m2"


def test_export_cli(fake, tmp_path, capsys):
    run, _, _ = fake
    assert main(["export", str(run.root), "--trial", "1", "-o", str(tmp_path / "e"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["trial"], data["member"], data["rel_err"]) == (1, "m1", 0.0)
    assert set(data["files"]) == {"model.json", "weights.pt", "load_model.py", "morphnas_runtime.py",
                                  "check_input.pt", "check_output.pt", "export.json"}
    out = subprocess.run([sys.executable, str(tmp_path / "e" / "load_model.py"), str(tmp_path / "e"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "check: max_abs_err=0.000e+00 rel_err=0.000e+00" in out.stdout


@pytest.mark.parametrize("argv,msg", [
    (["--trial", "3"], "trial 3 (member m3) is FAIL: worker raised RuntimeError: loss is NaN; export a finished trial"),
    (["--trial", "42"], "trial 42 does not exist; the study has trials 0..4"),
    (["--trial", "-1"], "--trial must be a trial number >= 0"),
    (["--tol", "0"], "--tol must be positive"),
])
def test_export_cli_errors(fake, tmp_path, capsys, argv, msg):
    assert main(["export", str(fake[0].root), "-o", str(tmp_path / "e"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and msg in err


def test_export_target_is_a_file(fake, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["export", str(fake[0].root), "-o", str(tmp_path / "f")]) == 2
    assert "is a file; pass a directory with -o" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing"), "-o", str(tmp_path / "e")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ----------------------------------------------------------------------------- issue 13: raw input
PREDICT = textwrap.dedent("""
    import sys
    sys.path[:] = [p for p in sys.path if "site-packages" in p or p.endswith(".zip") or "lib/python" in p]
    sys.path.insert(0, sys.argv[1])
    import torch
    import load_model
    model = load_model.load(sys.argv[1])
    raw, y = torch.load(sys.argv[2], weights_only=True)
    pred = load_model.predict(model, raw.numpy())
    proba = load_model.predict_proba(model, raw)
    assert torch.equal(proba.argmax(1), pred) and torch.allclose(proba.sum(1), torch.ones(len(raw)))
    assert not any(m == "morphnas" or m.startswith("morphnas.") for m in sys.modules), "morphnas imported"
    print(int((pred == y).sum()), len(y), load_model.class_names(model)[:3])
""")


def test_export_predict_on_raw_test_split_gives_the_reported_accuracy(tmp_path):
    """Raw digits (0..16, 8x8) through predict(): upscaling and standardisation come from the export."""
    import numpy as np
    from sklearn.datasets import load_digits

    from morphnas.search.config import DataConfig
    from morphnas.search.data.core import load_data
    from morphnas.search.trial.train import TrainSpec, evaluate, train
    from morphnas.spaces.seeds.builders import cifar_resnet

    cfg = DataConfig(dataset="digits", image_size=16)
    data = load_data(cfg, seed=3)
    net = cifar_resnet(depth=8, width=8, in_channels=1, input_size=16, num_classes=10)
    net, _ = train(net, data, TrainSpec(3, 0.1, batch_size=64), seed=0)
    reported = evaluate(net, data.test)
    assert reported > 0.5                                         # a trained network, not chance
    export_network(net, tmp_path / "exp", info={"member_id": "m1"}, preprocess=data.preprocess)
    p = json.loads((tmp_path / "exp" / "export.json").read_text())["preprocess"]
    assert (p["raw_range"], p["resize"]["size"], p["channel_order"], len(p["mean"])) == ([0.0, 16.0], [16, 16],
                                                                                          "grey", 1)
    assert p["class_names"][:3] == ["0", "1", "2"]
    assert json.loads((tmp_path / "exp" / "model.json").read_text())["preprocess"] == p
    d = load_digits()                                             # the raw test split, as load_data cuts it
    perm = np.random.default_rng(12345).permutation(len(d.target))[: int(round(cfg.test_fraction * len(d.target)))]
    raw, y = torch.tensor(d.images[perm], dtype=torch.float32), torch.tensor(d.target[perm])
    torch.save((raw, y), tmp_path / "raw.pt")
    (tmp_path / "predict.py").write_text(PREDICT)
    out = subprocess.run([sys.executable, "-I", str(tmp_path / "predict.py"), str(tmp_path / "exp"),
                          str(tmp_path / "raw.pt")], capture_output=True, text=True, cwd=tmp_path,
                         env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert out.returncode == 0, out.stderr
    correct, n, names = out.stdout.split(maxsplit=2)
    assert int(n) == len(data.test) and int(correct) / int(n) == reported
    assert names.strip() == "['0', '1', '2']"


def test_check_and_leaderboard_count_parameters_alike(fake, tmp_path):
    """One convention (learnable tensors + BN running statistics): --check said 20,914, the leaderboard 21,314."""
    run, lb, _ = fake
    row = lb.row_of("m1")
    export_run(run, tmp_path / "e", trial=1)
    out = subprocess.run([sys.executable, str(tmp_path / "e" / "load_model.py"), str(tmp_path / "e"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"{row.params:,} parameters (learnable tensors + BN running statistics, as the leaderboard counts)" \
        in out.stdout


# ----------------------------------------------------------------------------- issue 21: ensembles
def test_export_ensemble_averages_the_k_validation_best_members_in_plain_torch(fake, tmp_path, capsys):
    from morphnas.morphism.serialize import load_network
    from morphnas.search.study.leaderboard import Leaderboard
    run = fake[0]
    lb = Leaderboard.open(run)
    rows = [r for r in lb.rows() if r.state == "COMPLETE"]
    best = sorted(rows, key=lambda r: (-r.val_acc, r.params, r.trial))[:2]
    nets = [load_network(lb.member_dir(r)) for r in best]
    assert main(["export", str(run.root), "--ensemble", "2", "-o", str(tmp_path / "ens"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["members"] == [r.member_id for r in best] and data["rel_err"] == 0.0
    # The loader alone (no morphnas) computes the log of the members' mean softmax.
    x = torch.randn(3, *nets[0].input_shape, generator=torch.Generator().manual_seed(5))
    torch.save(x, tmp_path / "x.pt")
    out = subprocess.run([sys.executable, "-c", STANDALONE, str(tmp_path / "ens"), str(tmp_path / "x.pt"),
                          str(tmp_path / "y.pt")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with torch.no_grad():
        probs = sum(torch.softmax(compile_network(n).eval()(x), 1) for n in nets) / 2
    y = torch.load(tmp_path / "y.pt", weights_only=True)
    assert torch.allclose(torch.exp(y), probs, rtol=1e-5, atol=1e-7)
    assert (tmp_path / "ens" / "members" / best[0].member_id / "model.json").is_file()
    # More members than the run has, or a member chosen by hand, is one line and no directory.
    assert main(["export", str(run.root), "--ensemble", "99", "-o", str(tmp_path / "e2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "finished member(s); ask for at most" in err and not (tmp_path / "e2").exists()
    assert main(["export", str(run.root), "--ensemble", "2", "--trial", "1", "-o", str(tmp_path / "e3")]) == 2
    assert "chooses its members itself" in capsys.readouterr().err
