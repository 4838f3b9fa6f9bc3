"""Regularised (ageing) evolution, Real et al. 2019: tournament selection + removal of the oldest.

``alive`` is a queue of member ids in birth order. A parent is the most accurate of
``sample_size`` members drawn from it; every completed child joins the queue and, once it holds
more than ``population_size`` members, the oldest leaves — however good it is (the ageing that
regularises the search).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from morphnas.morphism.schema import rule
from morphnas.search.state.population import Population
from morphnas.search.state.records import Proposal, TrialResult
from morphnas.search.strategies.base import Strategy, StrategyError, register_strategy


@register_strategy
class Evolution(Strategy):
    name = "evolution"

    @dataclass(frozen=True)
    class Params:
        population_size: int = field(default=8, metadata=rule(ge=1))
        sample_size: int = field(default=3, metadata=rule(ge=1))

        def _validate(self, where: str) -> None:
            if self.sample_size > self.population_size:
                raise StrategyError(f"config '{where}.sample_size': {self.sample_size} is more than "
                                    f"population_size {self.population_size}; a tournament samples from the population "
                                    f"(set sample_size <= population_size)")

    def __init__(self, params: Any, mutator: Any, seed: int):
        super().__init__(params, mutator, seed)
        self.alive: list[str] = []

    def propose(self, population: Population) -> Proposal | None:
        if not self.alive:
            self.alive = [m.id for m in population][-self.p.population_size:]
        if not self.alive:
            return None
        k = max(1, min(self.p.sample_size, len(self.alive)))
        picks = self.rng.choice(len(self.alive), size=k, replace=False)
        contestants = [population.get(self.alive[int(i)]) for i in sorted(picks)]
        parent = max(contestants, key=lambda m: m.val_acc)
        return self._proposal(parent.id)

    def observe(self, result: TrialResult, population: Population) -> None:
        self.observed += 1
        if result.state != "COMPLETE":
            return
        self.alive.append(result.member_id)
        while len(self.alive) > self.p.population_size:
            self.alive.pop(0)

    def _state(self) -> dict[str, Any]:
        return {"alive": list(self.alive)}

    def _load(self, s: dict[str, Any]) -> None:
        self.alive = list(s["alive"])

