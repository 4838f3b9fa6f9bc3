"""Random walk: a child of a random member (or of the latest one: a chain) made by a few random morphs.

The baseline every other strategy should beat at the same budget.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from morphnas.search.state.population import Population
from morphnas.search.state.records import Proposal, TrialResult
from morphnas.search.strategies.base import Strategy, register_strategy


@register_strategy
class RandomWalk(Strategy):
    name = "random_walk"

    @dataclass(frozen=True)
    class Params:
        parent: Literal["random", "latest"] = "random"   # random: any member; latest: the newest member (a single chain)

    def propose(self, population: Population) -> Proposal | None:
        members = list(population)
        if not members:
            return None
        parent = members[-1] if self.p.parent == "latest" else members[int(self.rng.integers(len(members)))]
        return self._proposal(parent.id)

    def observe(self, result: TrialResult, population: Population) -> None:
        self.observed += 1

