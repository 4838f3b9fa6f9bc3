"""The MLP seed for tabular data: input shape ``(features,)``, no convolutions at all.

Why a seed of its own: the dense-layer morphs (``deepen_linear``, ``widen`` of a hidden blob,
``split`` of a linear) are the only ones that apply to tabular data, and a search needs a network
whose every layer is one of theirs. Layout (names as ``nn.Sequential`` would give them):
``fc1 -> act1 -> fc2 -> act2 -> ... -> fc`` with blobs ``hidden{i}.pre`` / ``hidden{i}.out``.
"""
from __future__ import annotations

import torch

from morphnas.morphism.errors import SpecError
from morphnas.morphism.graph import Network
from morphnas.morphism.layers import Activation, Dropout, Linear, PReLU
from morphnas.spaces.seeds.catalog import register_seed


@register_seed("mlp", "MLP for tabular data: (64,) features, hidden 64/32, ReLU")
def mlp(features: int = 64, num_classes: int = 10, hidden: tuple[int, ...] = (64, 32), act: str = "relu",
        dropout: float = 0.0, seed: int = 0) -> Network:
    """``features`` inputs -> hidden linear layers (each followed by ``act``, then dropout if
    ``dropout > 0``) -> ``num_classes`` logits. ``act="prelu"`` gives each layer a PReLU."""
    hidden = tuple(hidden)
    for k, v in {"features": features, "num_classes": num_classes,
                 **{f"hidden[{i}]": h for i, h in enumerate(hidden)}}.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise SpecError(f"mlp: option {k} must be a positive integer, got {v!r}")
    if not 0.0 <= dropout < 1.0:
        raise SpecError(f"mlp: option dropout must satisfy 0 <= dropout < 1, got {dropout!r}")
    gen = torch.Generator().manual_seed(seed)
    net = Network((features,))
    src, width = net.input_blob, features
    for i, h in enumerate(hidden, start=1):
        net.add_edge(src, f"hidden{i}.pre", Linear(width, h), f"fc{i}", gen=gen)
        layer = PReLU(h) if act == "prelu" else Activation(act)
        net.add_edge(f"hidden{i}.pre", f"hidden{i}.out", layer, f"act{i}", gen=gen)
        src, width = f"hidden{i}.out", h
        if dropout > 0:
            net.add_edge(src, f"hidden{i}.drop", Dropout(dropout), f"drop{i}")
            src = f"hidden{i}.drop"
    net.add_edge(src, net.output_blob, Linear(width, num_classes), "fc", gen=gen)
    return net
