"""Algorithm 1 of the paper: reduce a module by reverse atomic morphs.

Reverse TYPE-I merges a chain ``u -e1-> b -e2-> v`` at a blob ``b`` with in-degree = out-degree = 1
into one edge ``u -> v`` of kernel ``k1 + k2 - 1``; reverse TYPE-II merges parallel edges into one
edge of kernel ``max(k1, k2)``. A module that reduces to a single edge is *simple morphable*; the
morph sequence building it from one conv is the reduction read backwards. Otherwise what is left is
the *irreducible remainder* (e.g. the paper's module (D)), whose edges each stand for a tree of
merges; it is solved as a whole (:mod:`.solve`) and every remainder edge is then expanded by the
forward atomic morphs (:mod:`.factor`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .spec import ModuleSpec


@dataclass(frozen=True)
class Leaf:
    """An edge of the module description."""

    edge: str
    src: str
    dst: str
    kernel: int

    def label(self) -> str:
        return self.edge

    def leaves(self) -> list[str]:
        return [self.edge]


@dataclass(frozen=True)
class Series:
    """TYPE-I: ``first`` (``src -> mid``) then ``second`` (``mid -> dst``)."""

    first: "Node"
    second: "Node"
    mid: str

    @property
    def src(self) -> str:
        return self.first.src

    @property
    def dst(self) -> str:
        return self.second.dst

    @property
    def kernel(self) -> int:
        return self.first.kernel + self.second.kernel - 1

    def label(self) -> str:
        return f"({self.second.label()}∘{self.first.label()})"

    def leaves(self) -> list[str]:
        return self.first.leaves() + self.second.leaves()


@dataclass(frozen=True)
class Parallel:
    """TYPE-II: ``left + right`` between the same two blobs."""

    left: "Node"
    right: "Node"

    @property
    def src(self) -> str:
        return self.left.src

    @property
    def dst(self) -> str:
        return self.left.dst

    @property
    def kernel(self) -> int:
        return max(self.left.kernel, self.right.kernel)

    def label(self) -> str:
        return f"({self.left.label()}+{self.right.label()})"

    def leaves(self) -> list[str]:
        return self.left.leaves() + self.right.leaves()


Node = Union[Leaf, Series, Parallel]


@dataclass(frozen=True)
class Step:
    """One reverse atomic morph: ``merged`` replaced ``parts`` (read forwards: split ``merged``)."""

    kind: str                 # "TYPE-I" or "TYPE-II"
    merged: Node
    parts: tuple[Node, Node]
    blob: str | None = None   # the removed blob of a TYPE-I step

    def forward(self) -> str:
        a, b = self.parts
        if self.kind == "TYPE-I":
            return f"TYPE-I: {self.merged.label()} -> {a.label()} then {b.label()} via blob {self.blob}"
        return f"TYPE-II: {self.merged.label()} -> {a.label()} + {b.label()}"


@dataclass(frozen=True)
class Reduction:
    """The result of Algorithm 1: the remainder (its edges are merge trees) and the steps taken."""

    module: ModuleSpec
    remainder: tuple[Node, ...]
    steps: tuple[Step, ...]

    @property
    def simple(self) -> bool:
        """True when the module reduced to a single source-to-sink edge (simple morphable)."""
        return len(self.remainder) == 1

    def remainder_blobs(self) -> list[str]:
        """Internal blobs left in the remainder, in the module's topological order."""
        left = {n.src for n in self.remainder} | {n.dst for n in self.remainder}
        return [b for b in self.module.blobs if b in left]

    def morph_sequence(self) -> list[str]:
        """The forward morphs from one conv to the module (the reduction reversed)."""
        seq = []
        if not self.simple:
            seq.append("solve irreducible remainder " + ", ".join(n.label() for n in self.remainder)
                       + f" (blobs {', '.join(self.remainder_blobs())})")
        seq.extend(s.forward() for s in reversed(self.steps))
        return seq


def reduce_module(module: ModuleSpec) -> Reduction:
    """Run Algorithm 1 to a fixed point: TYPE-I merges first, then TYPE-II, until neither applies.

    Deterministic: candidates are taken in the module's blob order and by edge label.
    """
    edges: list[Node] = [Leaf(e.name, e.src, e.dst, e.kernel) for e in module.edges]
    steps: list[Step] = []
    order = {b: i for i, b in enumerate((module.source, *module.blobs, module.sink))}
    changed = True
    while changed:
        changed = False
        while (step := _type1(edges, order, module)) is not None:
            steps.append(step)
            changed = True
        while (step := _type2(edges, order)) is not None:
            steps.append(step)
            changed = True
    return Reduction(module, tuple(edges), tuple(steps))


def _type1(edges: list[Node], order: dict[str, int], module: ModuleSpec) -> Step | None:
    for b in sorted(order, key=order.__getitem__):
        if b in (module.source, module.sink):
            continue
        ins = [e for e in edges if e.dst == b]
        outs = [e for e in edges if e.src == b]
        if len(ins) == 1 and len(outs) == 1:
            merged = Series(ins[0], outs[0], b)
            edges.remove(ins[0])
            edges.remove(outs[0])
            edges.append(merged)
            return Step("TYPE-I", merged, (ins[0], outs[0]), b)
    return None


def _type2(edges: list[Node], order: dict[str, int]) -> Step | None:
    groups: dict[tuple[str, str], list[Node]] = {}
    for e in edges:
        groups.setdefault((e.src, e.dst), []).append(e)
    for key in sorted(groups, key=lambda k: (order[k[0]], order[k[1]])):
        g = sorted(groups[key], key=lambda n: n.label())
        if len(g) > 1:
            merged = Parallel(g[0], g[1])
            edges.remove(g[0])
            edges.remove(g[1])
            edges.append(merged)
            return Step("TYPE-II", merged, (g[0], g[1]))
    return None


def is_simple_morphable(module: ModuleSpec) -> bool:
    """The paper's verdict: can the module be built from one conv by TYPE-I/TYPE-II morphs alone?"""
    return reduce_module(module).simple
