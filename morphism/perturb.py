"""Randomise the "identity-looking" tensors of a network so preservation tests mean something.

A freshly built network has BN layers that compute ``x`` (mean 0, var 1, gamma 1, beta 0), zero
biases and PReLU slopes of 0.25; a morph that mishandled a BN or a bias would still look exact on
it. :func:`perturb` returns a copy in which those tensors are random but well scaled, so a network
behaves like a trained one (``morphnas new --perturb``). Convolution and linear weights are kept.
"""
from __future__ import annotations

import torch

from .graph import Network
from .kinds.attention import Attention
from .kinds.class_token import ClassToken
from .kinds.layer_norm import LayerNorm
from .layers import BatchNorm2d, Conv2d, Linear, PAct, PReLU


def perturb(net: Network, seed: int = 0) -> Network:
    """A copy of ``net`` with random BN running stats and affine parameters, PReLU slopes and
    parametric-activation ``a`` in (0, 1), small random conv/linear/attention biases, random
    LayerNorm affine parameters and class tokens.

    Deterministic in ``seed`` and independent of the global RNG; edges are visited in name order so
    the result does not depend on how the network was built.
    """
    out = net.copy()
    gen = torch.Generator().manual_seed(int(seed))

    def uniform(shape, lo: float, hi: float, like: torch.Tensor) -> torch.Tensor:
        u = torch.rand(shape, generator=gen, dtype=torch.float64)
        return (lo + (hi - lo) * u).to(like.dtype)

    def normal(shape, std: float, like: torch.Tensor) -> torch.Tensor:
        return (torch.randn(shape, generator=gen, dtype=torch.float64) * std).to(like.dtype)

    for name in out.edge_names():
        layer = out.edge(name).layer
        p = out.params[name]
        if isinstance(layer, BatchNorm2d):
            c = (layer.num_features,)
            p["running_mean"] = normal(c, 0.5, p["running_mean"])
            p["running_var"] = uniform(c, 0.25, 2.0, p["running_var"])
            p["weight"] = uniform(c, 0.5, 1.5, p["weight"])
            p["bias"] = normal(c, 0.2, p["bias"])
        elif isinstance(layer, PReLU):
            p["weight"] = uniform(p["weight"].shape, 0.05, 0.95, p["weight"])
        elif isinstance(layer, PAct):
            p["a"] = uniform(p["a"].shape, 0.05, 0.95, p["a"])
        elif isinstance(layer, (Conv2d, Linear)) and "bias" in p:
            p["bias"] = normal(p["bias"].shape, 0.1, p["bias"])
        elif isinstance(layer, LayerNorm):
            p["weight"] = uniform(p["weight"].shape, 0.5, 1.5, p["weight"])
            p["bias"] = normal(p["bias"].shape, 0.2, p["bias"])
        elif isinstance(layer, Attention) and layer.bias:
            for k in sorted(p):
                if k.endswith("_bias"):
                    p[k] = normal(p[k].shape, 0.1, p[k])
        elif isinstance(layer, ClassToken):
            p["token"] = normal(p["token"].shape, 0.5, p["token"])
    return out
