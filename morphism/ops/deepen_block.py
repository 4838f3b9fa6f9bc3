"""``deepen_block``: a new pre-LN transformer block on the residual stream, computing the identity.

Site: a residual-stream **blob** of tokens ``(N, d)`` (a token blob that is the sum of a block's
two paths, or that feeds one: two or more in-edges or out-edges). After it goes
``x + attn(ln_1(x))`` then ``+ fc2(gelu(fc1(ln_2(.))))`` (:mod:`..transformer`), and every former
reader of the blob reads the block's output. The attention's output projection and ``fc2`` (weights
and biases) are **zero**, so both paths add nothing and the stream passes through unchanged
(G_stack/MSG-style depth growth with exact preservation); q, k, v and ``fc1`` are random, the
LayerNorms start at weight 1, bias 0. Heads, head width, MLP width and LayerNorm eps default to
those of the network's first attention / MLP of the same width (2 heads of ``d/2``, MLP ``4d``,
eps 1e-6 when it has none). New edges are ``<blob>.block.*`` (made unique).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from ..errors import NotApplicable
from ..graph import Network
from ..kinds.attention import Attention
from ..kinds.layer_norm import LayerNorm
from ..layers import Linear
from ..schema import rule
from ..transformer import add_block, block_layers
from ._sites import require_blob
from ._splice import reroute, safe_prefix
from .base import MAX_WIDTH, MorphOp, register_op, registered, zero_fraction


@dataclass(frozen=True)
class DeepenBlockParams:
    heads: int | None = field(default=None, metadata=rule(ge=1, le=256))        # default: the net's own
    head_dim: int | None = field(default=None, metadata=rule(ge=1, le=MAX_WIDTH))
    mlp_dim: int | None = field(default=None, metadata=rule(ge=1, le=MAX_WIDTH))


def stream_blobs(net: Network) -> list[str]:
    """Token blobs ``(N, d)`` on a residual stream: two or more in-edges or out-edges."""
    shapes = net.shapes()
    return sorted(b for b in net.graph.nodes
                  if b not in (net.input_blob, net.output_blob) and len(shapes.get(b, ())) == 2
                  and (net.graph.in_degree(b) >= 2 or net.graph.out_degree(b) >= 2))


def _defaults(net: Network, dim: int, p: DeepenBlockParams) -> tuple[int, int, int, float]:
    shapes = net.shapes()
    attn = next((cast(Attention, e.layer) for e in net.edges()
                 if isinstance(e.layer, Attention) and e.layer.dim == dim), None)
    mlp = next((cast(Linear, e.layer).out_features for e in net.edges() if isinstance(e.layer, Linear)
                and e.layer.in_features == dim and len(shapes[e.src]) == 2
                and any(isinstance(x.layer, LayerNorm) for x in net.in_edges(e.src))), 4 * dim)
    eps = next((cast(LayerNorm, e.layer).eps for e in net.edges()
                if isinstance(e.layer, LayerNorm) and e.layer.features == dim), 1e-6)
    heads = p.heads or (attn.heads if attn else 2)
    head_dim = p.head_dim or (attn.head_dim if attn and p.heads in (None, attn.heads) else max(dim // heads, 1))
    return heads, head_dim, p.mlp_dim or mlp, eps


@register_op
class DeepenBlock(MorphOp):
    name = "deepen_block"
    site_kind = "blob"
    description = "a new pre-LN transformer block on the residual stream with zero output projections (identity)"
    Params = DeepenBlockParams
    order = 98

    def sites(self, net: Network) -> list[str]:
        return stream_blobs(net)

    def check(self, net: Network, site: str, params: Any) -> None:
        require_blob(net, site, self.name)
        if site in (net.input_blob, net.output_blob):
            raise NotApplicable(f"deepen_block: blob {site!r} is the network's "
                                f"{'input' if site == net.input_blob else 'output'}; choose a residual-stream blob")
        shape = net.shapes()[site]
        if len(shape) != 2:
            raise NotApplicable(f"deepen_block: blob {site!r} has shape {tuple(shape)}; a transformer block needs "
                                "tokens (N, d)")
        if site not in stream_blobs(net):
            raise NotApplicable(f"deepen_block: blob {site!r} is not on a residual stream (it has one in-edge and "
                                "one out-edge); choose a blob where a block's paths meet or split")

    def _apply(self, net: Network, site: str, p: DeepenBlockParams, rng: np.random.Generator):
        child = net.copy()
        dim = child.shapes()[site][1]
        heads, head_dim, mlp_dim, eps = _defaults(child, dim, p)
        dtype = child.dtype
        gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        layers = block_layers(dim, heads, head_dim, mlp_dim, eps)
        params = {k: cast(Any, layer).init_params(gen, dtype) for k, layer in layers.items()}
        for key, zero in (("attn", ("out_weight", "out_bias")), ("mlp.fc2", ("weight", "bias"))):
            for t in zero:
                params[key][t] = torch.zeros_like(params[key][t])
        prefix = safe_prefix(child, f"{site}.block")
        out = child.fresh_name(f"{prefix}.out", blob=True)
        for e in child.out_edges(site):
            reroute(child, e.name, src=out)
        new = add_block(child, site, out, prefix, dim, heads, head_dim, mlp_dim, gen, eps=eps, params=params)
        zf = zero_fraction(*(t for k in ("attn", "mlp.fc2") for t in params[k].values()))
        return child, {"mode": "exact-sparse", "zero_fraction": zf, "new_edges": tuple(new),
                       "notes": f"block of {heads} heads x {head_dim}, MLP {mlp_dim}, after blob {site!r}; "
                                "attention output and fc2 zero"}


OP = registered(DeepenBlock)   # the registered instance
