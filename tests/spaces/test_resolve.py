"""resolve_network: names, saved directories and torchvision models behind one SPEC string."""
import pytest
import torch

from morphnas.morphism.errors import LoadError, MorphnasError
from morphnas.morphism.serialize import SPEC_FILE, save_network
from morphnas.spaces.resolve import resolve_network


def test_registry_names_with_overrides():
    net = resolve_network("tiny_resnet", num_classes=4, seed=3)
    assert net.shapes()["output"] == (4,) and net.meta["name"] == "tiny_resnet"
    again = resolve_network("tiny_resnet", num_classes=4, seed=3)
    other = resolve_network("tiny_resnet", num_classes=4, seed=4)
    assert torch.equal(net.params["conv1"]["weight"], again.params["conv1"]["weight"])
    assert not torch.equal(net.params["conv1"]["weight"], other.params["conv1"]["weight"])


def test_saved_directories_and_spec_files(tmp_path):
    tiny_resnet = resolve_network("tiny_resnet")
    p = save_network(tiny_resnet, tmp_path / "mine")
    for spec in (str(p), str(p / SPEC_FILE)):
        net = resolve_network(spec)
        assert torch.equal(net.params["fc"]["weight"], tiny_resnet.params["fc"]["weight"])
        assert net.meta["name"] == "tiny_resnet"      # the saved name wins over the directory's
    assert resolve_network(str(p), num_classes=10).shapes()["output"] == (10,)
    with pytest.raises(MorphnasError, match="outputs shape \\(10,\\), not 7 classes"):
        resolve_network(str(p), num_classes=7)
    unnamed = resolve_network("tiny_resnet")
    del unnamed.meta["name"]
    assert resolve_network(str(save_network(unnamed, tmp_path / "other"))).meta["name"] == "other"
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(LoadError, match="is a file but not a saved network"):
        resolve_network(str(tmp_path / "notes.txt"))
    with pytest.raises(LoadError, match="no saved network at"):
        resolve_network(str(tmp_path / "missing"))


def test_torchvision_models_are_seeded_and_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a = resolve_network("torchvision:resnet18", num_classes=5, seed=1, input_size=32)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = resolve_network("torchvision:resnet18", num_classes=5, seed=1, input_size=32)
    c = resolve_network("torchvision:resnet18", num_classes=5, seed=2, input_size=32)
    assert a.input_shape == (3, 32, 32) and a.shapes()["output"] == (5,)
    assert torch.equal(a.params["conv1"]["weight"], b.params["conv1"]["weight"])
    assert not torch.equal(a.params["conv1"]["weight"], c.params["conv1"]["weight"])
    assert a.meta["name"] == "torchvision:resnet18"


@pytest.mark.parametrize("spec, kw, match", [
    ("torchvision:resnet180", {}, "unknown torchvision model 'resnet180'; did you mean torchvision:resnet18"),
    ("", {}, "network SPEC must be"),
    ("tiny_resnet", {"num_classes": 0}, "number of classes must be a positive integer, got 0"),
    ("tiny_resnet", {"num_classes": True}, "number of classes must be a positive integer"),
    ("tiny_resnt", {}, "did you mean 'tiny_resnet'"),
])
def test_bad_specs(spec, kw, match):
    with pytest.raises(MorphnasError, match=match):
        resolve_network(spec, **kw)
