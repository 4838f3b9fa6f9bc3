"""Counting by the modular-morphing paper's conventions (docs/design.md, "Paper facts").

* params: every learnable tensor and BN running statistic — conv and FC weights, biases, BN
  gamma/beta/running mean/running var, PReLU slopes, parametric-activation ``a`` (integer
  counters such as ``num_batches_tracked`` are not parameters);
* params_mb = 4 bytes x params / 2**20;
* flops = multiply-accumulates of conv and FC layers only, at the network's input size. Extended
  beyond the paper's ResNets: a grouped or depthwise conv counts ``in_channels / groups`` MACs per
  output value (what it computes); joins (sum, concat, product), slices, shuffles, pooling,
  normalisation (BN, channel LayerNorm), layer scale and activations count zero, as BN and
  activations always did in the paper's convention, so FLOPs stay comparable across the zoo;
* transformers: a linear layer on a token blob ``(N, F)`` counts its MACs once per token; an
  attention counts its q, k, v and output projections per token (``4·N·dim·heads·head_dim``) plus
  the two ``N²`` products, scores ``q kᵀ`` and ``softmax · v`` (``2·N²·heads·head_dim``); LayerNorm,
  softmax, position embeddings and class tokens count zero, like BN;
* depth = conv and FC layers on the longest input -> output path (ResNet-20 has depth 20; a
  morphed block's extra paths are no longer than its residual branch, so morph20_1c1 stays 20).
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from morphnas.morphism.graph import Network
from morphnas.morphism.kinds.attention import Attention
from morphnas.morphism.layers import Conv2d, Linear


@dataclass(frozen=True)
class Counts:
    params: int
    params_mb: float
    flops: int
    depth: int = 0

    def to_json(self) -> dict:
        return {"params": self.params, "params_mb": self.params_mb, "flops": self.flops, "depth": self.depth}


def count_params(net: Network) -> int:
    return sum(t.numel() for p in net.params.values() for t in p.values() if t.is_floating_point())


def count_flops(net: Network) -> int:
    shapes = net.shapes()
    total = 0
    for e in net.edges():
        if isinstance(e.layer, Conv2d):
            _, h, w = e.layer.out_shape(shapes[e.src])
            k = e.layer.kernel_size
            total += e.layer.out_channels * (e.layer.in_channels // e.layer.groups) * k * k * h * w
        elif isinstance(e.layer, Linear):
            tokens = shapes[e.src][0] if len(shapes[e.src]) == 2 else 1
            total += tokens * e.layer.in_features * e.layer.out_features
        elif isinstance(e.layer, Attention):
            n, inner = shapes[e.src][0], e.layer.heads * e.layer.head_dim
            total += 4 * n * e.layer.dim * inner + 2 * n * n * inner
    return total


def count_depth(net: Network) -> int:
    """Weight layers (conv, linear; an attention counts two: its q/k/v and its output projection) on
    the longest input -> output path."""
    best: dict[str, int] = {net.input_blob: 0}
    for blob in nx.topological_sort(net.graph):
        here = best.get(blob)
        if here is None:
            continue
        for e in net.out_edges(blob):
            d = here + (2 if isinstance(e.layer, Attention) else isinstance(e.layer, (Conv2d, Linear)))
            if d > best.get(e.dst, -1):
                best[e.dst] = d
    return best.get(net.output_blob, 0)


def count(net: Network) -> Counts:
    p = count_params(net)
    return Counts(params=p, params_mb=4.0 * p / 2**20, flops=count_flops(net), depth=count_depth(net))
