"""Site look-ups shared by the ops of this package: a missing site is ``NotApplicable`` with
close-match suggestions, so the CLI's one-line error tells the user what they probably meant."""
from __future__ import annotations

from ..errors import NotApplicable, did_you_mean
from ..graph import Edge, Network
from ..layers import BatchNorm2d, Conv2d, Flatten, Linear


def require_edge(net: Network, site: str, op: str) -> Edge:
    """The edge named ``site`` or ``NotApplicable`` naming the op and close matches."""
    if not isinstance(site, str) or not net.has_edge(site):
        hint = did_you_mean(site, net.edge_names(), n=3, known=None)
        raise NotApplicable(f"{op}: no edge named {site!r} in the network{hint} "
                            f"(list sites with `morphnas morph NET --op {op} --list-sites`)")
    return net.edge(site)


def join_problem(net: Network, e: Edge) -> str | None:
    """Why parallel edges beside ``e`` would not add up (its blob concatenates or multiplies its
    in-edges), or ``None`` when ``e`` writes into a plain sum. Ops that split an edge into parallel
    edges (TYPE-II, identity splits, paths and modules beside an edge) refuse such edges."""
    join = net.join(e.dst)
    if join == "sum":
        return None
    what = "a separate concatenated part" if join == "concat" else "multiplied in"
    return (f"edge {e.name!r} writes into blob {e.dst!r}, a {join} join: a parallel edge there would be {what}, "
            "not added")


def require_sum_join(net: Network, e: Edge, op: str) -> None:
    """``NotApplicable`` naming the op when ``e`` writes into a concat or mul join (see :func:`join_problem`)."""
    problem = join_problem(net, e)
    if problem:
        raise NotApplicable(f"{op}: {problem}")


def require_blob(net: Network, site: str, op: str, *, inner: bool = False) -> str:
    """The blob a blob site names, else ``NotApplicable`` naming the op and close matches.

    With ``inner`` (ops that insert after a blob) the site may be written ``blob:NAME`` and the
    network's input and output blobs are refused; without it the site is a plain blob name.
    """
    name = site[5:] if inner and isinstance(site, str) and site.startswith("blob:") else site
    if not isinstance(name, str) or not net.has_blob(name):
        hint = did_you_mean(name, [str(b) for b in net.graph.nodes], n=3, known=None)
        raise NotApplicable(f"{op}: no blob named {name!r} in the network{hint} "
                            f"(list sites with `morphnas morph NET --op {op} --list-sites`)")
    if inner and name in (net.input_blob, net.output_blob):
        which = "input" if name == net.input_blob else "output"
        raise NotApplicable(f"{op}: blob {name!r} is the network's {which}; choose an inner blob")
    return name


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
        if not layer.keeps_channels:
            break
        b = ins[0].src
    shape = net.shapes()[blob]
    return shape[0] if len(shape) == 3 else None
