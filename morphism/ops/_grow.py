"""Making room for new channels that start silent: the helper of ``insert_branch``.

When a new part is concatenated to a blob, every layer its channels reach must take ``n`` more
channels at the slice's offset (:func:`~..channel_groups.insertion_group`): consumers get **zero**
input weights there (so the network's function is unchanged whatever the new channels hold),
other producers write zeros into them, and channel-wise layers with per-channel tensors get
identity values (BN γ = sqrt(var + eps), β = mean; slopes and scales 1; a depthwise conv a
centred delta).
"""
from __future__ import annotations

import dataclasses
from typing import cast

import torch

from ..channel_groups import ChannelGroup, is_depthwise
from ..errors import NotApplicable
from ..graph import Network
from ..identity import bn_identity_params
from ..joins import CONCAT
from ..layers import BatchNorm2d, Conv2d, Linear, PAct, PReLU
from ..layers_extra import LayerScale


def _insert(t: torch.Tensor, at: int, block: torch.Tensor, dim: int) -> torch.Tensor:
    """``t`` with ``block`` inserted at index ``at`` of axis ``dim``."""
    return torch.cat([t.narrow(dim, 0, at), block.to(t.dtype), t.narrow(dim, at, t.shape[dim] - at)], dim)


def _zeros_like_slice(t: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    shape = list(t.shape)
    shape[dim] = n
    return torch.zeros(shape, dtype=t.dtype)


def _resized(layer, out: int = 0, inp: int = 0):
    if isinstance(layer, Conv2d):
        return dataclasses.replace(layer, out_channels=layer.out_channels + out, in_channels=layer.in_channels + inp)
    if isinstance(layer, Linear):
        return dataclasses.replace(layer, out_features=layer.out_features + out, in_features=layer.in_features + inp)
    raise NotApplicable(f"cannot resize a {layer.kind}")


def grow_group(net: Network, group: ChannelGroup, n: int, shapes: dict) -> None:
    """Give every edge of insertion ``group`` (embeddings in ``group.wide``) ``n`` silent channels, in place.
    ``shapes`` are the shapes before the change."""
    for name in group.producers:
        e = net.edge(name)
        off, m = group.embedding(e.dst)
        if net.join(e.dst) == CONCAT:
            off -= net.concat_offsets(e.dst, shapes)[name][0]
        p = dict(net.params[name])
        for k in ("weight", "bias"):
            if k in p:
                p[k] = _insert(p[k], off * m, _zeros_like_slice(p[k], n * m, 0), 0)
        net.replace_layer(name, _resized(e.layer, out=n * m), p)
    for name in group.consumers:
        e = net.edge(name)
        off, m = group.embedding(e.src)
        p = dict(net.params[name])
        p["weight"] = _insert(p["weight"], off * m, _zeros_like_slice(p["weight"], n * m, 1), 1)
        net.replace_layer(name, _resized(e.layer, inp=n * m), p)
    for name in group.internal:
        e = net.edge(name)
        off, m = group.embedding(e.src)
        layer = e.layer
        old = net.params[name]
        if isinstance(layer, BatchNorm2d):
            new = bn_identity_params(n, old["weight"].dtype, eps=layer.eps)
            p = {k: (_insert(t, off, new[k], 0) if t.dim() else t) for k, t in old.items()}
            net.replace_layer(name, dataclasses.replace(layer, num_features=layer.num_features + n), p)
        elif isinstance(layer, PReLU) and layer.num_parameters != 1:
            p = {"weight": _insert(old["weight"], off * m, torch.ones(n * m), 0)}
            net.replace_layer(name, dataclasses.replace(layer, num_parameters=layer.num_parameters + n * m), p)
        elif isinstance(layer, PAct) and layer.per_channel:
            p = {"a": _insert(old["a"], off * m, torch.ones(n * m), 0)}
            net.replace_layer(name, dataclasses.replace(layer, channels=layer.channels + n * m), p)
        elif isinstance(layer, LayerScale):
            p = {"weight": _insert(old["weight"], off, torch.ones(n, 1, 1), 0)}
            net.replace_layer(name, dataclasses.replace(layer, channels=layer.channels + n), p)
        elif is_depthwise(layer):
            conv = cast(Conv2d, layer)
            ks = conv.kernel_size
            delta = torch.zeros(n, 1, ks, ks)
            delta[:, 0, ks // 2, ks // 2] = 1.0
            p = {"weight": _insert(old["weight"], off, delta, 0)}
            if "bias" in old:
                p["bias"] = _insert(old["bias"], off, torch.zeros(n), 0)
            c = conv.in_channels + n
            net.replace_layer(name, dataclasses.replace(conv, in_channels=c, out_channels=c, groups=c), p)
        elif any(t.dim() for t in old.values()):
            raise NotApplicable(f"layer {name!r} ({layer.kind}) has per-channel tensors and no rule for new channels")
