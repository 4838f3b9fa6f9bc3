"""Counting by the modular-morphing paper's conventions (DESIGN.md §5).

* params: every learnable tensor and BN running statistic — conv and FC weights, biases, BN
  gamma/beta/running mean/running var, PReLU slopes, parametric-activation ``a`` (integer
  counters such as ``num_batches_tracked`` are not parameters);
* params_mb = 4 bytes x params / 2**20;
* flops = multiply-accumulates of conv and FC layers only, at the network's input size.
"""
from __future__ import annotations

from dataclasses import dataclass

from morphnas.morphism.graph import Network
from morphnas.morphism.layers import Conv2d, Linear


@dataclass(frozen=True)
class Counts:
    params: int
    params_mb: float
    flops: int

    def to_json(self) -> dict:
        return {"params": self.params, "params_mb": self.params_mb, "flops": self.flops}


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
            total += e.layer.in_features * e.layer.out_features
    return total


def count(net: Network) -> Counts:
    p = count_params(net)
    return Counts(params=p, params_mb=4.0 * p / 2**20, flops=count_flops(net))
