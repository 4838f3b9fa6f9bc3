"""``morphnas describe NAME --classes 10|100 --json`` for every seed and paper variant."""
import json

import pytest

from morphnas.morphism.serialize import save_network
from morphnas.search.cli import main
from morphnas.spaces.registry import all_names, create_seed

# Closed-form params of the CIFAR ResNet-20 head: 64 -> classes FC with bias (see test_counting).
R20 = {10: 274_730, 100: 274_730 + 90 * 65}
M20 = {10: 298_250, 100: 298_250 + 90 * 65}


def describe(capsys, *argv):
    rc = main(["describe", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("classes", [10, 100])
@pytest.mark.parametrize("name", all_names())
def test_describe_every_name(capsys, name, classes):
    rc, out, err = describe(capsys, name, "--classes", str(classes), "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["name"] == name
    assert d["output_shape"] == [classes]
    assert d["params_mb"] == pytest.approx(4 * d["params"] / 2**20)
    assert d["flops"] > 0 and d["params"] > 0
    if name == "resnet20":
        assert d["params"] == R20[classes] and d["depth"] == 20
    if name == "morph20_1c1":
        assert d["params"] == M20[classes] and d["depth"] == 20
    if name.startswith("morph"):
        assert d["blocks"] > 0 and d["layers"]["identity"] >= 0


def test_describe_draw_and_saved_network(capsys, tmp_path):
    rc, out, err = describe(capsys, "morph20_1c1", "--draw", str(tmp_path / "m.png"))
    assert rc == 0, err
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    save_network(create_seed("tiny_resnet"), tmp_path / "net")
    rc, out, err = describe(capsys, str(tmp_path / "net"), "--json")
    assert rc == 0, err
    assert json.loads(out)["params"] == 20_266


def test_describe_bad_names_exit_2(capsys):
    rc, out, err = describe(capsys, "morph20_1c1_2brnch", "--json")
    assert rc == 2 and "did you mean '_2branch'" in err and len(err.strip().splitlines()) == 1
    rc, out, err = describe(capsys, "resnet21")
    assert rc == 2 and "did you mean" in err
    rc, out, err = describe(capsys, "morph20_1c1", "--draw", "x.pdf")
    assert rc == 2 and ".png or .svg" in err
