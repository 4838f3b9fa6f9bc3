"""The network IR: a DAG whose vertices are blobs (tensors) and whose edges are layers.

A blob with several in-edges is the *sum* of them unless its *join* says otherwise
(:mod:`.joins`: ``concat`` along channels in a stored order, or an element-wise ``mul``); a blob
with several out-edges is *copied* to each. Parallel edges between the same two blobs are legal (TYPE-II morphs make them). Every edge
has a unique, stable dotted name (``layer1.0.conv1``); the compiled module's state-dict keys are
``<edge name>.<param>``, so weights round-trip between compiles and torchvision names survive an
import.

:class:`Network` is a thin container. Algorithms (shape inference, lint, compile, morph ops) are
functions elsewhere that take a network; ops never mutate their input: they ``copy()`` it first.
"""
from __future__ import annotations

import copy as _copy
import re
from dataclasses import dataclass
from typing import Iterator

import networkx as nx
import torch

from .errors import MorphnasError, SpecError, did_you_mean
from .joins import CONCAT, JOINS, SUM
from .joins import concat_offsets as _offsets
from .layers import LayerSpec, Shape
from .shapes import infer_shapes

_NAME = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")  # torch module paths may start with a digit (Sequential)


@dataclass(frozen=True)
class Edge:
    """A read-only view of one edge: its name, endpoints and layer spec."""

    name: str
    src: str
    dst: str
    layer: LayerSpec


class Network:
    """A DAG of blobs and layers plus the tensors each layer owns.

    ``input_shape`` excludes the batch dimension. ``params[edge]`` maps the layer's state-dict names
    to tensors. ``meta`` holds JSON-serialisable annotations (e.g. the seed's name, block tags).
    """

    def __init__(self, input_shape: Shape, input_blob: str = "input", output_blob: str = "output"):
        self.input_shape: Shape = tuple(int(s) for s in input_shape)
        self.input_blob = input_blob
        self.output_blob = output_blob
        self.graph = nx.MultiDiGraph()
        self.graph.add_node(input_blob)
        self.graph.add_node(output_blob)
        self.params: dict[str, dict[str, torch.Tensor]] = {}
        self.meta: dict = {}
        self._ends: dict[str, tuple[str, str]] = {}

    # ----------------------------------------------------------------- building
    def add_blob(self, name: str, join: str = SUM) -> str:
        """Add blob ``name`` (a no-op if it exists); ``join`` says how its in-edges combine."""
        if not _NAME.match(name):
            raise SpecError(f"blob name {name!r} is not a dotted identifier (letters, digits, '_', '.')")
        self.graph.add_node(name)
        if join != SUM:
            self.set_join(name, join)
        return name

    def join(self, blob: str) -> str:
        """How ``blob`` combines its in-edges: ``"sum"`` (default), ``"concat"`` or ``"mul"``."""
        return str(self.graph.nodes[blob].get("join", SUM))

    def set_join(self, blob: str, join: str, order: list[str] | None = None) -> None:
        """Make ``blob`` a ``join`` blob. For ``concat``, ``order`` lists its in-edges in channel
        order (default: the current in-edges by name); later in-edges are appended."""
        if join not in JOINS:
            raise SpecError(f"blob {blob!r}: unknown join {join!r}{did_you_mean(join, JOINS)}")
        data = self.graph.nodes[blob]
        data.pop("order", None)
        data.pop("join", None)
        if join == SUM:
            return
        data["join"] = join
        if join == CONCAT:
            have = sorted(k for _, _, k in self.graph.in_edges(blob, keys=True))
            order = list(order) if order is not None else have
            if sorted(order) != have:
                raise SpecError(f"blob {blob!r}: concat order {order} must list exactly its in-edges {have}")
            data["order"] = tuple(order)

    def concat_offsets(self, blob: str, shapes: dict[str, Shape] | None = None) -> dict[str, tuple[int, int]]:
        """For a concat blob: each in-edge's ``(start, stop)`` channel range in the blob."""
        if self.join(blob) != CONCAT:
            raise MorphnasError(f"blob {blob!r} is a {self.join(blob)} join, not a concat")
        shapes = shapes if shapes is not None else self.shapes()
        ins = self.in_edges(blob)
        return dict(zip((e.name for e in ins), _offsets([e.layer.out_shape(shapes[e.src]) for e in ins])))

    def add_edge(self, src: str, dst: str, layer: LayerSpec, name: str,
                 params: dict[str, torch.Tensor] | None = None,
                 gen: torch.Generator | None = None, dtype: torch.dtype | None = None,
                 position: int | None = None) -> str:
        """Add layer ``name`` from blob ``src`` to blob ``dst`` (blobs are created as needed).

        Without ``params`` the layer gets fresh tensors from ``layer.init_params(gen)``. Into a
        concat blob the edge goes at ``position`` of its channel order (default: last).
        """
        if not isinstance(layer, LayerSpec):
            raise SpecError(f"edge {name!r}: layer must be a LayerSpec, got {type(layer).__name__}")
        if not _NAME.match(name):
            raise SpecError(f"edge name {name!r} is not a dotted identifier (letters, digits, '_', '.')")
        if name in self._ends:
            raise SpecError(f"edge name {name!r} is already used (edge {self._ends[name]})")
        for b in (src, dst):
            if b not in self.graph:
                self.add_blob(b)
        if params is None:
            params = layer.init_params(gen if gen is not None else torch.Generator().manual_seed(0),
                                       dtype or self.dtype)
        self.graph.add_edge(src, dst, key=name, layer=layer)
        self._ends[name] = (src, dst)
        self.params[name] = dict(params)
        data = self.graph.nodes[dst]
        if "order" in data:
            order = list(data["order"])
            order.insert(len(order) if position is None else position, name)
            data["order"] = tuple(order)
        return name

    def remove_edge(self, name: str) -> Edge:
        e = self.edge(name)
        self.graph.remove_edge(e.src, e.dst, key=name)
        del self._ends[name]
        data = self.graph.nodes[e.dst]
        if "order" in data:
            data["order"] = tuple(n for n in data["order"] if n != name)
        self.params.pop(name, None)
        return e

    def remove_blob(self, blob: str) -> None:
        """Remove a blob that no edge touches any more."""
        if self.graph.degree(blob):
            raise MorphnasError(f"blob {blob!r} still has edges: {[e.name for e in self.in_edges(blob) + self.out_edges(blob)]}")
        self.graph.remove_node(blob)

    def replace_layer(self, name: str, layer: LayerSpec, params: dict[str, torch.Tensor]) -> None:
        """Swap the layer spec and tensors of an existing edge, keeping its name and endpoints."""
        src, dst = self._ends[name]
        self.graph.edges[src, dst, name]["layer"] = layer
        self.params[name] = dict(params)

    # ----------------------------------------------------------------- queries
    def edge(self, name: str) -> Edge:
        try:
            src, dst = self._ends[name]
        except KeyError:
            hint = did_you_mean(name, self._ends, n=3, known=None)
            raise MorphnasError(f"no edge named {name!r} in the network{hint}") from None
        return Edge(name, src, dst, self.graph.edges[src, dst, name]["layer"])

    def has_edge(self, name: str) -> bool:
        return name in self._ends

    def has_blob(self, name: str) -> bool:
        return name in self.graph

    def edges(self) -> list[Edge]:
        """All edges, in a stable order: topological by source blob, then by name."""
        order = {b: i for i, b in enumerate(self.blobs())}
        return sorted((self.edge(n) for n in self._ends), key=lambda e: (order.get(e.src, -1), e.name))

    def edge_names(self) -> list[str]:
        return sorted(self._ends)

    def blobs(self) -> list[str]:
        """Blobs in a deterministic topological order (falls back to sorted names on a cycle)."""
        try:
            return list(nx.lexicographical_topological_sort(self.graph))
        except nx.NetworkXUnfeasible:
            return sorted(self.graph.nodes)

    def in_edges(self, blob: str) -> list[Edge]:
        """The in-edges of ``blob`` in the order its join combines them: channel order for a concat,
        else by name."""
        order = self.graph.nodes[blob].get("order")
        if order is not None:
            return [self.edge(n) for n in order]
        return sorted((self.edge(k) for _, _, k in self.graph.in_edges(blob, keys=True)), key=lambda e: e.name)

    def out_edges(self, blob: str) -> list[Edge]:
        return sorted((self.edge(k) for _, _, k in self.graph.out_edges(blob, keys=True)), key=lambda e: e.name)

    def edges_between(self, src: str, dst: str) -> list[Edge]:
        if not self.graph.has_edge(src, dst):
            return []
        return sorted((self.edge(k) for k in self.graph[src][dst]), key=lambda e: e.name)

    def shapes(self) -> dict[str, Shape]:
        return infer_shapes(self)

    @property
    def dtype(self) -> torch.dtype:
        for p in self.params.values():
            for t in p.values():
                if t.is_floating_point():
                    return t.dtype
        return torch.float32

    def num_params(self) -> int:
        return sum(t.numel() for p in self.params.values() for t in p.values() if t.is_floating_point())

    def fresh_name(self, base: str, blob: bool = False) -> str:
        """``base`` if unused (as an edge or blob name), else ``base_1``, ``base_2``, ..."""
        taken = self.graph if blob else self._ends
        if not blob:
            # Suffixing the leaf cannot help when an existing edge is an ancestor path of ``base``.
            owner = next((n for n in self._ends if base.startswith(n + ".")), None)
            if owner is not None:
                raise SpecError(f"cannot name an edge {base!r}: edge {owner!r} is a layer, so no edge can live under "
                                f"its path; choose a base name outside {owner + '.'!r}")
        name, i = base, 0
        while name in taken or (not blob and self._clashes(name)):
            i += 1
            name = f"{base}_{i}"
        return name

    def _clashes(self, name: str) -> bool:
        # A module path cannot be both a layer and the parent of another layer.
        return any(n.startswith(name + ".") or name.startswith(n + ".") for n in self._ends)

    # ----------------------------------------------------------------- copies
    def copy(self) -> "Network":
        """A deep copy: new graph, cloned tensors. Ops call this before changing anything."""
        net = Network(self.input_shape, self.input_blob, self.output_blob)
        net.graph = self.graph.copy()
        net._ends = dict(self._ends)
        net.params = {e: {k: t.detach().clone() for k, t in p.items()} for e, p in self.params.items()}
        net.meta = _copy.deepcopy(self.meta)
        return net

    def to(self, dtype: torch.dtype) -> "Network":
        """A copy whose floating tensors are ``dtype`` (e.g. float64 for exactness checks)."""
        net = self.copy()
        for p in net.params.values():
            for k, t in p.items():
                if t.is_floating_point():
                    p[k] = t.to(dtype)
        return net

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{e}.{k}": t for e, p in sorted(self.params.items()) for k, t in p.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True) -> None:
        """Take tensors back (e.g. after training a compiled module), keyed ``<edge>.<param>``."""
        expected = set(self.state_dict())
        missing, unexpected = expected - set(state), set(state) - expected
        if strict and (missing or unexpected):
            raise MorphnasError(
                f"state dict does not match the network: missing {sorted(missing)[:5]}"
                f"{'...' if len(missing) > 5 else ''}, unexpected {sorted(unexpected)[:5]}"
                f"{'...' if len(unexpected) > 5 else ''}")
        for key, t in state.items():
            if key not in expected:
                continue
            edge, _, pname = key.rpartition(".")
            old = self.params[edge][pname]
            if tuple(t.shape) != tuple(old.shape):
                raise MorphnasError(f"tensor {key!r} has shape {tuple(t.shape)}, the network needs {tuple(old.shape)}")
            self.params[edge][pname] = t.detach().clone().to(old.dtype)

    def __iter__(self) -> Iterator[Edge]:
        return iter(self.edges())

    def __len__(self) -> int:
        return len(self._ends)

    def __repr__(self) -> str:
        return (f"Network(input_shape={self.input_shape}, blobs={self.graph.number_of_nodes()}, "
                f"edges={len(self._ends)}, params={self.num_params()})")

    def summary(self) -> str:
        """One line per edge: name, endpoints, layer, output shape."""
        try:
            shapes = self.shapes()
        except MorphnasError:
            shapes = {}
        lines = []
        for e in self.edges():
            lines.append(f"{e.name:40s} {e.src} -> {e.dst}  {e.layer}  {shapes.get(e.dst, '?')}")
        return "\n".join(lines)
