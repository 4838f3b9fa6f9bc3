"""The module description: a single-source, single-sink DAG of conv edges (YAML or JSON).

A conv edge of a network is morphed into such a module (paper §3.3: blobs are vertices, convs are
edges; several in-edges sum, several out-edges copy). The file format::

    name: D                    # optional
    source: s                  # optional, default "s"
    sink: t                    # optional, default "t"
    blobs:                     # optional; internal blobs and their widths
      a: {}                    #   free width: starts at the conv's output width, widened as needed
      b: {width: 32}           #   pinned absolute width (never widened)
      c: {width: 2x}           #   pinned multiple of the conv's output width
    edges:
      - {name: F1, from: s, to: a, kernel: 3}
      - {from: a, to: t, kernel: 1, bn: true, act: relu}   # BN / parametric activation on the edge

Edges without a name get ``e<index>``. ``bn: true`` adds a batch norm after the conv, ``act``
(an activation name, ``prelu``, or ``{fn: relu, per_channel: false}``) a parametric activation
after that; both are inserted as identities. Validation names the offending key or blob and the
fix: unknown keys (with suggestions), bad kernels (positive odd integers), edges from or to
undeclared blobs, cycles, extra sources or sinks, blobs off every source-to-sink path.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from ..errors import SpecError, did_you_mean
from ..runtime import ACTIVATIONS
from ..safe_io import UnsafeInput, load_yaml, read_regular

MAX_MODULE_BYTES = 1 << 20     # a module file is a few hundred bytes
# Bounds checked before any tensor is made: the paper's modules have <= 8 edges, kernels <= 7, widths
# of a few hundred channels. Beyond these a file is a mistake (or an attempt to exhaust memory).
MAX_KERNEL, MAX_EDGES, MAX_WIDTH, MAX_FACTOR = 31, 64, 16384, 64.0
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOP_KEYS = ("name", "source", "sink", "blobs", "edges")
_EDGE_KEYS = ("name", "from", "to", "kernel", "bn", "act")
_BLOB_KEYS = ("width",)
_ACT_KEYS = ("fn", "per_channel")


class ModuleSpecError(SpecError):
    """A module description is invalid; the message names the field, the value and the fix."""


@dataclass(frozen=True)
class ActSpec:
    """A parametric activation on an edge, inserted as the identity (``a = 1`` / PReLU slope 1)."""

    fn: str = "relu"            # an activation name, or "prelu"
    per_channel: bool = True


@dataclass(frozen=True)
class EdgeSpec:
    name: str
    src: str
    dst: str
    kernel: int
    bn: bool = False
    act: ActSpec | None = None

    @property
    def radius(self) -> int:
        return self.kernel // 2


@dataclass(frozen=True)
class Width:
    """A pinned width: ``absolute`` channels, or ``factor`` times the conv's output width."""

    absolute: int | None = None
    factor: float | None = None

    def resolve(self, base: int) -> int:
        if self.absolute is not None:
            return self.absolute
        return max(1, int(round(self.factor * base)))  # type: ignore[operator]

    def __str__(self) -> str:
        return str(self.absolute) if self.absolute is not None else f"{self.factor:g}x"


@dataclass(frozen=True)
class ModuleSpec:
    """A validated module. ``blobs`` lists internal blobs in topological order; ``pinned`` maps the
    blobs whose width the description fixes."""

    name: str
    source: str
    sink: str
    blobs: tuple[str, ...]
    edges: tuple[EdgeSpec, ...]
    pinned: tuple[tuple[str, Width], ...] = ()

    def graph(self) -> nx.MultiDiGraph:
        g = nx.MultiDiGraph()
        g.add_nodes_from((self.source, *self.blobs, self.sink))
        for e in self.edges:
            g.add_edge(e.src, e.dst, key=e.name)
        return g

    def edge(self, name: str) -> EdgeSpec:
        for e in self.edges:
            if e.name == name:
                return e
        raise KeyError(name)

    def pinned_widths(self) -> dict[str, Width]:
        return dict(self.pinned)

    def radii(self) -> dict[str, int]:
        """Longest path radius from the source to every blob (``rho``; the sink's is the module's)."""
        rho = {self.source: 0}
        g = self.graph()
        for b in nx.topological_sort(g):
            if b == self.source:
                continue
            rho[b] = max(rho[e.src] + e.radius for e in self.edges if e.dst == b)
        return rho

    @property
    def effective_kernel(self) -> int:
        return 2 * self.radii()[self.sink] + 1

    def to_json(self) -> dict[str, Any]:
        edges = []
        for e in self.edges:
            d: dict[str, Any] = {"name": e.name, "from": e.src, "to": e.dst, "kernel": e.kernel}
            if e.bn:
                d["bn"] = True
            if e.act is not None:
                d["act"] = {"fn": e.act.fn, "per_channel": e.act.per_channel}
            edges.append(d)
        pinned = self.pinned_widths()
        blobs = {b: ({"width": str(pinned[b])} if b in pinned else {}) for b in self.blobs}
        return {"name": self.name, "source": self.source, "sink": self.sink, "blobs": blobs, "edges": edges}


def _unknown(where: str, keys, allowed) -> None:
    for k in keys:
        if k not in allowed:
            hint = did_you_mean(k, allowed, known=None) or f"; allowed keys: {', '.join(allowed)}"
            raise ModuleSpecError(f"{where}: unknown key {k!r}{hint}")


def _blob_name(where: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ModuleSpecError(f"{where}: blob names must be identifiers (letters, digits, '_'), got {value!r}")
    return value


def _bounded(where: str, width: int) -> int:
    if width > MAX_WIDTH:
        raise ModuleSpecError(f"{where}: width {width:,} is more than {MAX_WIDTH:,} channels")
    return width


def _width(where: str, value: Any) -> Width:
    if isinstance(value, bool):
        raise ModuleSpecError(f"{where}: width must be a positive integer or '<factor>x', got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ModuleSpecError(f"{where}: width must be >= 1, got {value}")
        return Width(absolute=_bounded(where, value))
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*x\s*", value)
        if m and float(m.group(1)) > 0:
            if float(m.group(1)) > MAX_FACTOR:
                raise ModuleSpecError(f"{where}: width {value.strip()} is more than {MAX_FACTOR:g}x the conv's")
            return Width(factor=float(m.group(1)))
        if value.strip().isdigit() and int(value) > 0:
            return Width(absolute=_bounded(where, int(value)))
    raise ModuleSpecError(f"{where}: width must be a positive integer (e.g. 32) or a factor of the conv's "
                          f"output width (e.g. '2x'), got {value!r}")


def _act(where: str, value: Any) -> ActSpec | None:
    if value is None or value is False:
        return None
    if isinstance(value, str):
        value = {"fn": value}
    if not isinstance(value, dict):
        raise ModuleSpecError(f"{where}: act must be an activation name or {{fn: ..., per_channel: ...}}, got {value!r}")
    _unknown(where, value, _ACT_KEYS)
    fn = value.get("fn", "relu")
    known = ["prelu", *ACTIVATIONS]
    if fn not in known:
        hint = did_you_mean(fn, known, known=None) or f"; known: {', '.join(known)}"
        raise ModuleSpecError(f"{where}: unknown activation {fn!r}{hint}")
    per_channel = value.get("per_channel", True)
    if not isinstance(per_channel, bool):
        raise ModuleSpecError(f"{where}: per_channel must be true or false, got {per_channel!r}")
    return ActSpec(fn, per_channel)


def _edge(i: int, raw: Any) -> EdgeSpec:
    where = f"edges[{i}]"
    if not isinstance(raw, dict):
        raise ModuleSpecError(f"{where}: expected a mapping with from/to/kernel, got {raw!r}")
    _unknown(where, raw, _EDGE_KEYS)
    for k in ("from", "to", "kernel"):
        if k not in raw:
            raise ModuleSpecError(f"{where}: missing {k!r} (every edge needs from, to and kernel)")
    name = raw.get("name", f"e{i}")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ModuleSpecError(f"{where}: edge name must be an identifier (letters, digits, '_'), got {name!r}")
    where = f"edge {name!r}"
    k = raw["kernel"]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise ModuleSpecError(f"{where}: kernel must be a positive odd integer (1, 3, 5, ...), got {k!r}")
    if k > MAX_KERNEL:
        raise ModuleSpecError(f"{where}: kernel {k} is larger than {MAX_KERNEL}; a module edge is a small conv")
    bn = raw.get("bn", False)
    if not isinstance(bn, bool):
        raise ModuleSpecError(f"{where}: bn must be true or false, got {bn!r}")
    return EdgeSpec(name, _blob_name(f"{where} 'from'", raw["from"]), _blob_name(f"{where} 'to'", raw["to"]),
                    k, bn, _act(f"{where} 'act'", raw.get("act")))


def parse_module_spec(data: Any, where: str = "module") -> ModuleSpec:
    """Validate a module description (a mapping as loaded from YAML/JSON) into a :class:`ModuleSpec`."""
    if not isinstance(data, dict):
        raise ModuleSpecError(f"{where}: expected a mapping with 'edges', got {type(data).__name__}")
    try:
        _unknown(where, data, _TOP_KEYS)
        source = _blob_name(f"{where} 'source'", data.get("source", "s"))
        sink = _blob_name(f"{where} 'sink'", data.get("sink", "t"))
        if source == sink:
            raise ModuleSpecError(f"{where}: source and sink must differ, both are {source!r}")
        raw_edges = data.get("edges")
        if not isinstance(raw_edges, list) or not raw_edges:
            raise ModuleSpecError(f"{where}: 'edges' must be a non-empty list of {{from, to, kernel}}")
        if len(raw_edges) > MAX_EDGES:
            raise ModuleSpecError(f"{where}: {len(raw_edges)} edges, more than {MAX_EDGES}; a module replaces one "
                                  f"conv with a small graph")
        edges = [_edge(i, r) for i, r in enumerate(raw_edges)]
        seen: set[str] = set()
        for e in edges:
            if e.name in seen:
                raise ModuleSpecError(f"{where}: edge name {e.name!r} is used twice; give each edge its own name")
            seen.add(e.name)
        declared, pinned = _blobs(where, data.get("blobs"), source, sink)
        _check_graph(where, edges, source, sink, declared)
    except ModuleSpecError as err:
        raise ModuleSpecError(str(err) if str(err).startswith(where) else f"{where}: {err}") from None
    g = nx.MultiDiGraph()
    for e in edges:
        g.add_edge(e.src, e.dst, key=e.name)
    order = [b for b in nx.lexicographical_topological_sort(g) if b not in (source, sink)]
    return ModuleSpec(str(data.get("name", "module")), source, sink, tuple(order), tuple(edges),
                      tuple(sorted(pinned.items())))


def _blobs(where: str, raw: Any, source: str, sink: str) -> tuple[set[str] | None, dict[str, Width]]:
    if raw is None:
        return None, {}
    if isinstance(raw, list):
        raw = {b: {} for b in raw}
    if not isinstance(raw, dict):
        raise ModuleSpecError(f"{where}: 'blobs' must map blob names to {{width: ...}}, got {raw!r}")
    pinned = {}
    for b, v in raw.items():
        _blob_name(f"{where} blobs", b)
        if b in (source, sink):
            raise ModuleSpecError(f"{where}: blob {b!r} is the source or sink; its width is the conv's, "
                                  "list only internal blobs under 'blobs'")
        v = {} if v is None else v
        if not isinstance(v, dict):
            v = {"width": v}
        _unknown(f"{where} blob {b!r}", v, _BLOB_KEYS)
        if "width" in v and v["width"] is not None:
            pinned[b] = _width(f"{where} blob {b!r}", v["width"])
    return set(raw), pinned


def _check_graph(where: str, edges: list[EdgeSpec], source: str, sink: str, declared: set[str] | None) -> None:
    g = nx.MultiDiGraph()
    g.add_nodes_from((source, sink))
    if declared:
        g.add_nodes_from(declared)
    known = {source, sink} | (declared or set())
    for e in edges:
        for end, b in (("from", e.src), ("to", e.dst)):
            if declared is not None and b not in known:
                hint = did_you_mean(b, known, known=None)
                raise ModuleSpecError(f"edge {e.name!r}: '{end}' blob {b!r} is not declared{hint + ' ' if hint else '; '}"
                                      f"declare it under 'blobs' or use one of {sorted(known)}")
        if e.dst == source:
            raise ModuleSpecError(f"edge {e.name!r} goes into the source {source!r}; the source has no in-edges")
        if e.src == sink:
            raise ModuleSpecError(f"edge {e.name!r} leaves the sink {sink!r}; the sink has no out-edges")
        g.add_edge(e.src, e.dst, key=e.name)
    if not nx.is_directed_acyclic_graph(g):
        cyc = nx.find_cycle(g)
        path = " -> ".join(str(u) for u, *_ in cyc) + f" -> {cyc[0][0]}"
        raise ModuleSpecError(f"the module has a cycle ({path}); a module must be a DAG")
    sources = sorted(b for b in g if g.in_degree(b) == 0 and b != source)
    if sources:
        raise ModuleSpecError(f"blob(s) {sources} have no in-edges: a module has a single source {source!r}; "
                              f"add an edge into them from {source!r} or another blob")
    sinks = sorted(b for b in g if g.out_degree(b) == 0 and b != sink)
    if sinks:
        raise ModuleSpecError(f"blob(s) {sinks} have no out-edges: a module has a single sink {sink!r}; "
                              f"add an edge from them to {sink!r} or another blob")
    if not nx.has_path(g, source, sink):
        raise ModuleSpecError(f"no path from the source {source!r} to the sink {sink!r}")


def load_module_spec(path: str | Path) -> ModuleSpec:
    """Read and validate a module file (``.yaml``/``.yml`` or ``.json``)."""
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise ModuleSpecError(f"module file {str(p)!r} does not exist (pass a .yaml or .json module description)")
    try:
        text = read_regular(p, MAX_MODULE_BYTES, "module file").decode("utf-8")
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = load_yaml(text)
    except UnsafeInput as err:
        raise ModuleSpecError(str(err) if str(err).startswith("module file") else
                              f"module file {str(p)!r}: {err}") from None
    except Exception as err:  # parse errors of either format become one clear line
        raise ModuleSpecError(f"module file {str(p)!r} is not valid {p.suffix.lstrip('.') or 'YAML'}: "
                              f"{str(err).splitlines()[0]}") from None
    return parse_module_spec(data, where=f"module file {p.name!r}")
