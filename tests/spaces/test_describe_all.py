"""``morphnas describe NAME --classes 10|100 --json`` for every seed and paper variant.

The expected counts are derived here from each architecture's definition (closed forms for the CIFAR
ResNets, the plain CNNs and the morphed paths; torchvision's own modules for the ImageNet ResNets),
never from spaces/counting.py, so a counting bug cannot agree with itself.
"""
import functools
import json
import re

import pytest
import torch
import torchvision
from _ops_util import cifar_resnet_macs, cifar_resnet_params
from torch import nn

from morphnas.morphism.serialize import save_network
from morphnas.search.cli import main
from morphnas.spaces.registry import all_names, create_seed

CIFAR = {"tiny_resnet": (8, 8, 1, 8), "tiny_resnet32": (8, 16, 3, 32)}   # depth, width, channels, size
PLAIN = {"small_cnn": ((16, 32), 1, 8), "small_cnn32": ((32, 64, 128), 3, 32)}  # widths, channels, size
IMAGENET_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


@functools.lru_cache(maxsize=None)
def torchvision_counts(depth: int, classes: int) -> tuple[int, int]:
    """Params (+ BN running statistics) and conv/linear MACs of torchvision's resnet<depth> at 224x224."""
    tv = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=classes).eval()
    params = sum(p.numel() for p in tv.parameters()) + sum(
        m.running_mean.numel() + m.running_var.numel() for m in tv.modules() if isinstance(m, nn.BatchNorm2d))
    macs = []
    for m in tv.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(lambda m, i, out: macs.append(out[0].numel() * m.weight[0].numel()))
    with torch.no_grad():
        tv(torch.zeros(1, 3, 224, 224))
    return params, sum(macs)


# Issue 14's seeds: counted on the compiled torch module (hooks), not by spaces/counting.py.
MODULE_COUNTED = {"densenet_bc": 40, "tiny_densenet": 11, "mobilenet_v2": 53, "tiny_mobilenet": 17, "mlp": 3}


def module_expected(name: str, classes: int) -> dict:
    """Params (+ BN running statistics) and conv/linear MACs of the compiled seed (torch modules and
    hooks); depth is the architecture's (DenseNet-BC-40 has 40 layers; MobileNetV2: stem, 2 + 16 x 3 block convs,
    the last 1x1 conv and the FC); blocks and identities from the recorded blocks."""
    from morphnas.morphism.compile import compile_network
    net = create_seed(name, num_classes=classes)
    mod = compile_network(net).eval()
    params = sum(p.numel() for p in mod.parameters()) + sum(
        m.running_mean.numel() + m.running_var.numel() for m in mod.modules() if isinstance(m, nn.BatchNorm2d))
    macs = []
    for m in mod.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(lambda m, i, out: macs.append(out[0].numel() * m.weight[0].numel()))
    with torch.no_grad():
        mod(torch.zeros(1, *net.input_shape))
    blocks = len(net.meta.get("blocks", []))
    return {"params": params, "flops": sum(macs), "depth": MODULE_COUNTED[name], "stages": [], "blocks": blocks,
            "identity": sum(e.layer.kind == "identity" for e in net.edges())}


def seed_expected(name: str, classes: int) -> dict:
    """params, flops, depth, blocks (per stage, with their channels and pixels) of a seed network."""
    if name in PLAIN:
        widths, cin, size = PLAIN[name]
        params = macs = 0
        for i, w in enumerate(widths):      # conv3 (no bias) - BN - ReLU, a 2x2 max pool between layers
            params += cin * w * 9 + 4 * w
            macs += cin * w * 9 * size * size
            cin, size = w, size // 2 if i + 1 < len(widths) else size
        return {"params": params + cin * classes + classes, "flops": macs + cin * classes,
                "depth": len(widths) + 1, "stages": []}
    m = re.fullmatch(r"resnet(\d+)", name)
    depth = int(m.group(1)) if m else CIFAR[name][0]
    if depth in IMAGENET_BLOCKS:
        params, macs = torchvision_counts(depth, classes)
        stages = [(n, 64 * 2 ** s, (56 // 2 ** s) ** 2) for s, n in enumerate(IMAGENET_BLOCKS[depth])]
        return {"params": params, "flops": macs, "depth": depth, "stages": stages}
    _, width, cin, size = CIFAR.get(name, (depth, 16, 3, 32))
    n = (depth - 2) // 6
    return {"params": cifar_resnet_params(depth, width, cin, classes),
            "flops": cifar_resnet_macs(depth, width, cin, size, classes), "depth": depth,
            "stages": [(n, width * 2 ** s, (size // 2 ** s) ** 2) for s in range(3)]}


def vit_expected(classes: int, size: int = 28, patch: int = 7, d: int = 32, depth: int = 2, mlp: int = 64) -> dict:
    """tiny_vit by its hyper-parameters: patch conv (with bias), class token, position embedding,
    per block two LayerNorms, attention (q/k/v/out with biases), fc1, fc2; the final LayerNorm, the
    head. MACs: the conv per patch, per block 4 projections per token plus the two N^2 products,
    the MLP per token; depth: conv, 2 per attention + 2 MLP linears per block, head."""
    n = (size // patch) ** 2 + 1
    block = 4 * d + (4 * d * d + 4 * d) + (d * mlp + mlp) + (mlp * d + d)
    params = (patch * patch * d + d) + d + n * d + depth * block + 2 * d + (d * classes + classes)
    flops = patch * patch * d * (n - 1) + depth * (4 * n * d * d + 2 * n * n * d + 2 * n * d * mlp) + d * classes
    return {"params": params, "flops": flops, "depth": 1 + 4 * depth + 1, "blocks": 0, "identity": 2 * depth}


def expected(name: str, classes: int) -> dict:
    """A seed's counts, or for ``morph<d>_<k1>c<k2>[_2branch][_half]`` the seed's plus one
    conv k1 - BN - PReLU - conv k2 - BN path (two with _2branch) at the block width in every block of
    index >= 1 (odd indices with _half); each morphed path replaces an identity shortcut with _2branch."""
    if name in MODULE_COUNTED:
        return module_expected(name, classes)
    if name == "tiny_vit":
        return vit_expected(classes)
    m = re.fullmatch(r"morph(\d+)_(\d+)c(\d+)(_2branch)?(_half)?", name)
    e = seed_expected(f"resnet{m.group(1)}" if m else name, classes)
    blocks = sum(n for n, _, _ in e["stages"])
    e["blocks"], e["identity"] = blocks, blocks - (len(e["stages"]) - 1)   # the first block of stages 2.. projects
    if m:
        k1, k2, branches = int(m.group(2)), int(m.group(3)), 2 if m.group(4) else 1
        for n, c, px in e["stages"]:
            morphed = len([i for i in range(1, n) if not m.group(5) or i % 2 == 1])
            e["params"] += morphed * branches * (c * c * (k1 * k1 + k2 * k2) + 4 * c + c + 4 * c)
            e["flops"] += morphed * branches * c * c * (k1 * k1 + k2 * k2) * px
            if branches == 2:
                e["identity"] -= morphed
    return e


def describe(capsys, *argv):
    rc = main(["describe", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_expectations_match_the_paper_figures():
    # The derivations above reproduce the published-style figures (BENCHMARKS.md, spaces table).
    assert expected("resnet20", 10)["params"] == 274_730 and expected("morph20_1c1", 10)["params"] == 298_250
    assert expected("resnet110", 10)["flops"] == 253_149_824 and expected("morph20_3c3", 10)["flops"] == 69_124_736
    assert expected("small_cnn", 10)["params"] == 5_274 and expected("tiny_resnet", 10)["params"] == 20_266


@pytest.mark.parametrize("classes", [10, 100])
@pytest.mark.parametrize("name", all_names())
def test_describe_every_name(capsys, name, classes):
    rc, out, err = describe(capsys, name, "--classes", str(classes), "--json")
    assert rc == 0, err
    d = json.loads(out)
    want = expected(name, classes)
    assert d["name"] == name
    assert d["output_shape"] == [classes]
    assert (d["params"], d["flops"], d["depth"]) == (want["params"], want["flops"], want["depth"])
    assert d["params_mb"] == 4 * want["params"] / 2**20
    assert d["blocks"] == want["blocks"]
    # tiny_vit records no ResNet-style blocks but has two identity shortcuts per transformer block
    assert d["layers"].get("identity", 0) == (want["identity"] if want["blocks"] or name == "tiny_vit" else 0)


def test_describe_draw_and_saved_network(capsys, tmp_path):
    rc, out, err = describe(capsys, "morph20_1c1", "--draw", str(tmp_path / "m.png"))
    assert rc == 0, err
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    save_network(create_seed("tiny_resnet"), tmp_path / "net")
    rc, out, err = describe(capsys, str(tmp_path / "net"), "--json")
    assert rc == 0, err
    assert json.loads(out)["params"] == cifar_resnet_params(8, 8, 1, 10)


def test_describe_bad_names_exit_2(capsys):
    rc, out, err = describe(capsys, "morph20_1c1_2brnch", "--json")
    assert rc == 2 and "did you mean '_2branch'" in err and len(err.strip().splitlines()) == 1
    rc, out, err = describe(capsys, "resnet21")
    assert rc == 2 and "did you mean" in err
    rc, out, err = describe(capsys, "morph20_1c1", "--draw", "x.pdf")
    assert rc == 2 and ".png or .svg" in err
