"""Helpers shared by the morph-op tests: perturbed test networks and preservation checks."""
from __future__ import annotations

import torch

from morphnas.morphism.graph import Network
from morphnas.morphism.perturb import perturb
from morphnas.morphism.verify import output_diff
from morphnas.spaces.builders import imagenet_resnet
from morphnas.spaces.registry import create_network

F64_TOL = 1e-10
F32_TOL = 1e-5

# Seeds the conformance suite runs on, each small enough to check many sites quickly. resnet20 runs
# on 8x8 inputs (same layers, 1/16 of the pixels); the ImageNet-style net is resnet18's layout on
# 32x32 inputs with 10 classes (stride-2 stem, max pool, four stages, projections at 64..512).
NETS = {
    "tiny_resnet": lambda: create_network("tiny_resnet"),
    "small_cnn": lambda: create_network("small_cnn"),
    "resnet20": lambda: create_network("resnet20", input_size=8),
    "resnet18": lambda: imagenet_resnet(18, num_classes=10, input_size=32),
}


def perturbed_net(name: str, seed: int = 0) -> Network:
    """A seed network with random BN statistics/affine and activation slopes (like a trained one)."""
    return perturb(NETS[name](), seed=seed)


def rel_err(a: Network, b: Network, dtype: torch.dtype, batch: int = 2, seed: int = 0) -> float:
    return output_diff(a, b, dtype=dtype, batch=batch, seed=seed).rel_err


def same_tensors(a: Network, b: Network) -> bool:
    """Same edges (names, ends, layers) and bit-identical tensors."""
    if [(e.name, e.src, e.dst, e.layer) for e in a.edges()] != [(e.name, e.src, e.dst, e.layer) for e in b.edges()]:
        return False
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
