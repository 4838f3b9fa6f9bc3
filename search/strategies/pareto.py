"""Pareto multi-objective search, LEMONADE-like (Elsken et al. 2019): accuracy vs. params or FLOPs.

Objectives: validation accuracy (maximise) and ``cost`` = params or flops (minimise). Each round:

1. draw ``candidates`` children: the parent of each is a member of the current Pareto front, chosen
   with probability inversely proportional to the density of its (log) cost among the population,
   so sparse regions of the front get explored;
2. measure each candidate's cost *without training it* (the mutator applies the morphs and counts);
3. accept ``accept`` of them, again with probability inversely proportional to the density of
   their cost — only the accepted children are trained.

Accepted proposals wait in ``queue`` (part of the saved state) until a trial slot takes them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from morphnas.morphism.schema import rule

from ..population import Population
from ..records import Proposal, TrialResult
from .base import Strategy, register_strategy


def kde_density(points: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Gaussian KDE (Scott's bandwidth, floor 0.1) of 1-d ``points`` evaluated ``at``."""
    n = len(points)
    h = max(1.06 * float(np.std(points)) * n ** (-0.2), 0.1) if n > 1 else 0.5
    d = (at[:, None] - points[None, :]) / h
    return np.exp(-0.5 * d ** 2).sum(1) / (n * h * math.sqrt(2 * math.pi))


def inverse_density_choice(rng: np.random.Generator, costs: np.ndarray, reference: np.ndarray, k: int) -> list[int]:
    """``k`` distinct indices into ``costs``, each drawn with probability ~ 1 / density."""
    w = 1.0 / np.maximum(kde_density(np.log(reference), np.log(costs)), 1e-12)
    return [int(i) for i in rng.choice(len(costs), size=min(k, len(costs)), replace=False, p=w / w.sum())]


@register_strategy
class Pareto(Strategy):
    name = "pareto"

    @dataclass(frozen=True)
    class Params:
        cost: Literal["params", "flops"] = "params"
        candidates: int = field(default=8, metadata=rule(ge=1))   # children generated (and costed) per round
        accept: int = field(default=2, metadata=rule(ge=1))       # of which this many are trained

    def __init__(self, params: Any, mutator: Any, seed: int):
        super().__init__(params, mutator, seed)
        self.queue: list[Proposal] = []
        self.objectives = ("val_acc", params.cost)
        self.directions = ("maximize", "minimize")

    def objective_values(self, result: TrialResult) -> tuple[float, ...]:
        return (result.values[0], float(getattr(result, self.p.cost)))

    def propose(self, population: Population) -> Proposal | None:
        if not self.queue:
            self._round(population)
        return self.queue.pop(0) if self.queue else None

    def _round(self, population: Population) -> None:
        front = population.pareto_front(self.p.cost)
        if not front:
            return
        ref = np.array([max(1.0, float(getattr(m, self.p.cost))) for m in population])
        front_costs = np.array([max(1.0, float(getattr(m, self.p.cost))) for m in front])
        w = 1.0 / np.maximum(kde_density(np.log(ref), np.log(front_costs)), 1e-12)
        cands: list[tuple[Proposal, float]] = []
        for _ in range(self.p.candidates):
            parent = front[int(self.rng.choice(len(front), p=w / w.sum()))]
            prop = self._proposal(parent.id)
            if prop is None:
                continue
            c = float(self.mutator.cost(parent.id, prop.actions)[self.p.cost])
            cands.append((prop, max(1.0, c)))
        if not cands:
            return
        keep = inverse_density_choice(self.rng, np.array([c for _, c in cands]), ref, self.p.accept)
        self.queue.extend(cands[i][0] for i in sorted(keep))

    def observe(self, result: TrialResult, population: Population) -> None:
        self.observed += 1

    def _state(self) -> dict[str, Any]:
        return {"queue": [p.to_json() for p in self.queue]}

    def _load(self, s: dict[str, Any]) -> None:
        self.queue = [Proposal.from_json(p) for p in s["queue"]]

