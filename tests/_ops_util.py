"""Helpers shared by the tests: perturbed test networks, preservation checks, and the paper-convention
counts (params, MACs, depth) computed independently of ``spaces/counting.py``."""
from __future__ import annotations

from morphnas.morphism.graph import Network
# The tolerances and comparisons are the conformance check's own (check_conformance uses them too).
from morphnas.morphism.ops._conformance import F32_TOL, F64_TOL, rel_err, same_tensors  # noqa: F401
from morphnas.morphism.perturb import perturb
from morphnas.spaces.registry import create_network
from morphnas.spaces.seeds.builders import imagenet_resnet

# Seeds the conformance suite runs on, each small enough to check many sites quickly. resnet20 runs
# on 8x8 inputs (same layers, 1/16 of the pixels); the ImageNet-style net is resnet18's layout on
# 32x32 inputs with 10 classes (stride-2 stem, max pool, four stages, projections at 64..512).
NETS = {
    "tiny_resnet": lambda: create_network("tiny_resnet"),
    "small_cnn": lambda: create_network("small_cnn"),
    "resnet20": lambda: create_network("resnet20", input_size=8),
    "resnet18": lambda: imagenet_resnet(18, num_classes=10, input_size=32),
    "tiny_densenet": lambda: create_network("tiny_densenet"),     # concatenations
    "tiny_mobilenet": lambda: create_network("tiny_mobilenet"),   # depthwise convs, inverted residuals
    "mlp": lambda: create_network("mlp", features=12, hidden=(16, 8)),   # dense layers only
    # tokens, LayerNorm, attention, class token, position embedding (5 tokens of 16 features)
    "tiny_vit": lambda: create_network("tiny_vit", input_size=14, patch=7, dim=16, mlp_dim=32),
}


def perturbed_net(name: str, seed: int = 0) -> Network:
    """A seed network with random BN statistics/affine and activation slopes (like a trained one)."""
    return perturb(NETS[name](), seed=seed)


# ---------------------------------------------------------------------------------- counting by definition
# Expected params / MACs / depth for the CLI and describe tests, computed here from the layer specs
# (hyper-parameters only: no tensors, no spaces/counting.py), so a wrong count there cannot agree with
# itself. The convention is the paper's (docs/design.md, "Paper facts").

def spec_params(net: Network) -> int:
    """Params from each layer's hyper-parameters: conv/FC weights and biases, BN gamma, beta and both
    running statistics, PReLU slopes, the parametric activation's ``a``."""
    from morphnas.morphism.layers import BatchNorm2d, Conv2d, Linear, PAct, PReLU
    total = 0
    for e in net.edges():
        s = e.layer
        if isinstance(s, Conv2d):
            total += s.out_channels * (s.in_channels // s.groups) * s.kernel_size ** 2 + s.out_channels * s.bias
        elif isinstance(s, Linear):
            total += s.out_features * s.in_features + s.out_features * s.bias
        elif isinstance(s, BatchNorm2d):
            total += 4 * s.num_features
        elif isinstance(s, PReLU):
            total += s.num_parameters
        elif isinstance(s, PAct):
            total += s.channels if s.per_channel else 1
        else:
            assert not s.param_shapes(), f"spec_params does not know layer {s.kind!r} ({e.name}): add it"
    return total


def spec_macs(net: Network) -> int:
    """Multiply-accumulates of conv and FC layers: one per weight per output pixel of the edge's blob."""
    from morphnas.morphism.layers import Conv2d, Linear
    shapes = net.shapes()
    total = 0
    for e in net.edges():
        s = e.layer
        if isinstance(s, Conv2d):
            c, h, w = shapes[e.dst]
            assert c == s.out_channels
            total += s.out_channels * (s.in_channels // s.groups) * s.kernel_size ** 2 * h * w
        elif isinstance(s, Linear):
            total += s.out_features * s.in_features
    return total


def spec_depth(net: Network) -> int:
    """Conv and FC layers on the longest input -> output path (memoised depth-first search)."""
    from morphnas.morphism.layers import Conv2d, Linear
    memo: dict[str, int] = {}

    def longest(blob: str) -> int:
        if blob not in memo:
            memo[blob] = 0 if blob == net.input_blob else max(
                (longest(e.src) + isinstance(e.layer, (Conv2d, Linear)) for e in net.in_edges(blob)), default=-10**9)
        return memo[blob]
    return longest(net.output_blob)


def cifar_resnet_params(depth: int, width: int, in_channels: int, classes: int) -> int:
    """Closed form of He et al.'s CIFAR ResNet as built here: conv3-BN-PReLU stem, (depth-2)/6 basic
    blocks per stage at width, 2x, 4x (conv3-BN-PReLU-conv3-BN + shortcut, PReLU), 1x1 conv + BN
    projections where a stage downsamples, FC with bias. BN: 4 per channel; PReLU: 1 per channel."""
    n = (depth - 2) // 6
    total = in_channels * width * 9 + 4 * width + width
    cin = width
    for s in range(3):
        c = width * 2 ** s
        for b in range(n):
            total += cin * c * 9 + 4 * c + c + c * c * 9 + 4 * c + c
            if cin != c:
                total += cin * c + 4 * c
            cin = c
    return total + cin * classes + classes


def cifar_resnet_macs(depth: int, width: int, in_channels: int, size: int, classes: int) -> int:
    """Closed-form MACs of the same network at ``size`` x ``size`` inputs (stages at size, /2, /4)."""
    n = (depth - 2) // 6
    total = in_channels * width * 9 * size * size
    cin = width
    for s in range(3):
        c, px = width * 2 ** s, (size // 2 ** s) ** 2
        for b in range(n):
            total += (cin * c * 9 + c * c * 9) * px + (cin * c * px if cin != c else 0)
            cin = c
    return total + cin * classes
