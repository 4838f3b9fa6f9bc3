"""``morphnas morph``: apply an op to a name or saved network, list sites, and refuse bad input
with one line and exit code 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _ops_util import F32_TOL, rel_err, same_tensors, spec_params

from morphnas.morphism.ops import default_registry
from morphnas.morphism.serialize import load_network, save_network
from morphnas.search.cli import main
from morphnas.spaces.registry import create_network

MORPHNAS = Path(sys.executable).with_name("morphnas")


@pytest.fixture
def saved(tmp_path):
    from morphnas.morphism.perturb import perturb
    return save_network(perturb(create_network("tiny_resnet"), seed=1), tmp_path / "parent")


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_morph_a_saved_network_and_keep_the_record(saved, tmp_path, capsys):
    out = tmp_path / "child"
    rc = main(["morph", str(saved), "--op", "morph_block", "--site", "layer1.0.shortcut", "--param", "k1=3",
               "--param", "k2=1", "--seed", "4", "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "morph_block@layer1.0.shortcut(" in text and "k1=3" in text and "mode exact-sparse" in text
    assert "zero fraction" in text and "notes: shortcut layer1.0.shortcut scaled 0.5" in text
    parent, child = load_network(saved), load_network(out)
    assert rel_err(parent, child, torch.float32) <= F32_TOL
    (rec,) = child.meta["morphs"]
    assert rec["op"] == "morph_block" and rec["params"]["k1"] == 3 and rec["seed"] == 4
    assert child.edge("layer1.0.morph.conv1").layer.kernel_size == 3


def test_json_output_and_random_site_from_the_seed(saved, tmp_path, capsys):
    sites = default_registry().get("widen").sites(load_network(saved))
    picked = set()
    for seed in (0, 1, 2):
        assert main(["morph", str(saved), "--op", "widen", "--seed", str(seed), "--json",
                     "-o", str(tmp_path / f"w{seed}")]) == 0
        d = json.loads(capsys.readouterr().out)
        assert d["record"]["site"] in sites and d["check"]["rel_err"] < 1e-6
        child = load_network(tmp_path / f"w{seed}")
        assert (d["params_before"], d["params_after"]) == (spec_params(load_network(saved)), spec_params(child))
        assert d["params_after"] > d["params_before"]
        picked.add(d["record"]["site"])
    assert len(picked) >= 2
    main(["morph", str(saved), "--op", "widen", "--seed", "1", "--json", "-o", str(tmp_path / "again")])
    again = json.loads(capsys.readouterr().out)["record"]
    assert load_network(tmp_path / "again").meta["morphs"] == [again]
    assert same_tensors(load_network(tmp_path / "again"), load_network(tmp_path / "w1"))


def test_list_sites(saved, capsys):
    assert main(["morph", str(saved), "--op", "split_identity", "--list-sites"]) == 0
    assert capsys.readouterr().out.split() == ["layer1.0.shortcut"]
    assert main(["morph", "resnet20", "--op", "morph_block", "--list-sites", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["site_kind"] == "edge" and len(d["sites"]) == 7


@pytest.mark.parametrize("argv,needle", [
    (["--op", "morph_blok", "-o", "X"], "did you mean 'morph_block'"),
    (["--op", "morph_block", "--site", "layer1.0.shortcu", "-o", "X"], "did you mean layer1.0.shortcut"),
    (["--op", "morph_block", "--site", "layer1.0.conv1", "-o", "X"], "not an identity edge"),
    (["--op", "morph_block", "--param", "k1=2", "-o", "X"], "'k1' must be an odd kernel size"),
    (["--op", "morph_block", "--param", "kk=3", "-o", "X"], "has no parameter 'kk'"),
    (["--op", "morph_block", "--param", "k1", "-o", "X"], "KEY=VALUE"),
    (["--op", "morph_block", "--param", "k1=x", "-o", "X"], "must be of type int"),
    (["--op", "widen", "--param", "width=4", "-o", "X"], "must be larger"),
    (["--op", "widen", "--seed", "two", "-o", "X"], "--seed must be an integer"),
    (["--op", "morph_block"], "-o/--output NET2 is required"),
    (["--op", "module", "--module", "/no/such/file.yaml", "-o", "X"], "no such file"),
])
def test_bad_input_is_one_line_and_exit_2(saved, tmp_path, capsys, argv, needle):
    argv = [a.replace("X", str(tmp_path / "out")) if a == "X" else a for a in argv]
    assert main(["morph", str(saved), *argv]) == 2
    err = _err_line(capsys)
    assert err.startswith("morphnas morph: error:") and needle in err
    assert not (tmp_path / "out").exists()


def test_unknown_network_is_one_line(capsys, tmp_path):
    assert main(["morph", "resnet21", "--op", "widen", "-o", str(tmp_path / "o")]) == 2
    assert "resnet20" in _err_line(capsys)


def test_module_file_is_passed_to_the_module_op(saved, tmp_path, capsys):
    # A missing module op is a regression, not a reason to skip. The module comes from a file this test
    # writes (the conv's own kernel beside a 1x1 -> BN -> PReLU -> 1x1 -> BN branch, which exercises
    # the pad-once crop), so the test does not depend on any default the op may offer.
    assert "module" in default_registry(), "the module op is not registered"
    op = default_registry().get("module")
    net = load_network(saved)
    site = op.sites(net)[0]
    k = net.edge(site).layer.kernel_size
    path = tmp_path / "module.json"
    path.write_text(json.dumps({"name": "file_module", "edges": [
        {"name": "main", "from": "s", "to": "t", "kernel": k},
        {"name": "sq1", "from": "s", "to": "m", "kernel": 1, "bn": True, "act": "prelu"},
        {"name": "sq2", "from": "m", "to": "t", "kernel": 1, "bn": True}]}))
    rc = main(["morph", str(saved), "--op", "module", "--site", site, "--module", str(path),
               "-o", str(tmp_path / "m")])
    out = capsys.readouterr().out
    assert rc == 0 and "notes:" in out
    child = load_network(tmp_path / "m")
    new_edges = {e.name for e in child.edges()} - {e.name for e in net.edges()}
    assert {f"{site}.{e}" for e in ("main", "sq1", "sq2")} <= {n.rsplit(".", 1)[0] for n in new_edges}, new_edges
    assert rel_err(net, child, torch.float32) <= F32_TOL


def test_console_script_end_to_end(tmp_path):
    out = tmp_path / "child"
    proc = subprocess.run([str(MORPHNAS), "morph", "tiny_resnet", "--op", "insert_path", "--param", "k1=1",
                           "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "insert_path@layer1.0.shortcut" in proc.stdout and "rel_err" in proc.stdout
    assert (out / "network.json").is_file()
