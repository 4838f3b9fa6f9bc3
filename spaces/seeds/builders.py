"""Builders of seed networks in the IR, named like torchvision (``conv1``, ``layer1.0.conv1``, ``fc``).

Blob names follow the edges: a block ``layer{s}.{b}`` reads blob ``layer{s}.{b-1}.out`` (or the
previous stage's last block / the stem's ``stem.out``), sums its residual branch and shortcut in
``layer{s}.{b}.sum`` and writes ``layer{s}.{b}.out``. The identity shortcut edge of a block is
``layer{s}.{b}.shortcut``; a projection shortcut is ``layer{s}.{b}.downsample.0`` (1x1 conv) and
``.downsample.1`` (BN). ``net.meta["blocks"]`` lists every block as
``{"name", "stage", "index", "in", "sum", "out", "shortcut"}`` so spaces and ops can find them.
"""
from __future__ import annotations

import torch

from morphnas.morphism.errors import SpecError
from morphnas.morphism.graph import Network
from morphnas.morphism.layers import (
    Activation,
    BatchNorm2d,
    Conv2d,
    Flatten,
    GlobalAvgPool,
    Identity,
    Linear,
    MaxPool2d,
    PReLU,
)
from morphnas.spaces.seeds.catalog import register_seed


def _positive(where: str, **values: int) -> None:
    """Reject non-positive sizes with a message naming the option (they come from users' overrides)."""
    for k, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise SpecError(f"{where}: option {k} must be a positive integer, got {v!r}")


def _act(kind: str, channels: int):
    return PReLU(channels) if kind == "prelu" else Activation(kind)


def _conv_bn_act(net: Network, src: str, prefix: str, blob: str, cin: int, cout: int, k: int, stride: int,
                 act: str | None, gen: torch.Generator, idx: str = "1") -> str:
    net.add_edge(src, f"{blob}.c{idx}", Conv2d(cin, cout, k, stride, k // 2), f"{prefix}conv{idx}", gen=gen)
    out = f"{blob}.b{idx}"
    net.add_edge(f"{blob}.c{idx}", out, BatchNorm2d(cout), f"{prefix}bn{idx}", gen=gen)
    if act:
        net.add_edge(out, f"{blob}.a{idx}", _act(act, cout), f"{prefix}{act}{idx}", gen=gen)
        out = f"{blob}.a{idx}"
    return out


def basic_block(net: Network, src: str, name: str, cin: int, cout: int, stride: int, act: str,
                gen: torch.Generator, stage: int, index: int) -> str:
    """conv3-BN-act-conv3-BN (+ shortcut) -> act. Returns the output blob."""
    a = _conv_bn_act(net, src, f"{name}.", name, cin, cout, 3, stride, act, gen, "1")
    net.add_edge(a, f"{name}.c2", Conv2d(cout, cout, 3, 1, 1), f"{name}.conv2", gen=gen)
    s = f"{name}.sum"
    net.add_edge(f"{name}.c2", s, BatchNorm2d(cout), f"{name}.bn2", gen=gen)
    if stride != 1 or cin != cout:
        net.add_edge(src, f"{name}.ds", Conv2d(cin, cout, 1, stride, 0), f"{name}.downsample.0", gen=gen)
        net.add_edge(f"{name}.ds", s, BatchNorm2d(cout), f"{name}.downsample.1", gen=gen)
        shortcut = None
    else:
        shortcut = net.add_edge(src, s, Identity(), f"{name}.shortcut")
    out = f"{name}.out"
    net.add_edge(s, out, _act(act, cout), f"{name}.{act}2", gen=gen)
    net.meta.setdefault("blocks", []).append(
        {"name": name, "stage": stage, "index": index, "in": src, "sum": s, "out": out, "shortcut": shortcut})
    return out


@register_seed("tiny_resnet", "ResNet-8 for 1x8x8 digits (width 8)", depth=8, width=8, in_channels=1, input_size=8)
@register_seed("tiny_resnet32", "ResNet-8 for 3x32x32 images (width 16)", depth=8, width=16, in_channels=3,
               input_size=32)
def cifar_resnet(depth: int = 20, num_classes: int = 10, width: int = 16, in_channels: int = 3,
                 input_size: int = 32, act: str = "prelu", seed: int = 0) -> Network:
    """He et al.'s CIFAR ResNet as the modular-morphing paper trains it: 3 stages of (depth-2)/6
    basic blocks at width, 2x, 4x channels; PReLU everywhere; projection shortcuts when
    downsampling; no conv bias; global average pool; FC."""
    if (depth - 2) % 6 or depth < 8:
        raise SpecError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
    _positive("cifar_resnet", num_classes=num_classes, width=width, in_channels=in_channels, input_size=input_size)
    n = (depth - 2) // 6
    gen = torch.Generator().manual_seed(seed)
    net = Network((in_channels, input_size, input_size))
    src = _conv_bn_act(net, net.input_blob, "", "stem", in_channels, width, 3, 1, act, gen)
    cin = width
    for s in range(3):
        cout = width * 2 ** s
        for b in range(n):
            stride = 2 if (s > 0 and b == 0) else 1
            src = basic_block(net, src, f"layer{s + 1}.{b}", cin, cout, stride, act, gen, s + 1, b)
            cin = cout
    _head(net, src, cin, num_classes, gen)
    return net


@register_seed("resnet18", "ImageNet ResNet-18 (torchvision layout)", depth=18)
@register_seed("resnet34", "ImageNet ResNet-34 (torchvision layout)", depth=34)
def imagenet_resnet(depth: int = 18, num_classes: int = 1000, input_size: int = 224, act: str = "relu",
                    seed: int = 0) -> Network:
    """torchvision's resnet18/34 (basic blocks [2,2,2,2] / [3,4,6,3]) with its parameter names."""
    layers = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
    if depth not in layers:
        raise SpecError(f"ImageNet ResNet depth must be 18 or 34, got {depth}")
    _positive("imagenet_resnet", num_classes=num_classes, input_size=input_size)
    gen = torch.Generator().manual_seed(seed)
    net = Network((3, input_size, input_size))
    net.add_edge(net.input_blob, "stem.c1", Conv2d(3, 64, 7, 2, 3), "conv1", gen=gen)
    net.add_edge("stem.c1", "stem.b1", BatchNorm2d(64), "bn1", gen=gen)
    net.add_edge("stem.b1", "stem.a1", _act(act, 64), act, gen=gen)
    net.add_edge("stem.a1", "stem.out", MaxPool2d(3, 2, 1), "maxpool")
    src, cin = "stem.out", 64
    for s, nb in enumerate(layers[depth]):
        cout = 64 * 2 ** s
        for b in range(nb):
            stride = 2 if (s > 0 and b == 0) else 1
            src = basic_block(net, src, f"layer{s + 1}.{b}", cin, cout, stride, act, gen, s + 1, b)
            cin = cout
    _head(net, src, cin, num_classes, gen)
    return net


@register_seed("small_cnn", "plain CNN for 1x8x8 digits", in_channels=1, input_size=8)
@register_seed("small_cnn32", "plain CNN for 3x32x32 images (widths 32/64/128)", in_channels=3, input_size=32,
               widths=(32, 64, 128))
def plain_cnn(num_classes: int = 10, widths: tuple[int, ...] = (16, 32), in_channels: int = 1,
              input_size: int = 8, act: str = "relu", pool_every: int = 1, seed: int = 0) -> Network:
    """A small plain CNN for small images: [conv3-BN-act (-maxpool2)] per width, global pool, FC."""
    widths = tuple(widths)
    if not widths:
        raise SpecError("plain_cnn: option widths must list at least one channel count")
    _positive("plain_cnn", num_classes=num_classes, in_channels=in_channels, input_size=input_size,
              **{f"widths[{i}]": w for i, w in enumerate(widths)})
    gen = torch.Generator().manual_seed(seed)
    net = Network((in_channels, input_size, input_size))
    src, cin, size = net.input_blob, in_channels, input_size
    for i, w in enumerate(widths):
        src = _conv_bn_act(net, src, f"features.{i}.", f"features.{i}", cin, w, 3, 1, act, gen)
        if pool_every and (i + 1) % pool_every == 0 and size >= 4 and i + 1 < len(widths):
            net.add_edge(src, f"features.{i}.pool", MaxPool2d(2), f"features.{i}.pool")
            src, size = f"features.{i}.pool", size // 2
        cin = w
    _head(net, src, cin, num_classes, gen)
    return net


def _head(net: Network, src: str, channels: int, num_classes: int, gen: torch.Generator) -> None:
    net.add_edge(src, "head.pool", GlobalAvgPool(), "avgpool")
    net.add_edge("head.pool", "head.flat", Flatten(), "flatten")
    net.add_edge("head.flat", net.output_blob, Linear(channels, num_classes), "fc", gen=gen)


for _depth in (20, 32, 44, 56, 110):
    register_seed(f"resnet{_depth}", f"CIFAR ResNet-{_depth} (PReLU, projection shortcuts)", depth=_depth)(cifar_resnet)
