"""Site look-ups shared by the ops of this package: a missing site is ``NotApplicable`` with
close-match suggestions, so the CLI's one-line error tells the user what they probably meant."""
from __future__ import annotations

import difflib

from ..errors import NotApplicable
from ..graph import Edge, Network
from ..layers import (Activation, AvgPool2d, BatchNorm2d, Conv2d, Crop, Dropout, Flatten, GlobalAvgPool, Identity,
                      Linear, MaxPool2d, Pad, PAct, PReLU)

# Layers whose output has the channel count of their input.
_PASS_THROUGH = (Activation, PAct, PReLU, Identity, MaxPool2d, AvgPool2d, GlobalAvgPool, Pad, Crop, Dropout)


def require_edge(net: Network, site: str, op: str) -> Edge:
    """The edge named ``site`` or ``NotApplicable`` naming the op and close matches."""
    if not isinstance(site, str) or not net.has_edge(site):
        close = difflib.get_close_matches(str(site), net.edge_names(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise NotApplicable(f"{op}: no edge named {site!r} in the network{hint} "
                            f"(list sites with `morphnas morph NET --op {op} --list-sites`)")
    return net.edge(site)


def require_blob(net: Network, site: str, op: str) -> str:
    """``site`` if it is a blob of ``net``, else ``NotApplicable`` naming the op and close matches."""
    if not isinstance(site, str) or not net.has_blob(site):
        close = difflib.get_close_matches(str(site), [str(b) for b in net.graph.nodes], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise NotApplicable(f"{op}: no blob named {site!r} in the network{hint} "
                            f"(list sites with `morphnas morph NET --op {op} --list-sites`)")
    return site


def feature_channels(net: Network, blob: str) -> int | None:
    """Channels of ``blob`` if it is a ``(C, H, W)`` map, ``None`` if it is flat.

    Walks back along first in-edges to the nearest layer that fixes the channel count (a conv,
    a BN), so ops on big networks avoid a full shape inference per call (ResNet-110: ~8 ms each);
    falls back to :meth:`Network.shapes` for anything unusual. Lint checks the result anyway.
    """
    b = blob
    for _ in range(64):
        if b == net.input_blob:
            return net.input_shape[0] if len(net.input_shape) == 3 else None
        ins = net.in_edges(b)
        if not ins:
            break
        layer = ins[0].layer
        if isinstance(layer, Conv2d):
            return layer.out_channels
        if isinstance(layer, BatchNorm2d):
            return layer.num_features
        if isinstance(layer, (Linear, Flatten)):
            return None
        if not isinstance(layer, _PASS_THROUGH):
            break
        b = ins[0].src
    shape = net.shapes()[blob]
    return shape[0] if len(shape) == 3 else None
