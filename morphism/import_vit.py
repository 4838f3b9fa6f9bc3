"""Import transformers by their structure (issue 25): torchvision's ``VisionTransformer`` (every
``vit_*``), and ``nn.TransformerEncoderLayer`` / ``nn.TransformerEncoder`` models on token inputs.

Why not by tracing: a ViT's forward reshapes, permutes, expands a parameter and concatenates,
and ``nn.MultiheadAttention`` packs q, k and v in one tensor; the pieces are few and fixed, so they
are read off the modules directly into the IR (:mod:`.transformer`'s pre-LN blocks, the
``attention`` kind with q/k/v split out, ``scale = head_dim ** -0.5``). :func:`.importer.from_torch`
calls this for these module types and checks the result against the model like any import, and
again on a float64 copy whose all-zero parameters (torchvision's zero head) are drawn at random.
Anything the IR does not compute exactly (post-LN layers, sequence-first layers, a conv stem,
other activations) is refused with the setting named.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .errors import ImportUnsupported
from .graph import Network
from .kinds.attention import Attention
from .kinds.class_token import ClassToken
from .kinds.layer_norm import LayerNorm
from .kinds.pos_embed import PosEmbed
from .kinds.token_pool import TokenPool
from .kinds.tokens import Tokens
from .layers import Activation, Conv2d, Linear
from .transformer import add_block

Tensors = dict[str, torch.Tensor]


def is_structural(module: nn.Module) -> bool:
    """True for the module types this file imports."""
    return _is_torchvision_vit(module) or isinstance(module, (nn.TransformerEncoderLayer, nn.TransformerEncoder))


def _is_torchvision_vit(module: nn.Module) -> bool:
    t = type(module)
    return t.__name__ == "VisionTransformer" and t.__module__.startswith("torchvision.")


def _t(x: torch.Tensor) -> torch.Tensor:
    return x.detach().clone()


def _attention(mha: nn.MultiheadAttention, where: str) -> tuple[Attention, Tensors]:
    if not mha._qkv_same_embed_dim or getattr(mha, "bias_k", None) is not None or mha.add_zero_attn:
        raise ImportUnsupported([f"nn.MultiheadAttention at {where!r} with separate k/v sizes, bias_k/bias_v or "
                                 "add_zero_attn (only plain self-attention)"])
    if not mha.batch_first:
        raise ImportUnsupported([f"nn.MultiheadAttention at {where!r} with batch_first=False (tokens are "
                                 "(batch, N, d) in the IR)"])
    d, h = mha.embed_dim, mha.num_heads
    spec = Attention(d, h, d // h, (d // h) ** -0.5, bias=mha.in_proj_bias is not None, dropout=float(mha.dropout))
    q, k, v = _t(mha.in_proj_weight).chunk(3)
    p = {"q_weight": q, "k_weight": k, "v_weight": v, "out_weight": _t(mha.out_proj.weight)}
    if spec.bias:
        bq, bk, bv = _t(mha.in_proj_bias).chunk(3)
        p.update(q_bias=bq, k_bias=bk, v_bias=bv, out_bias=_t(mha.out_proj.bias))
    return spec, p


def _ln(m: nn.Module, where: str) -> Tensors:
    if not isinstance(m, nn.LayerNorm) or len(m.normalized_shape) != 1 or m.weight is None or m.bias is None:
        raise ImportUnsupported([f"{type(m).__name__} at {where!r} (only an affine nn.LayerNorm over the features)"])
    return {"weight": _t(m.weight), "bias": _t(m.bias)}


def _linear(m: nn.Module, where: str) -> Tensors:
    if not isinstance(m, nn.Linear) or m.bias is None:
        raise ImportUnsupported([f"{type(m).__name__} at {where!r} (only nn.Linear with a bias)"])
    return {"weight": _t(m.weight), "bias": _t(m.bias)}


def _act_name(act: Any, where: str) -> str:
    if isinstance(act, nn.GELU) and act.approximate == "none" or act is torch.nn.functional.gelu:
        return "gelu"
    if isinstance(act, nn.ReLU) or act is torch.nn.functional.relu:
        return "relu"
    raise ImportUnsupported([f"activation {act!r} at {where!r} (only exact GELU or ReLU)"])


def _block(layer: Any, where: str) -> dict[str, Any]:
    """One pre-LN block's specs and tensors: torchvision's ``EncoderBlock`` or a pre-LN, batch-first
    ``nn.TransformerEncoderLayer``."""
    attn: Any
    ln1: Any
    ln2: Any
    if isinstance(layer, nn.TransformerEncoderLayer):
        if not layer.norm_first:
            raise ImportUnsupported([f"nn.TransformerEncoderLayer at {where!r} with norm_first=False (post-LN); the "
                                     "IR's blocks are pre-LN: build it with norm_first=True"])
        attn, ln1, ln2 = layer.self_attn, layer.norm1, layer.norm2
        fc1, fc2, act = layer.linear1, layer.linear2, layer.activation
    elif type(layer).__name__ == "EncoderBlock":
        attn, ln1, ln2 = layer.self_attention, layer.ln_1, layer.ln_2
        mlp = list(layer.mlp)
        fc1, act, fc2 = mlp[0], mlp[1], mlp[3]
    else:
        raise ImportUnsupported([f"{type(layer).__name__} at {where!r} (an encoder layer must be torchvision's "
                                 "EncoderBlock or nn.TransformerEncoderLayer)"])
    spec, p = _attention(attn, f"{where}.attention")
    if ln1.eps != ln2.eps:
        raise ImportUnsupported([f"LayerNorms of different eps at {where!r}"])
    w1 = _linear(fc1, f"{where}.mlp")
    return {"dim": spec.dim, "heads": spec.heads, "head_dim": spec.head_dim, "mlp_dim": w1["weight"].shape[0],
            "eps": float(ln1.eps), "act": _act_name(act, f"{where}.mlp"), "attn_spec": spec,
            "params": {"ln_1": _ln(ln1, where), "attn": p, "ln_2": _ln(ln2, where), "mlp.fc1": w1,
                       "mlp.fc2": _linear(fc2, f"{where}.mlp")}}


def _add(net: Network, src: str, out: str, name: str, b: dict[str, Any]) -> None:
    edges = add_block(net, src, out, name, b["dim"], b["heads"], b["head_dim"], b["mlp_dim"],
                      torch.Generator().manual_seed(0), eps=b["eps"], act=b["act"], params=b["params"])
    attn = next(e for e in edges if e.endswith(".attn"))
    net.replace_layer(attn, b["attn_spec"], b["params"]["attn"])   # keeps the model's bias and dropout


def from_structure(module: nn.Module, input_shape: tuple[int, ...]) -> Network:
    """The IR network of a module :func:`is_structural` accepts (no check against the model here)."""
    if _is_torchvision_vit(module):
        return _vit(module, input_shape)
    layers = list(module.layers) if isinstance(module, nn.TransformerEncoder) else [module]
    if len(input_shape) != 2:
        raise ImportUnsupported([f"a transformer encoder on inputs of shape {input_shape}; give the token shape "
                                 "(N, d) without the batch dimension"])
    net = Network(input_shape)
    src = net.input_blob
    norm = getattr(module, "norm", None)
    for i, layer in enumerate(layers):
        out = net.output_blob if i == len(layers) - 1 and norm is None else f"layers.{i}.out"
        _add(net, src, out, f"layers.{i}" if len(layers) > 1 or norm is not None else "layer", _block(layer, f"layers.{i}"))
        src = out
    if norm is not None:
        net.add_edge(src, net.output_blob, LayerNorm(input_shape[1], float(norm.eps)), "norm", params=_ln(norm, "norm"))
    return net


def _vit(m: Any, input_shape: tuple[int, ...]) -> Network:
    conv = m.conv_proj
    if not isinstance(conv, nn.Conv2d):
        raise ImportUnsupported(["a VisionTransformer with a conv stem (conv_stem_configs); only the patch conv"])
    if tuple(input_shape) != (conv.in_channels, m.image_size, m.image_size):
        raise ImportUnsupported([f"VisionTransformer(image_size={m.image_size}) on inputs of shape {input_shape}; "
                                 f"import it at ({conv.in_channels}, {m.image_size}, {m.image_size})"])
    d, p = m.hidden_dim, m.patch_size
    net = Network(input_shape)
    params = {"weight": _t(conv.weight)} | ({"bias": _t(conv.bias)} if conv.bias is not None else {})
    net.add_edge(net.input_blob, "patches", Conv2d(conv.in_channels, d, p, p, 0, bias=conv.bias is not None),
                 "conv_proj", params=params)
    net.add_edge("patches", "tok", Tokens(), "tokens")
    net.add_edge("tok", "tok_cls", ClassToken(d), "class_token", params={"token": _t(m.class_token).reshape(d)})
    pos = _t(m.encoder.pos_embedding).reshape(-1, d)
    net.add_edge("tok_cls", "embed", PosEmbed(pos.shape[0], d), "encoder.pos_embedding", params={"embedding": pos})
    src = "embed"
    for name, layer in m.encoder.layers.named_children():
        out = f"encoder.layers.{name}.out"
        _add(net, src, out, f"encoder.layers.{name}", _block(layer, f"encoder.layers.{name}"))
        src = out
    ln = m.encoder.ln
    net.add_edge(src, "final", LayerNorm(d, float(ln.eps)), "encoder.ln", params=_ln(ln, "encoder.ln"))
    net.add_edge("final", "pooled", TokenPool("first"), "pool")
    heads = dict(m.heads.named_children())
    src = "pooled"
    if "pre_logits" in heads:
        net.add_edge(src, "pre_logits", Linear(d, heads["pre_logits"].out_features), "heads.pre_logits",
                     params=_linear(heads["pre_logits"], "heads.pre_logits"))
        net.add_edge("pre_logits", "pre_act", Activation("tanh"), "heads.act")
        src = "pre_act"
    head = heads["head"]
    net.add_edge(src, net.output_blob, Linear(head.in_features, head.out_features), "heads.head",
                 params=_linear(head, "heads.head"))
    return net
