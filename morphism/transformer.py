"""Pre-LN transformer encoder blocks in the IR (``docs/design.md``, "Transformers").

One block reads a residual-stream token blob ``x`` ``(N, d)`` and writes ``x + attn(ln_1(x))`` to
``<name>.mid``, then ``mid + fc2(gelu(fc1(ln_2(mid))))`` to its output blob. The two shortcuts are
unit identities, so in the IR a block is two paths meeting in a sum blob, twice. Used by the
``tiny_vit`` seed and the ``deepen_block`` op (which zeroes the two output projections so the new
block computes the identity).
"""
from __future__ import annotations

import torch

from .graph import Network
from .kinds.attention import Attention
from .kinds.layer_norm import LayerNorm
from .layers import Activation, Identity, Linear


def block_layers(dim: int, heads: int, head_dim: int, mlp_dim: int, eps: float = 1e-6,
                 act: str = "gelu") -> dict[str, object]:
    """The layer specs of one block, by edge suffix."""
    return {"ln_1": LayerNorm(dim, eps), "attn": Attention(dim, heads, head_dim, head_dim ** -0.5),
            "ln_2": LayerNorm(dim, eps), "mlp.fc1": Linear(dim, mlp_dim), "mlp.act": Activation(act),
            "mlp.fc2": Linear(mlp_dim, dim)}


def add_block(net: Network, src: str, out: str, name: str, dim: int, heads: int, head_dim: int, mlp_dim: int,
              gen: torch.Generator, eps: float = 1e-6, act: str = "gelu",
              params: dict[str, dict[str, torch.Tensor]] | None = None, blob_prefix: str | None = None) -> list[str]:
    """Add a pre-LN block from blob ``src`` to blob ``out`` (created) in place, its edges named
    ``<name>.ln_1``, ``.attn``, ``.shortcut_1``, ``.ln_2``, ``.mlp.fc1``, ``.mlp.act``, ``.mlp.fc2``,
    ``.shortcut_2``; ``params`` overrides tensors by edge suffix. Returns the new edge names."""
    layers = block_layers(dim, heads, head_dim, mlp_dim, eps, act)
    params = params or {}
    b = blob_prefix or name
    blobs = {k: net.add_blob(net.fresh_name(f"{b}.{k}", blob=True)) for k in ("n1", "mid", "n2", "h", "g")}
    net.add_blob(out)
    plan = [(src, blobs["n1"], "ln_1"), (blobs["n1"], blobs["mid"], "attn"), (src, blobs["mid"], "shortcut_1"),
            (blobs["mid"], blobs["n2"], "ln_2"), (blobs["n2"], blobs["h"], "mlp.fc1"),
            (blobs["h"], blobs["g"], "mlp.act"), (blobs["g"], out, "mlp.fc2"), (blobs["mid"], out, "shortcut_2")]
    names = []
    for s, d, suffix in plan:
        layer = layers.get(suffix, Identity())
        edge = net.fresh_name(f"{name}.{suffix}")
        net.add_edge(s, d, layer, edge, params=params.get(suffix), gen=gen)  # type: ignore[arg-type]
        names.append(edge)
    return names
