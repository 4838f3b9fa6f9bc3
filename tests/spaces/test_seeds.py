"""Seeds: the registry's networks are the paper's (architecture facts), and every one compiles,
trains one step, saves and loads."""
import pytest
import torch

from morphnas.morphism.compile import compile_network, sync_from_module
from morphnas.morphism.errors import MorphnasError
from morphnas.morphism.layers import Activation, BatchNorm2d, Conv2d, Identity, Linear, PReLU
from morphnas.morphism.lint import lint
from morphnas.morphism.serialize import load_network, save_network
from morphnas.morphism.verify import output_diff
from morphnas.spaces.registry import REGISTRY, UnknownName, create_network, create_seed

SEEDS = REGISTRY.names()
# Any torchvision model is a seed too (imported by tracing); one is enough here, at 64x64 for speed.
OVERRIDES = {"torchvision:resnet18": {"input_size": 64, "num_classes": 10}}


def test_registry_lists_the_issue_seeds():
    for name in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet18", "resnet34",
                 "tiny_resnet", "small_cnn", "tiny_resnet32", "small_cnn32"):
        assert name in SEEDS


@pytest.mark.parametrize("name", SEEDS + list(OVERRIDES))
def test_seed_compiles_trains_one_step_saves_and_loads(name, tmp_path):
    net = create_seed(name, **OVERRIDES.get(name, {}))
    lint(net)
    assert net.meta["name"] == name
    module = compile_network(net).train()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((2, *net.input_shape), generator=gen)
    classes = net.shapes()[net.output_blob][0]
    y = torch.tensor([0, classes - 1])
    opt = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    loss = torch.nn.functional.cross_entropy(module(x), y)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())
    opt.step()
    trained = sync_from_module(net, module)
    changed = [k for k, t in trained.state_dict().items() if not torch.equal(t, net.state_dict()[k])]
    head = net.in_edges(net.output_blob)[0].name   # "fc"; torchvision-named seeds: "classifier", "classifier.1"
    assert f"{head}.weight" in changed and len(changed) > len(trained.state_dict()) // 2

    save_network(trained, tmp_path / "net")
    back = load_network(tmp_path / "net")
    assert back.edge_names() == trained.edge_names()
    for k, t in trained.state_dict().items():
        assert torch.equal(back.state_dict()[k], t), k
    assert output_diff(trained, back, batch=2).max_abs_err == 0.0


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
@pytest.mark.parametrize("classes", [10, 100])
def test_cifar_resnets_are_the_papers(depth, classes):
    net = create_seed(f"resnet{depth}", num_classes=classes)
    n = (depth - 2) // 6
    edges = net.edges()
    convs = [e for e in edges if isinstance(e.layer, Conv2d)]
    # PReLU everywhere (per channel), never a plain ReLU; no conv bias.
    assert not [e for e in edges if isinstance(e.layer, Activation)]
    prelus = [e for e in edges if isinstance(e.layer, PReLU)]
    assert len(prelus) == 1 + 2 * 3 * n
    assert all(e.layer.num_parameters == net.shapes()[e.src][0] for e in prelus)
    assert not any(c.layer.bias for c in convs)
    # 3 stages of n basic blocks at 16/32/64 channels; projection shortcuts on the two downsampling blocks.
    blocks = net.meta["blocks"]
    assert [(b["stage"], b["index"]) for b in blocks] == [(s, i) for s in (1, 2, 3) for i in range(n)]
    projections = [c for c in convs if c.layer.kernel_size == 1]
    assert [(c.name, c.layer.stride, c.layer.in_channels, c.layer.out_channels) for c in projections] == [
        ("layer2.0.downsample.0", 2, 16, 32), ("layer3.0.downsample.0", 2, 32, 64)]
    identities = [e for e in edges if isinstance(e.layer, Identity)]
    assert len(identities) == 3 * n - 2 and all(e.layer.scale == 1.0 for e in identities)
    assert len(convs) == 1 + 6 * n + 2 and sum(isinstance(e.layer, BatchNorm2d) for e in edges) == 1 + 6 * n + 2
    widths = sorted({c.layer.out_channels for c in convs})
    assert widths == [16, 32, 64]
    shapes = net.shapes()
    assert shapes["layer1.0.out"] == (16, 32, 32) and shapes["layer3.0.out"] == (64, 8, 8)
    fc = net.edge("fc").layer
    assert isinstance(fc, Linear) and (fc.in_features, fc.out_features, fc.bias) == (64, classes, True)


@pytest.mark.parametrize("depth", [18, 34])
def test_imagenet_resnets_match_torchvision_names_and_shapes(depth):
    import torchvision
    net = create_seed(f"resnet{depth}")
    ref = getattr(torchvision.models, f"resnet{depth}")(weights=None).state_dict()
    ours = net.state_dict()
    assert set(ours) == set(ref)
    assert all(tuple(ours[k].shape) == tuple(ref[k].shape) for k in ref)
    assert net.input_shape == (3, 224, 224) and net.shapes()[net.output_blob] == (1000,)


def test_seed_overrides_and_determinism():
    a, b = create_seed("resnet20", seed=3), create_network("resnet20", seed=3)
    assert all(torch.equal(t, b.state_dict()[k]) for k, t in a.state_dict().items())
    c = create_seed("resnet20", seed=4)
    assert not torch.equal(a.params["conv1"]["weight"], c.params["conv1"]["weight"])
    small = create_seed("resnet20", width=8, in_channels=1, input_size=8, num_classes=3)
    assert small.input_shape == (1, 8, 8) and small.shapes()[small.output_blob] == (3,)
    assert create_seed("resnet20", dtype="float64").dtype == torch.float64
    assert create_seed("small_cnn32").input_shape == (3, 32, 32)
    assert create_seed("tiny_resnet").input_shape == (1, 8, 8)


def test_bad_names_and_options_are_named_with_suggestions():
    with pytest.raises(UnknownName, match=r"did you mean 'resnet20'"):
        create_seed("resnet_20")
    with pytest.raises(UnknownName, match="morph20_1c1"):
        create_seed("morph20_1c1x")  # neither variant grammar nor a seed: offered the close variant
    with pytest.raises(MorphnasError, match=r"unknown option 'num_class'; did you mean 'num_classes'"):
        create_seed("resnet20", num_class=10)
    with pytest.raises(MorphnasError, match="depth must be 6n\\+2"):
        create_seed("resnet20", depth=21)
    with pytest.raises(MorphnasError, match="num_classes must be a positive integer"):
        create_seed("resnet56", num_classes=0)
    with pytest.raises(MorphnasError, match="dtype"):
        create_seed("resnet20", dtype="int64")


def test_issue14_seeds_are_the_papers():
    """MobileNetV2 has torchvision's parameter names and shapes (CIFAR strides aside), DenseNet-BC-100
    (k=12) has the paper's 0.8M parameters, and the MLP takes flat tabular input."""
    torchvision = pytest.importorskip("torchvision")
    for name in ("densenet_bc", "mobilenet_v2", "tiny_densenet", "tiny_mobilenet", "mlp"):
        assert name in SEEDS
    ours = create_network("mobilenet_v2").state_dict()
    theirs = torchvision.models.mobilenet_v2(num_classes=10).state_dict()
    assert {k: tuple(t.shape) for k, t in ours.items()} == {k: tuple(t.shape) for k, t in theirs.items()}
    dense = create_network("densenet_bc", depth=100).state_dict()
    learnable = sum(t.numel() for k, t in dense.items() if "running" not in k and "num_batches" not in k)
    assert 0.76e6 < learnable < 0.80e6
    net = create_network("densenet_bc")
    assert sum(net.join(b) == "concat" for b in net.blobs()) == 3 * 6
    assert create_network("mlp", features=20).input_shape == (20,)
    with pytest.raises(MorphnasError, match="option depth must be"):
        create_network("densenet_bc", depth=41)
