"""Counting by the paper's conventions, checked against closed forms written out here from the
architecture (not from the implementation), and against torchvision for ImageNet ResNets."""
import pytest
import torch

from morphnas.spaces.counting import count
from morphnas.spaces.registry import create_seed


def cifar_layers(depth: int, classes: int, morphed: frozenset = frozenset()):
    """The layer list of the paper's CIFAR ResNet: (kind, cin, cout, k, out_res) per weight layer,
    plus ("bn"|"prelu", channels). ``morphed`` = (stage, index) of blocks with a 1c1 path."""
    n = (depth - 2) // 6
    layers = [("conv", 3, 16, 3, 32), ("bn", 16), ("prelu", 16)]
    cin = 16
    for s, (w, r) in enumerate(((16, 32), (32, 16), (64, 8)), start=1):
        for b in range(n):
            layers += [("conv", cin, w, 3, r), ("bn", w), ("prelu", w), ("conv", w, w, 3, r), ("bn", w)]
            if cin != w:  # projection shortcut: 1x1 conv stride 2 + BN
                layers += [("conv", cin, w, 1, r), ("bn", w)]
            if (s, b) in morphed:  # morph_1c1: conv1x1 -> BN -> PReLU -> conv1x1 -> BN on half the shortcut
                layers += [("conv", w, w, 1, r), ("bn", w), ("prelu", w), ("conv", w, w, 1, r), ("bn", w)]
            layers.append(("prelu", w))
            cin = w
    layers.append(("fc", 64, classes))
    return layers


def closed_form(layers):
    params = flops = 0
    for layer in layers:
        kind = layer[0]
        if kind == "conv":
            _, cin, cout, k, r = layer
            params += cin * cout * k * k                 # no bias
            flops += cin * cout * k * k * r * r          # one MAC per weight per output position
        elif kind == "bn":
            params += 4 * layer[1]                       # gamma, beta, running mean, running var
        elif kind == "prelu":
            params += layer[1]                           # one slope per channel
        elif kind == "fc":
            _, fin, fout = layer
            params += fin * fout + fout
            flops += fin * fout
    return params, flops


@pytest.mark.parametrize("classes", [10, 100])
def test_resnet20_matches_the_closed_form(classes):
    params, flops = closed_form(cifar_layers(20, classes))
    c = count(create_seed("resnet20", num_classes=classes))
    assert (c.params, c.flops) == (params, flops)
    assert c.params_mb == pytest.approx(4 * params / 2**20, rel=1e-15)
    assert c.depth == 20
    if classes == 10:  # the paper's "0.27M" ResNet-20
        assert params == 274_730 and flops == 40_813_184


@pytest.mark.parametrize("classes", [10, 100])
def test_morph20_1c1_matches_the_closed_form(classes):
    morphed = frozenset((s, b) for s in (1, 2, 3) for b in (1, 2))
    params, flops = closed_form(cifar_layers(20, classes, morphed))
    c = count(create_seed("morph20_1c1", num_classes=classes))
    assert (c.params, c.flops) == (params, flops)
    assert c.depth == 20  # the new path is no deeper than the residual branch
    base, _ = closed_form(cifar_layers(20, classes))
    assert params - base == sum(2 * (2 * w * w + 9 * w) for w in (16, 32, 64)) == 23_520
    assert 1.0 < params / base < 1.2  # the paper: "typically less than 1.2x"


def test_morph56_and_110_counts_follow_the_same_form():
    for depth in (56, 110):
        n = (depth - 2) // 6
        morphed = frozenset((s, b) for s in (1, 2, 3) for b in range(1, n))
        c = count(create_seed(f"morph{depth}_1c1"))
        assert (c.params, c.flops) == closed_form(cifar_layers(depth, 10, morphed))
        assert count(create_seed(f"resnet{depth}")).depth == depth


@pytest.mark.parametrize("depth", [18])
def test_imagenet_resnet_counts_equal_torchvision_measured_independently(depth):
    import torchvision
    model = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    learnable = sum(p.numel() for p in model.parameters())
    stats = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    macs = []

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            macs.append(out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1])
        elif isinstance(mod, torch.nn.Linear):
            macs.append(mod.in_features * mod.out_features)

    for m in model.modules():
        m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    c = count(create_seed(f"resnet{depth}"))
    assert c.params == learnable + stats == 11_699_112
    assert c.flops == sum(macs) == 1_814_073_344
    assert c.depth == depth


def test_small_networks():
    c = count(create_seed("small_cnn"))
    # conv 1->16 (8x8), BN, ReLU, maxpool, conv 16->32 (4x4), BN, ReLU, GAP, fc 32->10
    assert c.params == 1 * 16 * 9 + 4 * 16 + 16 * 32 * 9 + 4 * 32 + 32 * 10 + 10
    assert c.flops == 1 * 16 * 9 * 64 + 16 * 32 * 9 * 16 + 32 * 10
    assert c.depth == 3
    assert c.to_json() == {"params": c.params, "params_mb": c.params_mb, "flops": c.flops, "depth": 3}
