"""Channel groups: the blobs whose channel axes must change together when one of them widens.

Two blobs are tied when an edge between them acts channel by channel (its layer spec declares
``channelwise``: batch norm, activations, identities, pooling, pad/crop, dropout, flatten; and
depthwise convs, see :func:`is_depthwise`), and every in-edge of a blob writes the same
channels (in-edges sum). So a residual stage, with its identity shortcuts and sums, is one group;
the convs and linears at its border are its *producers* (they write the group's channels on their
output axis) and *consumers* (they read them on their input axis).

A flattened blob belongs to the group of the feature map it came from, with *multiplicity*
``H·W``: feature ``c·H·W + r`` is channel ``c`` at pixel ``r``. A token blob ``(N, d)`` carries its
channels on the last axis (:func:`feature_count`), multiplicity 1; the transformer kinds tie it too:
position embeddings, class tokens, token pooling are channel-wise; a ``layer_norm`` is inside the
group (:data:`FEATURE_NORMS`: it widens only when every feature is duplicated equally often); an
``attention`` both reads and writes the group (a producer and a consumer, like a linear).

A channel concatenation holds several groups side by side: a group reaching it occupies one
slice of its axis (``ChannelGroup.wide`` records the offset), and widening grows that slice only,
in the concatenation and in every channel-wise layer and consumer after it (DenseNet growth).
An element-wise product (a ``mul`` join, squeeze-excitation) ties its inputs' channels like a sum.

``widen`` uses :func:`channel_group`; the group is a plain record so tests can look at it.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .graph import Edge, Network
from .joins import CONCAT
from .kinds.attention import Attention
from .kinds.class_token import ClassToken
from .kinds.layer_norm import LayerNorm
from .kinds.pos_embed import PosEmbed
from .layers import Conv2d, Flatten, Linear

# Edges that act on each channel separately (both ends share the channel axis) declare
# ``channelwise = True`` on their layer spec class. Edges that mix channels: they bound a group.
MIXING = (Conv2d, Linear, Attention)
# Normalisations over the feature axis: tied like channel-wise layers (their output features are
# their input features), but their statistics read every feature, so only an equal duplication of
# every feature keeps them (``widen`` by an integer factor, Net2Net copies).
FEATURE_NORMS = (LayerNorm,)


def feature_count(shape: tuple[int, ...]) -> int:
    """The channel (feature) count of a blob: ``C`` of ``(C, H, W)`` and ``(F,)``, ``d`` of tokens ``(N, d)``."""
    return shape[-1] if len(shape) == 2 else shape[0]


@dataclass(frozen=True)
class ChannelGroup:
    """Blobs tied to one channel axis, and the edges touching it.

    ``blobs`` maps blob -> multiplicity (1 for feature maps, H·W for flattened ones) for the blobs
    whose whole channel axis is the group's (the widen sites); ``wide`` maps blob -> (offset,
    multiplicity) for blobs where the group's channels are one slice ``[offset, offset + channels)``
    of a larger axis (a channel concatenation and the channel-wise layers after it).
    ``channels`` is the group's channel count; ``problem`` says why it cannot widen ("" if it can).
    """

    blobs: dict[str, int]
    channels: int
    producers: tuple[str, ...]     # mixing edges writing into the group (output axis widens)
    consumers: tuple[str, ...]     # mixing edges reading from the group (input axis widens)
    internal: tuple[str, ...]      # channel-wise edges inside the group
    problem: str = ""
    wide: dict[str, tuple[int, int]] = field(default_factory=dict)

    def embedding(self, blob: str) -> tuple[int, int]:
        """``(offset, multiplicity)`` of the group's channels in ``blob``'s axis."""
        return self.wide.get(blob, (0, self.blobs.get(blob, 1)))


Emb = tuple[int, int]   # (channel offset, multiplicity) of the group inside a blob's axis


def channel_group(net: Network, blob: str, shapes: dict | None = None) -> ChannelGroup:
    """The channel group of ``blob`` (see the module docstring)."""
    shapes = shapes if shapes is not None else net.shapes()
    # Walk from a feature map when the group has one: its multiplicity is 1 by definition, and
    # every flattened blob's multiplicity then follows from the flatten edge that made it. The
    # first walk stops at concatenations, so the root owns its whole channel axis when it can.
    members = _walk(net, blob, shapes, None, walls=True)[0]
    root = next((b for b in sorted(members) if len(shapes[b]) == 3), blob)
    channels = feature_count(shapes[root])
    emb, producers, consumers, internal, problems = _walk(net, root, shapes, channels, walls=False)
    # A conv from the group back into it widens on both axes: it is a producer and a consumer.
    for name in list(producers | consumers):
        e = net.edge(name)
        if e.src in emb and e.dst in emb and _part_ties(net, e, emb[e.dst], channels, shapes) == "tied":
            producers.add(name)
            consumers.add(name)
    for end, what in ((net.input_blob, "the network input"), (net.output_blob, "the network output")):
        if end in emb:
            problems.append(f"it contains {what} ({end!r}), whose size is fixed")
    if not producers and not problems:
        problems.append("no conv or linear writes its channels")
    narrow = {b: m for b, (off, m) in emb.items() if off == 0 and feature_count(shapes[b]) == channels * m}
    wide = {b: v for b, v in emb.items() if b not in narrow}
    return ChannelGroup(dict(sorted(narrow.items())), channels, tuple(sorted(producers)),
                        tuple(sorted(consumers)), tuple(sorted(internal)), "; ".join(sorted(set(problems))),
                        dict(sorted(wide.items())))


def _part_ties(net: Network, e: Edge, dst_emb: Emb, channels: int | None, shapes: dict) -> str:
    """How in-edge ``e`` of a blob where the group sits at ``dst_emb`` relates to the group:
    "tied" (it writes the group's channels), "apart" (another part of a concatenation) or "split"
    (the group spans several concatenated parts)."""
    if net.join(e.dst) != CONCAT or channels is None:
        return "tied"
    s, t = net.concat_offsets(e.dst, shapes)[e.name]
    off = dst_emb[0]
    if t <= off or s >= off + channels:
        return "apart"
    return "tied" if s <= off and off + channels <= t else "split"


def _walk(net: Network, root: str, shapes: dict, channels: int | None, walls: bool,
          start: Emb = (0, 1), insert: bool = False):
    """Breadth-first over channel-wise edges from ``root``: each reached blob's embedding, the
    border edges and the problems. ``walls``: do not cross into or out of concatenations (the
    first, membership-only walk; ``channels`` is then unknown). ``insert``: the group is a new,
    still empty slice at ``start`` (see :func:`insertion_group`); at a concatenation it belongs to
    the part it came through."""
    emb: dict[str, Emb] = {root: start}
    owner: dict[str, str] = {}   # insert mode: concat blob -> the part the new slice belongs to
    producers: set[str] = set()
    consumers: set[str] = set()
    internal: set[str] = set()
    problems: list[str] = []
    todo = deque([root])
    while todo:
        b = todo.popleft()
        off, m = emb[b]
        for e, other, outward in _touching(net, b):
            if insert and not outward and b == root:
                continue   # the new slice is appended to the root: nothing upstream carries it
            ties = "tied"
            if not outward and net.join(b) == CONCAT:   # e is one part of concatenation b
                if walls:
                    continue
                if insert:
                    if owner.get(b) != e.name:
                        if b not in owner:
                            problems.append(f"the new channels reach concatenation {b!r} from behind; which of its "
                                            "parts they extend is ambiguous")
                        continue
                    ties = "tied"
                else:
                    ties = _part_ties(net, e, emb[b], channels, shapes)
                if ties == "apart":
                    continue
                if ties == "split":
                    problems.append(f"blob {b!r} concatenates several channel groups; widen one of its parts "
                                    f"(e.g. blob {e.src!r})")
                    continue
            if is_depthwise(e.layer):
                pass   # channel by channel: widens with the group (its groups grow with the channels)
            elif isinstance(e.layer, MIXING):
                (consumers if outward else producers).add(e.name)
                if isinstance(e.layer, Conv2d) and e.layer.groups != 1:
                    problems.append(f"grouped conv {e.name!r} (groups={e.layer.groups}) touches it")
                continue
            if not (e.layer.channelwise or is_depthwise(e.layer) or isinstance(e.layer, FEATURE_NORMS)):
                problems.append(f"edge {e.name!r} ({e.layer.kind}) touches it and has no widening rule")
                continue
            if outward and net.join(other) == CONCAT:
                if walls:
                    continue
                if insert:
                    if owner.setdefault(other, e.name) != e.name:
                        problems.append(f"the new channels reach concatenation {other!r} through two parts")
                        continue
                new = (off + net.concat_offsets(other, shapes)[e.name][0], m)
            elif not outward and net.join(b) == CONCAT:
                new = (off - net.concat_offsets(b, shapes)[e.name][0], m)
            else:
                new = (off, _tied_multiplicity(e, other, m, shapes))
            internal.add(e.name)
            if other in emb:
                if emb[other] != new:
                    problems.append(f"blob {other!r} is reached with two different layouts")
                continue
            emb[other] = new
            todo.append(other)
    return emb, producers, consumers, internal, problems


def insertion_group(net: Network, blob: str, channels: int, shapes: dict | None = None) -> ChannelGroup:
    """The blobs and edges that ``channels`` new channels appended to ``blob``'s axis reach (all in
    ``wide``, at their offsets): what must grow when a new part is concatenated to ``blob``."""
    shapes = shapes if shapes is not None else net.shapes()
    emb, producers, consumers, internal, problems = _walk(net, blob, shapes, channels, walls=False,
                                                          start=(feature_count(shapes[blob]), 1), insert=True)
    for name in list(producers | consumers):
        e = net.edge(name)
        if e.src in emb and e.dst in emb:
            problems.append(f"conv {name!r} reads and writes the new channels")
    for end, what in ((net.input_blob, "the network input"), (net.output_blob, "the network output")):
        if end in emb:
            problems.append(f"it reaches {what} ({end!r}), whose size is fixed")
    return ChannelGroup({}, 0, tuple(sorted(producers)), tuple(sorted(consumers)), tuple(sorted(internal)),
                        "; ".join(sorted(set(problems))), dict(sorted(emb.items())))


def transformer_problem(net: Network, group: ChannelGroup, op: str) -> str:
    """Why an op other than ``widen`` cannot change ``group``'s channels ("" when it can): the
    group holds a LayerNorm, an attention, a position embedding or a class token, whose rules only
    ``widen`` knows."""
    for name in (*group.producers, *group.consumers, *group.internal):
        layer = net.edge(name).layer
        if isinstance(layer, (Attention, LayerNorm, PosEmbed, ClassToken)):
            return f"its edge {name!r} is a {layer.kind}, which {op} cannot resize (widen can)"
    return ""


def is_depthwise(layer: object) -> bool:
    """A depthwise conv (``groups == in == out > 1``): each output channel reads only its own input
    channel, so it ties both ends like a channel-wise layer and widens by replicating filters."""
    return (isinstance(layer, Conv2d) and layer.groups > 1
            and layer.groups == layer.in_channels == layer.out_channels)


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
