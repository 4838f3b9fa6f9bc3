"""The driver's :class:`~.strategies.base.Mutator`: the action space applied to saved members.

Strategies never touch networks; this adapter loads a member's network (cached), asks the action
space for valid random actions or for the actions that fixed-domain sampler params mean, and
remembers each sampled child's counts so the Pareto strategy's cost query is free.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np

from morphnas.morphism.errors import MorphnasError
from morphnas.morphism.graph import Network
from morphnas.search.study.domains import to_distribution
from morphnas.spaces.actions import Action, ActionSpace


def domain_description(domain: Any) -> Any:
    """A space ``Domain`` as the leaderboard's plain domain (list of choices or {low, high})."""
    if domain.kind == "categorical":
        return list(domain.choices)
    if domain.kind == "int":
        return {"low": int(domain.low), "high": int(domain.high)}
    return {"low": float(domain.low), "high": float(domain.high)}


class SpaceMutator:
    def __init__(self, space: ActionSpace, load: Callable[[str], Network], seed_id: str = "m0",
                 cache_size: int = 8):
        self.space = space
        self.load_member = load
        self.seed_id = seed_id
        self._nets: OrderedDict[str, Network] = OrderedDict()
        self._cache_size = cache_size
        self._costs: dict[tuple, dict[str, float]] = {}
        # Why the last draw found no valid morph (e.g. "params 30602 > max_params 20300"): the
        # driver names it when the strategy gives up, so a too-tight constraint is visible.
        self.last_refusal: str | None = None

    def net(self, member_id: str) -> Network:
        if member_id not in self._nets:
            self._nets[member_id] = self.load_member(member_id)
            while len(self._nets) > self._cache_size:
                self._nets.popitem(last=False)
        self._nets.move_to_end(member_id)
        return self._nets[member_id]

    @staticmethod
    def _key(parent_id: str, actions: Sequence[Action]) -> tuple:
        return (parent_id, tuple(repr(a.to_json()) for a in actions))

    def _remember(self, parent_id: str, sample: Any) -> None:
        c = sample.counts
        self._costs[self._key(parent_id, sample.actions)] = {"params": float(c.params), "flops": float(c.flops)}

    def random_actions(self, parent_id: str, rng: np.random.Generator):
        try:
            sample = self.space.sample_proposal(self.net(parent_id), rng)
        except MorphnasError as e:
            self.last_refusal = str(e)
            return None
        self._remember(parent_id, sample)
        return tuple(sample.actions), dict(sample.search_params)

    def search_domains(self) -> dict[str, Any]:
        """Fixed domains of the sampler-facing params, as plain descriptions."""
        return {k: domain_description(d) for k, d in self.space.param_domains(self.net(self.seed_id)).items()}

    def param_space(self) -> dict[str, Any]:
        return {k: to_distribution(k, d) for k, d in self.search_domains().items()}

    def actions_from_params(self, parent_id: str, params: dict[str, Any], seed: int):
        try:
            sample = self.space.actions_from_params(self.net(parent_id), params, seed)
        except MorphnasError as e:
            self.last_refusal = str(e)
            return None
        self._remember(parent_id, sample)
        return tuple(sample.actions)

    def cost(self, parent_id: str, actions: Sequence[Action]) -> dict[str, float]:
        key = self._key(parent_id, actions)
        if key not in self._costs:
            child, c = self.space.estimate(self.net(parent_id), actions)
            self._costs[key] = {"params": float(c.params), "flops": float(c.flops)}
        return self._costs[key]

