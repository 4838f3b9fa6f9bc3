"""Identity-initialised layers and blob surgery shared by deepen, insert_layer, activation, insert_bn.

Every layer made here computes the identity in eval mode at insertion and becomes trainable
afterwards: BN with γ = sqrt(var + eps), β = mean; a parametric activation with a = 1 (or a
PReLU with slope 1, the same family: PReLU(w) = (1 - w)·relu + w·id).
"""
from __future__ import annotations

import torch

from ..errors import NotApplicable
from ..graph import Network
from ..layers import ACTIVATIONS, BatchNorm2d, LayerSpec, PAct, PReLU

# Names accepted for an inserted activation: "prelu", any fixed function (as a PAct), or none.
ACT_CHOICES = ("prelu", *ACTIVATIONS)


def bn_identity_params(channels: int, dtype: torch.dtype, mean: torch.Tensor | None = None,
                       var: torch.Tensor | None = None, eps: float = 1e-5) -> dict[str, torch.Tensor]:
    """Tensors of a BN that is the identity in eval mode whatever its running statistics."""
    mean = torch.zeros(channels, dtype=torch.float64) if mean is None else mean.detach().double()
    var = torch.ones(channels, dtype=torch.float64) if var is None else var.detach().double()
    return {"weight": torch.sqrt(var + eps).to(dtype), "bias": mean.to(dtype),
            "running_mean": mean.to(dtype), "running_var": var.to(dtype),
            "num_batches_tracked": torch.tensor(0, dtype=torch.long)}


def check_act(act: str | None, op: str) -> None:
    if act is None or act == "none":
        return
    if act not in ACT_CHOICES:
        import difflib
        close = difflib.get_close_matches(str(act), ACT_CHOICES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise NotApplicable(f"{op}: act={act!r} is not an activation{hint} (choose from "
                            f"{', '.join(ACT_CHOICES)} or none)")


def identity_activation(act: str | None, channels: int, dtype: torch.dtype
                        ) -> tuple[LayerSpec, dict[str, torch.Tensor]] | None:
    """A parametric activation equal to the identity (``None`` for act None/"none")."""
    if act is None or act == "none":
        return None
    if act == "prelu":
        return PReLU(channels, 1.0), {"weight": torch.ones(channels, dtype=dtype)}
    return PAct(channels, act), {"a": torch.ones(channels, dtype=dtype)}


def identity_bn(channels: int, dtype: torch.dtype, **stats) -> tuple[BatchNorm2d, dict[str, torch.Tensor]]:
    eps = stats.pop("eps", 1e-5)
    return BatchNorm2d(channels, eps), bn_identity_params(channels, dtype, eps=eps, **stats)


class Splicer:
    """Adds edges and blobs named ``<prefix>.<base>`` (made unique) to ``net``, in place, and keeps the
    names of the edges it added (a morph record's ``new_edges``)."""

    def __init__(self, net: Network, prefix: str):
        self.net, self.prefix = net, prefix
        self.new_edges: list[str] = []

    def edge(self, src: str, dst: str, layer: LayerSpec, base: str, params: dict[str, torch.Tensor]) -> str:
        name = self.net.add_edge(src, dst, layer, self.net.fresh_name(f"{self.prefix}.{base}"), params=params)
        self.new_edges.append(name)
        return name

    def blob(self, base: str) -> str:
        return self.net.add_blob(self.net.fresh_name(f"{self.prefix}.{base}", blob=True))


def feature_blob_sites(net: Network) -> list[str]:
    """Blobs holding a (C, H, W) feature map, other than the network's input and output."""
    shapes = net.shapes()
    return sorted(b for b in net.graph.nodes
                  if b not in (net.input_blob, net.output_blob) and len(shapes.get(b, ())) == 3)


def insert_after_blob(net: Network, blob: str, layers: list[tuple[LayerSpec, dict, str]],
                      prefix: str | None = None) -> tuple[str, list[str]]:
    """Insert the chain ``layers`` (spec, tensors, edge base name) after ``blob`` in place.

    Every former reader of ``blob`` reads the chain's output instead, and ``net.meta["blocks"]``
    entries whose input was ``blob`` follow them. Returns the new output blob and edge names.
    """
    prefix = safe_prefix(net, prefix or blob)
    out = net.fresh_name(f"{prefix}.out", blob=True)
    readers = net.out_edges(blob)
    # Park the readers on the new output first so the chain's names cannot clash with them.
    for e in readers:
        params = net.params[e.name]
        net.remove_edge(e.name)
        net.add_edge(out, e.dst, e.layer, e.name, params=params)
    for block in net.meta.get("blocks", []):
        if block.get("in") == blob:
            block["in"] = out
    names, cur = [], blob
    for i, (spec, params, base) in enumerate(layers):
        nxt = out if i == len(layers) - 1 else net.add_blob(net.fresh_name(f"{prefix}.{base}", blob=True))
        name = net.fresh_name(f"{prefix}.{base}")
        net.add_edge(cur, nxt, spec, name, params=params)
        names.append(name)
        cur = nxt
    return out, names


def safe_prefix(net: Network, base: str) -> str:
    """A dotted prefix under which new edge names cannot clash with existing module paths.

    A blob is often named like the edge that makes it (``features.0.pool``); ``<edge>.x`` would
    then make that edge a module parent, which ``Network.fresh_name`` cannot fix by suffixing the
    last component (it would loop), so the prefix itself gets the suffix (``features.0.pool_1``).
    """
    names = net.edge_names()
    if any(base.startswith(n + ".") for n in names):
        base = base.replace(".", "_")

    def blocked(p: str) -> bool:
        return any(p == n or p.startswith(n + ".") for n in names)

    p, i = base, 0
    while blocked(p):
        i += 1
        p = f"{base}_{i}"
    return p


def resolve_blob_site(net: Network, site: str, op: str) -> str:
    """The blob a blob-site names: ``blob:NAME`` or a plain blob name."""
    name = site[5:] if isinstance(site, str) and site.startswith("blob:") else site
    if not isinstance(name, str) or not net.has_blob(name):
        import difflib
        close = difflib.get_close_matches(str(name), [str(b) for b in net.graph.nodes], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise NotApplicable(f"{op}: no blob named {name!r} in the network{hint} "
                            f"(list sites with `morphnas morph NET --op {op} --list-sites`)")
    if name in (net.input_blob, net.output_blob):
        which = "input" if name == net.input_blob else "output"
        raise NotApplicable(f"{op}: blob {name!r} is the network's {which}; choose an inner blob")
    return name
