"""DenseNet-BC seeds in the IR (Huang et al.), with torchvision's parameter names, for CIFAR-sized input.

Why here: DenseNet is the network made of channel concatenations, so it is the seed on which
``widen`` grows one layer's growth slice, ``insert_branch`` adds a part to a concatenation and
``concat_skip`` adds more. Built with concat joins (:mod:`morphnas.morphism.joins`): dense layer
``j`` of a block reads concatenation ``K_{j-1}`` (``K_0`` is the block input) and writes
``K_j = concat(K_{j-1}, new features)``: the identity parts ``...denselayer{j}.keep`` (from
``K_{j-1}``) and ``...denselayer{j}.add`` (from the new features ``...denselayer{j}.new``, so each
layer's growth is a blob of its own that ``widen`` can grow) are the two in-edges of ``K_j``.

Layout (CIFAR): a 3x3 stem conv to ``2 * growth`` channels; ``blocks`` dense blocks of
``(depth - 4) / 6`` bottleneck layers (BN-ReLU-conv1x1 to ``4 * growth``, BN-ReLU-conv3x3 to
``growth``); between blocks a transition (BN-ReLU-conv1x1 with compression 0.5, 2x2 avg pool);
then BN-ReLU, global average pool, linear ``classifier``.
"""
from __future__ import annotations

import torch

from morphnas.morphism.errors import SpecError
from morphnas.morphism.graph import Network
from morphnas.morphism.joins import CONCAT
from morphnas.morphism.layers import (
    Activation,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    GlobalAvgPool,
    Identity,
    Linear,
)
from morphnas.spaces.seeds.catalog import register_seed


def dense_layer(net: Network, src: str, name: str, cin: int, growth: int, bn_size: int,
                gen: torch.Generator) -> str:
    """BN-ReLU-conv1x1-BN-ReLU-conv3x3 on ``src``, concatenated after ``src``; returns the concat blob."""
    mid = bn_size * growth
    net.add_edge(src, f"{name}.n1", BatchNorm2d(cin), f"{name}.norm1", gen=gen)
    net.add_edge(f"{name}.n1", f"{name}.r1", Activation("relu"), f"{name}.relu1")
    net.add_edge(f"{name}.r1", f"{name}.c1", Conv2d(cin, mid, 1), f"{name}.conv1", gen=gen)
    net.add_edge(f"{name}.c1", f"{name}.n2", BatchNorm2d(mid), f"{name}.norm2", gen=gen)
    net.add_edge(f"{name}.n2", f"{name}.r2", Activation("relu"), f"{name}.relu2")
    out = net.add_blob(f"{name}.cat", join=CONCAT)
    net.add_edge(src, out, Identity(), f"{name}.keep")
    net.add_edge(f"{name}.r2", f"{name}.new", Conv2d(mid, growth, 3, 1, 1), f"{name}.conv2", gen=gen)
    net.add_edge(f"{name}.new", out, Identity(), f"{name}.add")
    return out


@register_seed("densenet_bc", "DenseNet-BC-40 (growth 12) for 3x32x32 images", depth=40, growth=12)
@register_seed("tiny_densenet", "DenseNet-BC-11 (growth 4, 2 blocks) for 1x8x8 digits", depth=11, growth=4, blocks=2,
               in_channels=1, input_size=8)
def densenet_bc(depth: int = 40, growth: int = 12, num_classes: int = 10, in_channels: int = 3,
                input_size: int = 32, blocks: int = 3, bn_size: int = 4, compression: float = 0.5,
                seed: int = 0) -> Network:
    """DenseNet-BC-``depth`` with growth rate ``growth`` (depth 40, k 12: about 0.18M parameters)."""
    for k, v in {"growth": growth, "num_classes": num_classes, "in_channels": in_channels,
                 "input_size": input_size, "blocks": blocks, "bn_size": bn_size}.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise SpecError(f"densenet_bc: option {k} must be a positive integer, got {v!r}")
    n, rem = divmod(depth - (blocks + 1), 2 * blocks)
    if rem or n < 1:
        raise SpecError(f"densenet_bc: option depth must be 2 * {blocks} * n + {blocks + 1} for {blocks} blocks "
                        f"(e.g. {2 * blocks * 6 + blocks + 1}), got {depth}")
    if not 0 < compression <= 1:
        raise SpecError(f"densenet_bc: option compression must satisfy 0 < compression <= 1, got {compression!r}")
    if input_size < 2 ** (blocks - 1):
        raise SpecError(f"densenet_bc: option input_size {input_size} is too small for {blocks} blocks "
                        f"(each transition halves it); use input_size >= {2 ** (blocks - 1)}")
    gen = torch.Generator().manual_seed(seed)
    net = Network((in_channels, input_size, input_size))
    c = 2 * growth
    net.add_edge(net.input_blob, "stem.out", Conv2d(in_channels, c, 3, 1, 1), "features.conv0", gen=gen)
    src = "stem.out"
    for b in range(1, blocks + 1):
        block_in = src
        for j in range(1, n + 1):
            src = dense_layer(net, src, f"features.denseblock{b}.denselayer{j}", c, growth, bn_size, gen)
            c += growth
        net.meta.setdefault("blocks", []).append({"name": f"features.denseblock{b}", "stage": b, "index": 0,
                                                  "in": block_in, "sum": src, "out": src, "shortcut": None})
        if b < blocks:
            t = f"features.transition{b}"
            cout = max(1, int(c * compression))
            net.add_edge(src, f"{t}.n", BatchNorm2d(c), f"{t}.norm", gen=gen)
            net.add_edge(f"{t}.n", f"{t}.r", Activation("relu"), f"{t}.relu")
            net.add_edge(f"{t}.r", f"{t}.c", Conv2d(c, cout, 1), f"{t}.conv", gen=gen)
            net.add_edge(f"{t}.c", f"{t}.out", AvgPool2d(2, 2), f"{t}.pool")
            src, c = f"{t}.out", cout
    net.add_edge(src, "head.n", BatchNorm2d(c), "features.norm5", gen=gen)
    net.add_edge("head.n", "head.r", Activation("relu"), "features.relu5")
    net.add_edge("head.r", "head.pool", GlobalAvgPool(), "avgpool")
    net.add_edge("head.pool", "head.flat", Flatten(), "flatten")
    net.add_edge("head.flat", net.output_blob, Linear(c, num_classes), "classifier", gen=gen)
    return net
