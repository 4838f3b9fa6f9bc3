"""Channel groups: the blobs whose channel axes must change together when one of them widens.

Two blobs are tied when an edge between them acts channel by channel (its layer spec declares
``channelwise``: batch norm, activations, identities, pooling, pad/crop, dropout, flatten), and every in-edge of a blob writes the same
channels (in-edges sum). So a residual stage, with its identity shortcuts and sums, is one group;
the convs and linears at its border are its *producers* (they write the group's channels on their
output axis) and *consumers* (they read them on their input axis).

A flattened blob belongs to the group of the feature map it came from, with *multiplicity*
``H·W``: feature ``c·H·W + r`` is channel ``c`` at pixel ``r``.

``widen`` uses :func:`channel_group`; the group is a plain record so tests can look at it.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .graph import Edge, Network
from .layers import Conv2d, Flatten, Linear

# Edges that act on each channel separately (both ends share the channel axis) declare
# ``channelwise = True`` on their layer spec class. Edges that mix channels: they bound a group.
MIXING = (Conv2d, Linear)


@dataclass(frozen=True)
class ChannelGroup:
    """Blobs tied to one channel axis, and the edges touching it.

    ``blobs`` maps blob -> multiplicity (1 for feature maps, H·W for flattened ones);
    ``channels`` is the group's channel count; ``problem`` says why it cannot widen ("" if it can).
    """

    blobs: dict[str, int]
    channels: int
    producers: tuple[str, ...]     # mixing edges writing into the group (output axis widens)
    consumers: tuple[str, ...]     # mixing edges reading from the group (input axis widens)
    internal: tuple[str, ...]      # channel-wise edges inside the group
    problem: str = ""


def channel_group(net: Network, blob: str, shapes: dict | None = None) -> ChannelGroup:
    """The channel group of ``blob`` (see the module docstring)."""
    shapes = shapes if shapes is not None else net.shapes()
    # Walk from a feature map when the group has one: its multiplicity is 1 by definition, and
    # every flattened blob's multiplicity then follows from the flatten edge that made it.
    members = _walk(net, blob, shapes, None)[0]
    root = next((b for b in sorted(members) if len(shapes[b]) == 3), blob)
    mult, producers, consumers, internal, problems = _walk(net, root, shapes, {root: 1})
    channels = shapes[root][0] // mult[root]
    # A conv from the group back into it widens on both axes: it is a producer and a consumer.
    for name in list(producers | consumers):
        e = net.edge(name)
        if e.src in mult and e.dst in mult:
            producers.add(name)
            consumers.add(name)
    for end, what in ((net.input_blob, "the network input"), (net.output_blob, "the network output")):
        if end in mult:
            problems.append(f"it contains {what} ({end!r}), whose size is fixed")
    if not producers and not problems:
        problems.append("no conv or linear writes its channels")
    return ChannelGroup(dict(sorted(mult.items())), channels, tuple(sorted(producers)),
                        tuple(sorted(consumers)), tuple(sorted(internal)), "; ".join(sorted(set(problems))))


def _walk(net: Network, root: str, shapes: dict, mult: dict[str, int] | None):
    """Breadth-first over channel-wise edges from ``root``; with ``mult`` also multiplicities."""
    mult = dict(mult) if mult is not None else {root: 1}
    producers: set[str] = set()
    consumers: set[str] = set()
    internal: set[str] = set()
    problems: list[str] = []
    todo = deque([root])
    while todo:
        b = todo.popleft()
        for e, other, outward in _touching(net, b):
            if isinstance(e.layer, MIXING):
                (consumers if outward else producers).add(e.name)
                if isinstance(e.layer, Conv2d) and e.layer.groups != 1:
                    problems.append(f"grouped conv {e.name!r} (groups={e.layer.groups}) touches it")
                continue
            if not e.layer.channelwise:
                problems.append(f"edge {e.name!r} ({e.layer.kind}) touches it and has no widening rule")
                continue
            internal.add(e.name)
            m = _tied_multiplicity(e, other, mult[b], shapes)
            if other in mult:
                if mult[other] != m:
                    problems.append(f"blob {other!r} is reached with two different layouts")
                continue
            mult[other] = m
            todo.append(other)
    return mult, producers, consumers, internal, problems


def all_groups(net: Network) -> list[ChannelGroup]:
    """Every channel group of ``net`` once, in topological order of their first blob."""
    shapes = net.shapes()
    seen: set[str] = set()
    groups = []
    for b in net.blobs():
        if b in seen or b in (net.input_blob, net.output_blob):
            continue
        g = channel_group(net, b, shapes)
        seen.update(g.blobs)
        groups.append(g)
    return groups


def _touching(net: Network, blob: str) -> list[tuple[Edge, str, bool]]:
    return ([(e, e.src, False) for e in net.in_edges(blob)] + [(e, e.dst, True) for e in net.out_edges(blob)])


def _tied_multiplicity(e: Edge, other: str, m_here: int, shapes: dict) -> int:
    """Multiplicity of ``other`` given that of the other end of channel-wise edge ``e``."""
    if isinstance(e.layer, Flatten) and len(shapes[e.src]) == 3:
        hw = shapes[e.src][1] * shapes[e.src][2]
        return m_here * hw if other == e.dst else max(m_here // hw, 1)
    return m_here
