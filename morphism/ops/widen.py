"""``widen``: grow a blob's channels, and with it every blob tied to it (its channel group).

Site: a **blob** (a feature map, or a flat blob between linears). Choosing the blob rather than a
conv makes the unit of change explicit: what widens is a channel axis, and that axis is shared by
the whole :class:`~.channel_groups.ChannelGroup` — e.g. one whole residual stage, whose sums,
identity shortcuts, batch norms and activations all carry the same channels. The group's border
edges change with it: producers (convs / linears writing the channels, incl. projection
shortcuts) gain output units, consumers (the next convs, the linear after global pool + flatten)
gain input units.

Methods (params ``method``):

* ``net2net`` (Net2WiderNet): every new channel replicates an existing one chosen by the rng
  (balanced: each channel is copied at most once more than any other); producers copy the
  incoming filter, channel-wise layers copy their parameters (BN statistics/affine, PReLU slopes,
  PAct ``a``), consumers split the outgoing weights among the replicas. ``split="equal"`` divides
  by the replication count (the paper); ``split="random"`` gives each replica a random positive
  share summing to one, which is just as exact and breaks the replicas' symmetry.
* ``netmorph``: new channels get random incoming weights (the producer's scale) and zero outgoing
  weights, so they start silent; exact, and the record reports the zero fraction.

Transformers (``docs/design.md``, "Transformers"): a group holding a ``layer_norm`` (the model
width ``d`` of a ViT: patch embedding, residual stream, every LayerNorm, attention input and output)
widens only by an integer factor ``k`` with ``net2net``: every feature is then copied exactly ``k``
times, so each LayerNorm's mean and variance stay the same. An ``attention`` in the group
reads the copies (its q/k/v columns split like a linear consumer's), writes them (its output rows
copied) and duplicates each head feature ``k`` times too, with ``scale / k`` so that every attention
score (``scale · q·k``) stays the same (Staged Training's width operator). Position embeddings and
class tokens copy their features.

``noise > 0`` adds Gaussian noise (``noise`` x the tensor's std) to the new outgoing weights: the
result is approximate and the record holds the measured relative output error.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
import torch

from ..channel_groups import FEATURE_NORMS, ChannelGroup, all_groups, channel_group, is_depthwise
from ..errors import NotApplicable
from ..graph import Network
from ..joins import CONCAT
from ..layers import BatchNorm2d, Conv2d, Linear, PAct, PReLU
from ..kinds.attention import PROJECTIONS, Attention
from ..kinds.class_token import ClassToken
from ..kinds.layer_norm import LayerNorm
from ..kinds.pos_embed import PosEmbed
from ..layers_extra import LayerScale
from ..schema import rule
from ..verify import output_diff
from ._sites import require_blob
from .base import MAX_NOISE, MAX_WIDTH, MorphOp, register_op, registered, zero_fraction


@register_op
class Widen(MorphOp):
    name = "widen"
    site_kind = "blob"
    description = "grow a blob's channel group (Net2WiderNet replication or NetMorph silent units)"
    order = 40

    @dataclass(frozen=True)
    class Params:
        # new width = round(factor * width) unless `width` is given
        factor: float = field(default=2.0, metadata=rule(gt=1, le=64, fix="; widen by a factor in (1, 64]"))
        # the new channel count (> the current one)
        width: int | None = field(default=None, metadata=rule(ge=1, le=MAX_WIDTH))
        method: Literal["net2net", "netmorph"] = "net2net"
        split: Literal["equal", "random"] = "equal"   # net2net outgoing shares (both exact)
        # > 0: approximate, relative std of noise on new outgoing weights
        noise: float = field(default=0.0, metadata=rule(ge=0, le=MAX_NOISE))

    def sites(self, net: Network) -> list[str]:
        return sorted(b for g in all_groups(net) if not g.problem for b in g.blobs)

    def check(self, net: Network, site: str, params: Any) -> None:
        require_blob(net, site, self.name)
        if site in (net.input_blob, net.output_blob):
            raise NotApplicable(f"widen: blob {site!r} is the network's {'input' if site == net.input_blob else 'output'}; "
                                "its size is fixed")
        g = channel_group(net, site)
        if g.problem:
            raise NotApplicable(f"widen: cannot widen blob {site!r}: {g.problem}")
        new = _new_width(g.channels, params)
        if new <= g.channels:
            raise NotApplicable(f"widen: blob {site!r} has {g.channels} channels; the new width must be larger, "
                                f"got {new} (set width > {g.channels} or factor > 1)")
        tied = transformer_edges(net, g)
        if tied:
            if new % g.channels:
                raise NotApplicable(f"widen: blob {site!r}'s group holds {tied[0]!r} ({net.edge(tied[0]).layer.kind}); "
                                    f"only an integer factor keeps its statistics/attention scores exact: "
                                    f"{g.channels} -> {new} is not a multiple (use factor 2, 3, ...)")
            if params.method != "net2net":
                raise NotApplicable(f"widen: blob {site!r}'s group holds {tied[0]!r} ({net.edge(tied[0]).layer.kind}); "
                                    f"new features must be copies for it to stay exact: use method net2net, "
                                    f"not {params.method}")
            for n in tied:
                e = net.edge(n)
                if isinstance(e.layer, Attention) and not (e.src in g.blobs and e.dst in g.blobs):
                    raise NotApplicable(f"widen: attention {n!r} reads or writes blob {site!r}'s group but not both; "
                                        "its input and output width are one (widen the group on both sides)")

    def _apply(self, net: Network, site: str, params: Any, rng: np.random.Generator):
        child = net.copy()
        group = channel_group(child, site)
        c_old, c_new = group.channels, _new_width(group.channels, params)
        mapping = _replica_map(c_old, c_new, rng)
        share = _shares(mapping, c_old, params.split if params.method == "net2net" else "equal", rng)
        new_slices = widen_group(child, group, mapping, share, params.method, params.noise, rng)
        extra: dict[str, Any] = {
            # NetMorph's new units start with zero outgoing weights: exact but not dense.
            "mode": "exact-dense" if params.method == "net2net" else "exact-sparse",
            "zero_fraction": zero_fraction(*new_slices),
            "notes": (f"{params.method}: {len(group.blobs)} blob(s) {c_old} -> {c_new} channels; producers "
                      f"{', '.join(group.producers)}; consumers {', '.join(group.consumers)}"),
        }
        if params.noise > 0:
            extra["mode"] = "approximate"
            extra["error"] = output_diff(net, child, dtype=net.dtype, seed=int(rng.integers(2**31))).rel_err
        return child, extra


def transformer_edges(net: Network, group: ChannelGroup) -> list[str]:
    """The LayerNorms and attentions of ``group`` (which widen only by an integer factor of copies)."""
    return [n for n in (*group.internal, *group.producers)
            if isinstance(net.edge(n).layer, (*FEATURE_NORMS, Attention))]


def _new_width(c: int, params: Any) -> int:
    return int(params.width) if params.width is not None else int(round(c * params.factor))


def _replica_map(c_old: int, c_new: int, rng: np.random.Generator) -> np.ndarray:
    """New channel j copies old channel mapping[j]; the first c_old are themselves. Whole random
    permutations are drawn so replication counts differ by at most one."""
    extra = c_new - c_old
    perms = [rng.permutation(c_old) for _ in range(math.ceil(extra / c_old))]
    return np.concatenate([np.arange(c_old)] + perms)[:c_new]


def _shares(mapping: np.ndarray, c_old: int, split: str, rng: np.random.Generator) -> np.ndarray:
    """Share of old channel mapping[j]'s outgoing weight given to new channel j (sums to 1 per old channel)."""
    counts = np.bincount(mapping, minlength=c_old).astype(np.float64)
    if split == "equal":
        return 1.0 / counts[mapping]
    u = rng.uniform(0.5, 1.5, size=len(mapping))
    return u / np.bincount(mapping, weights=u, minlength=c_old)[mapping]


def _flat(index: np.ndarray, m: int) -> torch.Tensor:
    """Feature indices of channels ``index`` in a blob of multiplicity ``m`` (flattened C, H, W)."""
    return torch.as_tensor((index[:, None] * m + np.arange(m)[None, :]).reshape(-1))


def _full_index(off: int, mapping: np.ndarray, total: int, c_old: int) -> np.ndarray:
    """Channel index of a widened axis of ``total`` channels where the group sits at ``off``: the
    channels before it, the group's replicas, the channels after it."""
    if off == 0 and total == c_old:
        return mapping
    return np.concatenate([np.arange(off), off + mapping, np.arange(off + c_old, total)])


def _producer_offset(net: Network, group: ChannelGroup, name: str, shapes: dict) -> tuple[int, int]:
    """Offset and multiplicity of the group on producer ``name``'s output axis (a concatenated
    part's own axis starts at the part's offset in the concatenation)."""
    e = net.edge(name)
    off, m = group.embedding(e.dst)
    if net.join(e.dst) == CONCAT:
        off -= net.concat_offsets(e.dst, shapes)[name][0]
    return off, m


def widen_group(net: Network, group: ChannelGroup, mapping: np.ndarray, share: np.ndarray, method: str,
                noise: float, rng: np.random.Generator) -> list[torch.Tensor]:
    """Widen ``group`` of ``net`` in place to ``len(mapping)`` channels. Returns the new weight
    slices (for the zero fraction). Producers first, so a conv that is both widens on both axes.
    Where the group is a slice of a wider axis (after a concatenation) only that slice grows."""
    c_old, c_new = group.channels, len(mapping)
    gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
    new_slices: list[torch.Tensor] = []
    shapes = net.shapes() if group.wide else {}
    attention = sorted(n for n in {*group.producers, *group.consumers} if isinstance(net.edge(n).layer, Attention))
    producers = [n for n in group.producers if n not in attention]
    consumers = [n for n in group.consumers if n not in attention]
    offsets = {name: _producer_offset(net, group, name, shapes) for name in producers}
    for name in producers:
        e = net.edge(name)
        off, m = offsets[name]
        p = dict(net.params[name])
        w = p["weight"]
        idx = _flat(_full_index(off, mapping, w.shape[0] // m, c_old), m)
        new = slice((off + c_old) * m, (off + c_new) * m)
        w = w[idx]
        if method != "net2net":
            fresh = torch.randn((new.stop - new.start, *w.shape[1:]), generator=gen, dtype=torch.float64)
            w[new] = (fresh * _scale(p["weight"])).to(w.dtype)
        new_slices.append(w[new])
        p["weight"] = w
        if "bias" in p:
            b = p["bias"][idx]
            if method == "netmorph":
                b[new] = 0
            p["bias"] = b
        net.replace_layer(name, _resize(e.layer, out=len(idx)), p)
    for name in consumers:
        e = net.edge(name)
        off, m = group.embedding(e.src)
        p = dict(net.params[name])
        w = p["weight"]
        total = w.shape[1] // m
        idx = _flat(_full_index(off, mapping, total, c_old), m)
        new = slice((off + c_old) * m, (off + c_new) * m)
        if method == "net2net":
            sh = np.concatenate([np.ones(off), share, np.ones(total - off - c_old)]) if group.wide else share
            scale = torch.as_tensor(np.repeat(sh, m), dtype=w.dtype).view(1, -1, *([1] * (w.dim() - 2)))
            w = w[:, idx] * scale
        else:
            w = w[:, idx]
            w[:, new] = 0
        if noise > 0:
            n = torch.randn(w[:, new].shape, generator=gen, dtype=torch.float64)
            w[:, new] += (n * noise * _scale(net.params[name]["weight"])).to(w.dtype)
        new_slices.append(w[:, new])
        p["weight"] = w
        net.replace_layer(name, _resize(net.edge(name).layer, inp=len(idx)), p)
    for name in attention:
        new_slices.extend(_widen_attention(net, group, name, mapping, share, c_old))
    for name in group.internal:
        e = net.edge(name)
        off, m = group.embedding(e.src)
        layer = e.layer
        old = net.params[name]
        if isinstance(layer, (PosEmbed, ClassToken, LayerNorm)):
            idx = torch.as_tensor(_full_index(off, mapping, layer.features, c_old))
            p = {k: t[..., idx] for k, t in old.items()}
            net.replace_layer(name, dataclasses.replace(layer, features=len(idx)), p)
            continue
        lead = next((t.shape[0] for t in old.values() if t.dim()), 0)
        if not lead or (isinstance(layer, PReLU) and layer.num_parameters == 1) or \
                (isinstance(layer, PAct) and not layer.per_channel):
            continue   # no per-channel tensors
        idx = _flat(_full_index(off, mapping, lead // m, c_old), m)
        p = {k: (t[idx] if t.dim() else t) for k, t in old.items()}
        size = len(idx)
        if isinstance(layer, BatchNorm2d):
            net.replace_layer(name, dataclasses.replace(layer, num_features=size), p)
        elif isinstance(layer, PReLU):
            net.replace_layer(name, dataclasses.replace(layer, num_parameters=size), p)
        elif is_depthwise(layer):
            conv = cast(Conv2d, layer)
            net.replace_layer(name, dataclasses.replace(conv, in_channels=size, out_channels=size, groups=size), p)
        elif isinstance(layer, (PAct, LayerScale)):
            net.replace_layer(name, dataclasses.replace(layer, channels=size), p)
        else:   # a channel-wise kind with per-channel tensors this op does not know: refuse, never corrupt
            raise NotApplicable(f"widen: layer {name!r} ({layer.kind}) has per-channel tensors and no widening rule")
    return new_slices


def _widen_attention(net: Network, group: ChannelGroup, name: str, mapping: np.ndarray, share: np.ndarray,
                     c_old: int) -> list[torch.Tensor]:
    """Widen attention ``name`` whose input and/or output is ``group`` (net2net copies, an integer
    factor ``k``): q/k/v read the copies with split weights, the output writes them, and every head
    feature is duplicated ``k`` times with ``scale / k`` (q·k grows by ``k``), v's copies read by
    the output projection at ``1/k`` each. Returns the new weight slices."""
    e = net.edge(name)
    layer = cast(Attention, e.layer)
    k = len(mapping) // c_old
    p = dict(net.params[name])
    hd, h = layer.head_dim, layer.heads
    inner = torch.as_tensor((np.arange(h)[:, None] * hd + np.tile(np.arange(hd), k)[None, :]).reshape(-1))
    idx = torch.as_tensor(mapping)
    sh = torch.as_tensor(share, dtype=p["q_weight"].dtype)
    for n in PROJECTIONS:
        w = p[f"{n}_weight"][inner]
        p[f"{n}_weight"] = w[:, idx] * sh.view(1, -1)
        if layer.bias:
            p[f"{n}_bias"] = p[f"{n}_bias"][inner]
    out = p["out_weight"][:, inner] / k
    p["out_weight"] = out[idx]
    if layer.bias:
        p["out_bias"] = p["out_bias"][idx]
    net.replace_layer(name, dataclasses.replace(layer, dim=len(mapping), head_dim=hd * k, scale=layer.scale / k), p)
    return [p["out_weight"]]


def _scale(w: torch.Tensor) -> float:
    """The spread of a weight tensor (its std; the mean magnitude when it has one entry)."""
    w = w.double()
    return float(w.std()) if w.numel() > 1 else float(w.abs().mean())


def _given(**sizes: int | None) -> dict[str, Any]:
    """The sizes that are set (not None or 0), for ``dataclasses.replace``."""
    return {k: v for k, v in sizes.items() if v}


def _resize(layer, out: int | None = None, inp: int | None = None):
    if isinstance(layer, Conv2d):
        return dataclasses.replace(layer, **_given(out_channels=out, in_channels=inp))
    if isinstance(layer, Linear):
        return dataclasses.replace(layer, **_given(out_features=out, in_features=inp))
    raise TypeError(f"cannot resize a {layer.kind}")  # channel_groups only lists convs and linears here


OP = registered(Widen)   # the registered instance
