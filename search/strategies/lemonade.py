"""LEMONADE-style multi-objective search (Elsken, Metzen, Hutter, ICLR 2019): accuracy against costs.

Objectives: validation accuracy (maximised) and every cost in ``cost`` (minimised): ``params``,
``flops`` and ``latency_ms`` (measured by each trial on its worker, search/trial/latency.py). The Optuna
study gets all of them, so optuna-dashboard draws the front. Each round:

1. the parents are the current Pareto front of the population over all objectives;
2. a kernel density estimate is fitted to the parents' *cheap* objectives (log params and/or log
   FLOPs: what a child's cost is known by before it is trained; latency is measured only when a
   trial runs, so FLOPs stand in for it when it is the only cost);
3. ``candidates`` children are drawn, the parent of each with probability proportional to
   1 / density (sparse regions of the front get explored), each child made by the action space's
   random morphs: growing morphs are exact, shrinking ones (``remove_layer``, ``prune_channels``,
   ``remove_branch``, ``remove_skip``, ``shrink_kernel``) approximate, and their children are
   fine-tuned with distillation from the parent (``finetune.distill: auto``);
4. each candidate's cheap costs are counted *without training it* (the mutator applies the morphs),
   and ``accept`` of them are kept, again with probability proportional to 1 / density: only those
   are trained.

Accepted proposals wait in ``queue`` (saved with the run state) until a trial slot takes them; a
new round starts when the queue is empty. Constraints (``actions.constraints``) bound every child
the action space proposes; ``max_latency_ms`` is checked by the worker, which refuses a slower child
before training it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from morphnas.morphism.schema import SchemaError, rule
from morphnas.search.state.population import Member, Population
from morphnas.search.state.records import Proposal, TrialResult
from morphnas.search.strategies.base import Strategy, StrategyError, register_strategy

Cost = Literal["params", "flops", "latency_ms"]
CHEAP = ("params", "flops")        # costs a proposal's counts give before training


def _cost_names(value: Any, key: str) -> Any:
    """``cost: params`` or ``cost: [params, latency_ms]``: one name or a list of distinct names."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        if not value:
            raise SchemaError(f"{key!r} is empty; name at least one cost, e.g. [params]")
        if len(set(map(str, value))) != len(value):
            raise SchemaError(f"{key!r}: {list(value)!r} names a cost twice; list each once")
    return value


def _as_2d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    return a[:, None] if a.ndim == 1 else a


def kde_density(points: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Gaussian product-kernel KDE of ``points`` ((n,) or (n, d)) evaluated ``at`` ((m,) or (m, d)).

    Bandwidth per dimension: Scott's rule 1.06 σ n^(-1/(d+4)), at least 0.1 (in log units: 10%)."""
    pts, q = _as_2d(points), _as_2d(at)
    n, d = pts.shape
    if n > 1:
        h = np.maximum(1.06 * pts.std(axis=0) * n ** (-1.0 / (d + 4)), 0.1)
    else:
        h = np.full(d, 0.5)
    z = (q[:, None, :] - pts[None, :, :]) / h
    return np.exp(-0.5 * (z ** 2).sum(-1)).sum(1) / (n * float(np.prod(h)) * (2 * math.pi) ** (d / 2))


def inverse_density_choice(rng: np.random.Generator, costs: np.ndarray, reference: np.ndarray, k: int) -> list[int]:
    """``k`` distinct indices into ``costs`` ((m,) or (m, d), positive), each drawn with probability
    ~ 1 / the density of ``reference``'s costs at it (both in log space)."""
    w = 1.0 / np.maximum(kde_density(np.log(_as_2d(reference)), np.log(_as_2d(costs))), 1e-12)
    return [int(i) for i in rng.choice(len(w), size=min(k, len(w)), replace=False, p=w / w.sum())]


@register_strategy
class Lemonade(Strategy):
    name = "lemonade"

    @dataclass(frozen=True)
    class Params:
        # minimised beside validation accuracy: one name or a list (params, flops, latency_ms)
        cost: tuple[Cost, ...] = field(default=("params",), metadata=rule(parse=_cost_names))
        candidates: int = field(default=8, metadata=rule(ge=1))   # children generated (and costed) per round
        accept: int = field(default=2, metadata=rule(ge=1))       # of which this many are trained
        parents: Literal["front", "population"] = "front"         # LEMONADE: the front; or every member

        def _validate(self, where: str) -> None:
            if self.accept > self.candidates:
                raise StrategyError(f"config '{where}.accept': {self.accept} is more than candidates {self.candidates}; "
                                    f"of the candidates costed each round, accept are trained (set accept <= candidates)")

    def __init__(self, params: Any, mutator: Any, seed: int):
        super().__init__(params, mutator, seed)
        self.queue: list[Proposal] = []
        costs = tuple(params.cost)
        self.objectives = ("val_acc", *costs)
        self.directions = ("maximize", *("minimize",) * len(costs))
        self.cheap = tuple(c for c in costs if c in CHEAP) or ("flops",)

    def objective_values(self, result: TrialResult) -> tuple[float, ...]:
        out = [result.values[0]]
        for c in self.p.cost:
            v = getattr(result, c)
            out.append(float("nan") if v is None else float(v))   # not finite: recorded FAIL, with why
        return tuple(out)

    def propose(self, population: Population) -> Proposal | None:
        if not self.queue:
            self._round(population)
        return self.queue.pop(0) if self.queue else None

    def _cheap_of(self, m: Member) -> list[float]:
        return [max(1.0, float(getattr(m, c))) for c in self.cheap]

    def _round(self, population: Population) -> None:
        parents = population.pareto_front(self.p.cost) if self.p.parents == "front" else list(population)
        if not parents:
            return
        ref = np.array([self._cheap_of(m) for m in parents])
        w = 1.0 / np.maximum(kde_density(np.log(ref), np.log(ref)), 1e-12)
        cands: list[tuple[Proposal, list[float]]] = []
        for _ in range(self.p.candidates):
            parent = parents[int(self.rng.choice(len(parents), p=w / w.sum()))]
            prop = self._proposal(parent.id)
            if prop is None:
                continue
            c = self.mutator.cost(parent.id, prop.actions)
            cands.append((prop, [max(1.0, float(c[k])) for k in self.cheap]))
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
