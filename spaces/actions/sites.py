"""Where a site sits in a network: its block, its stage, its order — and ``where`` filters on them.

The action space restricts ops to parts of a network ("only stage 3", "only blocks layer2.*") and
gives samplers fixed-domain coordinates for a site (stage index + relative position), so both
need a site's place. Sites are edge or blob names (``MorphOp.site_kind``).

Stage = resolution level. Feature maps are ranked by spatial size, largest first; pooled (1x1)
and flat blobs belong to the last level. Where the network records ResNet blocks
(``meta["blocks"]``) the levels are numbered like the blocks' stages (``layer2.*`` is stage 2), a
stem at a higher resolution than stage 1 is stage 0. Morphs never change resolutions, so the
stages of a seed are the stages of all its descendants.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, ClassVar

from morphnas.morphism.errors import did_you_mean
from morphnas.morphism.graph import Network
from morphnas.morphism.schema import SchemaError, build, rule
from morphnas.spaces.errors import ActionSpaceError


@dataclass(frozen=True)
class SiteInfo:
    """A site's place: stage, block name (``None`` outside blocks) and network order."""

    site: str
    stage: int
    block: str | None
    order: int


def _levels(shapes: dict) -> list[int]:
    sizes = {s[1] * s[2] for s in shapes.values() if len(s) == 3 and s[1] * s[2] > 1}
    return sorted(sizes, reverse=True)


def stage_map(net: Network) -> dict[str, int]:
    """Stage of every blob of ``net``."""
    shapes = {b: s for b, s in net.shapes().items() if b != "__problems__"}
    levels = _levels(shapes)
    blocks = net.meta.get("blocks") or []
    by_size: dict[int, int] = {}
    for b in blocks:
        s = shapes.get(b["sum"])
        if s is not None and len(s) == 3:
            by_size.setdefault(s[1] * s[2], int(b["stage"]))
    last = max(by_size.values()) if by_size else len(levels)

    def stage_of(shape: tuple) -> int:
        if len(shape) != 3 or shape[1] * shape[2] <= 1 or not levels:
            return last if by_size else max(len(levels), 1)
        size = shape[1] * shape[2]
        if not by_size:
            return levels.index(size) + 1
        if size in by_size:
            return by_size[size]
        # Between or beyond the block resolutions: the stem (larger) is 0, anything smaller joins
        # the stage of the nearest smaller-or-equal block resolution below it.
        if size > max(by_size):
            return 0
        lower = [s for s in by_size if s <= size]
        return by_size[max(lower)] if lower else last

    return {b: stage_of(s) for b, s in shapes.items()}


def block_of(net: Network, name: str) -> str | None:
    """The recorded block whose name prefixes ``name`` (edges and blobs of a block share it)."""
    for b in net.meta.get("blocks") or []:
        if name.startswith(b["name"] + "."):
            return b["name"]
    return None


def site_infos(net: Network, sites: list[str], site_kind: str = "edge") -> list[SiteInfo]:
    """Place of each site, in network order (topological by blob; an edge is placed at its
    destination blob, after the blob itself; then by name). A site is an edge if ``net`` has an edge of that name, else
    a blob (some ops take both; ``site_kind`` is only the tie-break for names that are both)."""
    stages = stage_map(net)
    order = {b: i for i, b in enumerate(net.blobs())}
    keyed = []
    for s in sites:
        is_edge = net.has_edge(s) and (site_kind == "edge" or not net.has_blob(s))
        ref = net.edge(s).dst if is_edge else s
        keyed.append(((order.get(ref, -1), is_edge, s), SiteInfo(s, stages.get(ref, 0), block_of(net, s), 0)))
    keyed.sort(key=lambda t: t[0])
    return [SiteInfo(i.site, i.stage, i.block, n) for n, (_, i) in enumerate(keyed)]


def _names(value: Any, key: str) -> Any:
    """A single pattern is a list of one (``blocks: layer2.*``)."""
    return (value,) if isinstance(value, str) else value


def _stage_numbers(value: Any, key: str) -> Any:
    """A single stage is a list of one (``stages: 3``)."""
    return (value,) if isinstance(value, int) and not isinstance(value, bool) else value


def any_or_mapping(value: Any, key: str) -> Any:
    """The ``where`` value ``"any"`` means no restriction (the empty mapping); other strings are typos."""
    if isinstance(value, str):
        if value != "any":
            raise SchemaError(f"{key!r}: unknown value {value!r}{did_you_mean(value, ['any'], known='choose from')}"
                              f" (or give a mapping with keys {', '.join(Where.KEYS)})")
        return {}
    return value


@dataclass(frozen=True)
class Where:
    """Which sites an op may use: stages, block name patterns, site name patterns, exclusions.

    Empty tuples mean "no restriction". Patterns are shell-style (``layer2.*``, ``*.conv1``).
    The fields are declared for :func:`morphnas.morphism.schema.build`, which parses the
    ``where:`` mappings of an action space into this class.
    """

    stages: tuple[int, ...] = field(default=(), metadata=rule(parse=_stage_numbers, fix="; 1 = the first stage"))
    blocks: tuple[str, ...] = field(default=(), metadata=rule(parse=_names))
    sites: tuple[str, ...] = field(default=(), metadata=rule(parse=_names))
    exclude: tuple[str, ...] = field(default=(), metadata=rule(parse=_names))

    KEYS: ClassVar[tuple[str, ...]] = ("stages", "blocks", "sites", "exclude")

    def _validate(self, where: str) -> None:
        if any(s < 0 for s in self.stages):
            raise ActionSpaceError(f"config key '{where}.stages' must be stage numbers >= 0 (1 = the first stage, "
                                   f"0 = a stem above it), got {list(self.stages)!r}")

    @classmethod
    def from_value(cls, value: Any, path: str) -> "Where":
        """``"any"``, ``None`` or a mapping with the keys in ``KEYS``; errors name ``path``."""
        raw = {} if value is None else any_or_mapping(value, path)
        try:
            return build(cls, raw, path, error=ActionSpaceError)
        except SchemaError as e:
            raise ActionSpaceError(f"config key {e}") from None

    def admits(self, info: SiteInfo) -> bool:
        if self.stages and info.stage not in self.stages:
            return False
        if self.blocks and not (info.block and any(fnmatch.fnmatchcase(info.block, p) for p in self.blocks)):
            return False
        if self.sites and not any(fnmatch.fnmatchcase(info.site, p) for p in self.sites):
            return False
        return not any(fnmatch.fnmatchcase(info.site, p) for p in self.exclude)

    def to_json(self) -> dict[str, list[Any]] | str:
        return {k: list(getattr(self, k)) for k in self.KEYS if getattr(self, k)} or "any"
