"""The population: every network the run has finished (seed = member ``m0``), as frozen records.

Only the driver changes it, and only from :class:`TrialResult` s; it round-trips through JSON as part
of the run state, so a resumed run sees exactly the members it had. Strategies read it (parents,
best, Pareto front) but keep their own bookkeeping (ageing queue, generation) in their state.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from morphnas.search.state.dominance import non_dominated
from morphnas.search.state.records import TrialResult


def member_id(index: int) -> str:
    """``m0`` is the seed; children count up in the order they are proposed."""
    return f"m{index}"


@dataclass(frozen=True)
class Member:
    id: str
    parent_id: str | None
    depth: int
    born: int                      # proposal order: 0 for the seed
    val_acc: float
    params: int
    flops: int
    path: str                      # member directory relative to the run directory
    ops: tuple[str, ...] = ()      # op names of the actions that made it (for reports)
    val_acc_history: tuple[float, ...] = ()
    latency_ms: float | None = None   # measured on the worker (None: a run from before it was)

    def cost(self, name: str) -> float:
        """A cost objective (``params``, ``flops``, ``latency_ms``); unknown counts as infinite."""
        v = getattr(self, name)
        return float("inf") if v is None else float(v)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "parent_id": self.parent_id, "depth": self.depth, "born": self.born,
                "val_acc": self.val_acc, "params": self.params, "flops": self.flops, "path": self.path,
                "ops": list(self.ops), "val_acc_history": list(self.val_acc_history),
                "latency_ms": self.latency_ms}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Member":
        return cls(d["id"], d["parent_id"], d["depth"], d["born"], d["val_acc"], d["params"], d["flops"],
                   d["path"], tuple(d.get("ops", ())), tuple(d.get("val_acc_history", ())), d.get("latency_ms"))

    @classmethod
    def from_result(cls, r: TrialResult, born: int) -> "Member":
        return cls(r.member_id, r.parent_id, r.depth, born, float(r.values[0]) if r.values else 0.0,
                   r.params, r.flops, r.member_path, tuple(a.get("op", "?") for a in r.actions),
                   tuple(r.val_acc_history), r.latency_ms)


@dataclass
class Population:
    members: dict[str, Member] = field(default_factory=dict)

    def add(self, m: Member) -> None:
        if m.id in self.members:
            raise ValueError(f"member {m.id} is already in the population")
        self.members[m.id] = m

    def get(self, mid: str) -> Member:
        return self.members[mid]

    def __contains__(self, mid: str) -> bool:
        return mid in self.members

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[Member]:
        return iter(sorted(self.members.values(), key=lambda m: m.born))

    def best(self) -> Member | None:
        """Highest validation accuracy; ties go to the fewer parameters, then the older member."""
        return min(self.members.values(), key=lambda m: (-m.val_acc, m.params, m.born), default=None)

    def ranked(self) -> list[Member]:
        return sorted(self.members.values(), key=lambda m: (-m.val_acc, m.params, m.born))

    def pareto_front(self, costs: str | Sequence[str] = "params") -> list[Member]:
        """Members no other member beats on accuracy (higher) and every cost in ``costs`` (lower)."""
        names = (costs,) if isinstance(costs, str) else tuple(costs)
        ms = list(self)
        points = [(m.val_acc, *(m.cost(c) for c in names)) for m in ms]
        return [ms[i] for i in non_dominated(points, (1.0, *(-1.0,) * len(names)))]

    def to_json(self) -> list[dict[str, Any]]:
        return [m.to_json() for m in self]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> "Population":
        return cls({d["id"]: Member.from_json(d) for d in data})
