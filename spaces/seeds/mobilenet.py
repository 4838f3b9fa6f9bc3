"""MobileNetV2 seeds in the IR, with torchvision's parameter names, for CIFAR-sized (and digits) input.

Why a builder and not ``torchvision:mobilenet_v2``: for 32x32 images the ImageNet stem (stride 2) and
the five stride-2 stages leave a 1x1 map after stage 4; the CIFAR variant used in the literature
keeps the stem at stride 1 and the first stride-2 stage at stride 1 too. Building it here also
records the inverted-residual blocks in ``net.meta["blocks"]`` (``out`` is the residual sum: V2 has no
activation after it), which ``where: {blocks: ...}`` filters and the drawings use.

Names follow torchvision: the stem is ``features.0.{0,1,2}`` (conv, BN, ReLU6); block ``i`` is
``features.{i}.conv.{j}`` with ``j`` the expand ConvBNReLU (``.0``, ``.1``, ``.2``), the depthwise one,
the projection conv and its BN; the identity shortcut is ``features.{i}.shortcut``; the last 1x1
ConvBNReLU is ``features.{n+1}``; the head is ``avgpool``, ``flatten``, ``classifier.1`` (the linear).
"""
from __future__ import annotations

import torch

from morphnas.morphism.errors import SpecError
from morphnas.morphism.graph import Network
from morphnas.morphism.layers import Activation, BatchNorm2d, Conv2d, Flatten, GlobalAvgPool, Identity, Linear
from morphnas.spaces.seeds.catalog import register_seed

# (expansion t, channels c, repeats n, first stride s): the paper's table, CIFAR strides (s=1 at 24).
CIFAR_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
# A few-thousand-parameter version for 1x8x8 digits (tests and quick searches).
TINY_SETTINGS: tuple[tuple[int, int, int, int], ...] = ((1, 8, 1, 1), (4, 12, 2, 2), (4, 16, 2, 1))


def _divisible(v: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: round to a multiple of ``divisor``, never below 90%."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _cbr(net: Network, src: str, prefix: str, cin: int, cout: int, k: int, stride: int, groups: int,
         gen: torch.Generator) -> str:
    """conv k x k (same padding, no bias) -> BN -> ReLU6, named ``prefix.0/.1/.2``; returns the output blob."""
    net.add_edge(src, f"{prefix}.c", Conv2d(cin, cout, k, stride, k // 2, groups=groups), f"{prefix}.0", gen=gen)
    net.add_edge(f"{prefix}.c", f"{prefix}.b", BatchNorm2d(cout), f"{prefix}.1", gen=gen)
    net.add_edge(f"{prefix}.b", f"{prefix}.out", Activation("relu6"), f"{prefix}.2")
    return f"{prefix}.out"


def inverted_residual(net: Network, src: str, name: str, cin: int, cout: int, stride: int, t: int,
                      gen: torch.Generator, stage: int, index: int) -> str:
    """[1x1 expand] -> 3x3 depthwise -> 1x1 project -> BN (+ identity when shapes allow). Returns the output."""
    hidden = cin * t
    cur, j = src, 0
    if t != 1:
        cur = _cbr(net, cur, f"{name}.conv.{j}", cin, hidden, 1, 1, 1, gen)
        j += 1
    cur = _cbr(net, cur, f"{name}.conv.{j}", hidden, hidden, 3, stride, hidden, gen)
    net.add_edge(cur, f"{name}.p", Conv2d(hidden, cout, 1), f"{name}.conv.{j + 1}", gen=gen)
    residual = stride == 1 and cin == cout
    out = f"{name}.sum" if residual else f"{name}.out"
    net.add_edge(f"{name}.p", out, BatchNorm2d(cout), f"{name}.conv.{j + 2}", gen=gen)
    if residual:
        shortcut = net.add_edge(src, out, Identity(), f"{name}.shortcut")
        net.meta.setdefault("blocks", []).append({"name": name, "stage": stage, "index": index, "in": src,
                                                  "sum": out, "out": out, "shortcut": shortcut})
    return out


@register_seed("mobilenet_v2", "MobileNetV2 (CIFAR strides) for 3x32x32 images")
def mobilenet_v2(num_classes: int = 10, width_mult: float = 1.0, in_channels: int = 3, input_size: int = 32,
                 settings: tuple[tuple[int, int, int, int], ...] = CIFAR_SETTINGS, stem_channels: int = 32,
                 last_channel: int = 1280, seed: int = 0) -> Network:
    """MobileNetV2 (Sandler et al.) with a stride-1 stem; ``settings`` rows are (t, c, n, s)."""
    for k, v in {"num_classes": num_classes, "in_channels": in_channels, "input_size": input_size,
                 "stem_channels": stem_channels, "last_channel": last_channel}.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise SpecError(f"mobilenet_v2: option {k} must be a positive integer, got {v!r}")
    if not width_mult > 0:
        raise SpecError(f"mobilenet_v2: option width_mult must be > 0, got {width_mult!r}")
    rows = [tuple(int(x) for x in r) for r in settings]
    if not rows or any(len(r) != 4 or min(r) < 1 for r in rows):
        raise SpecError(f"mobilenet_v2: option settings must be rows (t, c, n, s) of positive integers, got {settings!r}")
    gen = torch.Generator().manual_seed(seed)
    net = Network((in_channels, input_size, input_size))
    cin = _divisible(stem_channels * width_mult)
    src = _cbr(net, net.input_blob, "features.0", in_channels, cin, 3, 1, 1, gen)
    i, stage, size = 1, 1, input_size
    for t, c, n, s in rows:
        cout = _divisible(c * width_mult)
        for b in range(n):
            stride = s if b == 0 else 1
            if stride > 1:
                stage, size = stage + 1, (size - 1) // stride + 1
            src = inverted_residual(net, src, f"features.{i}", cin, cout, stride, t, gen, stage, b)
            cin, i = cout, i + 1
    last = _divisible(last_channel * max(1.0, width_mult))
    src = _cbr(net, src, f"features.{i}", cin, last, 1, 1, 1, gen)
    net.add_edge(src, "head.pool", GlobalAvgPool(), "avgpool")
    net.add_edge("head.pool", "head.flat", Flatten(), "flatten")
    net.add_edge("head.flat", net.output_blob, Linear(last, num_classes), "classifier.1", gen=gen)
    return net


register_seed("tiny_mobilenet", "MobileNetV2-style net (3 stages) for 1x8x8 digits", in_channels=1, input_size=8,
              settings=TINY_SETTINGS, stem_channels=8, last_channel=32)(mobilenet_v2)
