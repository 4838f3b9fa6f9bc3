"""Hill climbing with network morphism (NASH, Elsken et al. 2017).

Each generation makes ``children`` children of the current parent, each by a few random morphs
(how many: the action space's ``actions_per_child``), trains them briefly, and the best of them (and of the parent,
with ``keep_parent``) becomes the next parent. ``propose`` returns ``None`` while a generation's
children are still training: the next generation needs all of their results.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from morphnas.morphism.schema import rule
from morphnas.search.state.population import Population
from morphnas.search.state.records import Proposal, TrialResult
from morphnas.search.strategies.base import Strategy, register_strategy


@register_strategy
class HillClimb(Strategy):
    name = "hill_climb"

    @dataclass(frozen=True)
    class Params:
        children: int = field(default=4, metadata=rule(ge=1))
        keep_parent: bool = True     # the parent stays if no child beats it

    def __init__(self, params: Any, mutator: Any, seed: int):
        super().__init__(params, mutator, seed)
        self.parent_id: str | None = None
        self.generation = 0
        self.issued: list[str] = []            # proposal ids of this generation
        self.results: dict[str, tuple[str, float] | None] = {}  # proposal id -> (member, val_acc) or None

    def propose(self, population: Population) -> Proposal | None:
        if self.parent_id is None:
            best = population.best()
            if best is None:
                return None
            self.parent_id = best.id
        if len(self.issued) >= self.p.children:
            return None
        prop = self._proposal(self.parent_id)
        if prop is None:   # the parent admits no morph: nothing left to climb
            return None
        self.issued.append(prop.proposal_id)
        return prop

    def observe(self, result: TrialResult, population: Population) -> None:
        self.observed += 1
        pid = result.extra.get("proposal_id")
        if pid not in self.issued:
            return
        self.results[pid] = (result.member_id, result.values[0]) if result.state == "COMPLETE" else None
        if len(self.results) < len(self.issued) or len(self.issued) < self.p.children:
            return
        # In proposal order, not the order the results came in (trials run side by side).
        done = [r for r in (self.results.get(p) for p in self.issued) if r is not None]
        if self.p.keep_parent and self.parent_id in population:
            done.append((self.parent_id, population.get(self.parent_id).val_acc))
        if done:
            # Ties go to the earlier entry: children before the parent, in proposal order.
            self.parent_id = max(done, key=lambda r: r[1])[0]
        self.generation += 1
        self.issued, self.results = [], {}

    def _state(self) -> dict[str, Any]:
        return {"parent_id": self.parent_id, "generation": self.generation, "issued": list(self.issued),
                "results": {k: (list(v) if v else None) for k, v in self.results.items()}}

    def _load(self, s: dict[str, Any]) -> None:
        self.parent_id, self.generation = s["parent_id"], s["generation"]
        self.issued = list(s["issued"])
        self.results = {k: (tuple(v) if v else None) for k, v in s["results"].items()}

