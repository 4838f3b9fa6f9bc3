"""Every torchvision classification CNN of issue 14 imports and computes the model's function.

Random weights (``weights=None``, no downloads), batch 1, eval mode. A 64x64 input keeps each
forward cheap on 2 cores (every listed model accepts it: adaptive pooling brings the head to its
size); the 224x224 figures are in BENCHMARKS.md (``bench/import_zoo.py``). Models whose build and
trace take several seconds are marked slow.
"""
from __future__ import annotations

import warnings

import pytest
import torch

from morphnas.morphism.compile import compile_network
from morphnas.morphism.errors import ImportUnsupported
from morphnas.morphism.importer import from_torch

torchvision = pytest.importorskip("torchvision")

FAST = ["resnet18", "mobilenet_v2", "mnasnet0_5", "alexnet", "squeezenet1_0", "googlenet", "efficientnet_b0",
        "mobilenet_v3_small", "shufflenet_v2_x0_5", "convnext_tiny"]
SLOW = ["resnet50", "vgg11_bn", "regnet_x_400mf", "densenet121"]


def _model(name: str, **kw):
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return torchvision.models.get_model(name, weights=None, **kw).eval()


def _check(name: str, size: int = 64) -> None:
    model = _model(name)
    net = from_torch(model, (3, size, size), verify=False)
    x = torch.randn((1, 3, size, size), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = model(x), compile_network(net).eval()(x)
    assert got.shape == want.shape
    rel = (want - got).abs().max().item() / want.abs().max().item()
    assert rel <= 1e-5, (name, rel)


@pytest.mark.parametrize("name", FAST)
def test_model_imports_and_matches(name):
    _check(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_big_model_imports_and_matches(name):
    _check(name)


def test_new_structures_are_in_the_ir():
    """The joins and kinds each model needs really appear (not traced away into something else)."""
    kinds = {}
    for name in ("googlenet", "mobilenet_v3_small", "shufflenet_v2_x0_5", "convnext_tiny"):
        net = from_torch(_model(name), (3, 64, 64), verify=False)
        kinds[name] = ({e.layer.kind for e in net.edges()}, {net.join(b) for b in net.blobs()})
    assert "concat" in kinds["googlenet"][1] and "maxpool2d" in kinds["googlenet"][0]
    assert "mul" in kinds["mobilenet_v3_small"][1] and {"activation"} <= kinds["mobilenet_v3_small"][0]
    assert {"channel_slice", "channel_shuffle"} <= kinds["shufflenet_v2_x0_5"][0]
    assert {"channel_layernorm", "layer_scale", "stochastic_depth"} <= kinds["convnext_tiny"][0]


@pytest.mark.slow
def test_vit_at_a_size_it_cannot_compute_is_refused_in_one_clear_line():
    """vit_b_16 imports by structure since issue 25 (tests/morphism/test_import_vit.py); what it
    cannot compute (another image size: its position embedding is fixed) is one line."""
    with pytest.raises(ImportUnsupported) as err:
        from_torch(_model("vit_b_16"), (3, 64, 64), verify=False)
    text = str(err.value)
    assert text.startswith("cannot import the model: ") and len(text) < 300
    assert "\n" not in text and "object at" not in text
    assert "VisionTransformer(image_size=224) on inputs of shape (3, 64, 64); import it at (3, 224, 224)" in text
