"""The ViT seed: a tiny vision transformer for small greyscale images (mnist5k), grown by the
transformer morphs (``add_heads``, ``widen``, ``deepen_block``; docs/design.md, "Transformers").

Layout (names close to torchvision's ``VisionTransformer``): ``conv_proj`` (a patch x patch conv,
stride patch) -> ``tokens`` (the map as ``(N, d)`` tokens) -> ``class_token`` -> ``pos_embedding``
-> pre-LN blocks ``encoder.layers.<i>`` -> ``encoder.ln`` -> ``pool`` (the class token, or the mean
of the tokens with ``pool="mean"``, then no class token) -> ``heads.head``. The residual stream
blobs are ``embed`` and ``encoder.layers.<i>.out``.
"""
from __future__ import annotations

import torch

from morphnas.morphism.errors import SpecError
from morphnas.morphism.graph import Network
from morphnas.morphism.kinds.class_token import ClassToken
from morphnas.morphism.kinds.layer_norm import LayerNorm
from morphnas.morphism.kinds.pos_embed import PosEmbed
from morphnas.morphism.kinds.token_pool import TokenPool
from morphnas.morphism.kinds.tokens import Tokens
from morphnas.morphism.layers import Conv2d, Linear
from morphnas.morphism.transformer import add_block
from morphnas.spaces.seeds.catalog import register_seed


@register_seed("tiny_vit", "ViT for 1x28x28 digits: patch 7 (16 tokens), width 32, 2 blocks, 2 heads, MLP 64",
               input_size=28, patch=7)
def vit(input_size: int = 28, patch: int = 7, in_channels: int = 1, dim: int = 32, depth: int = 2, heads: int = 2,
        mlp_dim: int = 64, num_classes: int = 10, pool: str = "cls", seed: int = 0) -> Network:
    """A pre-LN vision transformer; ``input_size`` must be a multiple of ``patch`` and ``dim`` of ``heads``."""
    for k, v in {"input_size": input_size, "patch": patch, "in_channels": in_channels, "dim": dim, "depth": depth,
                 "heads": heads, "mlp_dim": mlp_dim, "num_classes": num_classes}.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise SpecError(f"tiny_vit: option {k} must be a positive integer, got {v!r}")
    if input_size % patch:
        raise SpecError(f"tiny_vit: input_size {input_size} is not a multiple of patch {patch}; choose a patch "
                        "dividing it (e.g. 7 or 4 for 28)")
    if dim % heads:
        raise SpecError(f"tiny_vit: dim {dim} is not a multiple of heads {heads}; choose heads dividing dim")
    if pool not in ("cls", "mean"):
        raise SpecError(f"tiny_vit: option pool must be 'cls' or 'mean', got {pool!r}")
    gen = torch.Generator().manual_seed(seed)
    net = Network((in_channels, input_size, input_size))
    n = (input_size // patch) ** 2
    net.add_edge(net.input_blob, "patches", Conv2d(in_channels, dim, patch, patch, 0, bias=True), "conv_proj",
                 gen=gen)
    net.add_edge("patches", "tok", Tokens(), "tokens")
    src = "tok"
    if pool == "cls":
        net.add_edge(src, "tok_cls", ClassToken(dim), "class_token", gen=gen)
        src, n = "tok_cls", n + 1
    net.add_edge(src, "embed", PosEmbed(n, dim), "pos_embedding", gen=gen)
    src = "embed"
    for i in range(depth):
        out = f"encoder.layers.{i}.out"
        add_block(net, src, out, f"encoder.layers.{i}", dim, heads, dim // heads, mlp_dim, gen)
        src = out
    net.add_edge(src, "final", LayerNorm(dim), "encoder.ln", gen=gen)
    net.add_edge("final", "pooled", TokenPool("first" if pool == "cls" else "mean"), "pool")
    net.add_edge("pooled", net.output_blob, Linear(dim, num_classes), "heads.head", gen=gen)
    return net
