"""An Optuna-sampler policy (TPE by default): the sampler picks the morph actions.

Trial parameters have fixed domains (docs/design.md, "Numerics": a categorical whose choices change between trials
is refused): ``parent_rank`` (the parent is the member at that rank by validation accuracy, capped
at the population size) plus, per action, the mutator's fixed-domain parameters (op from the
enabled list, relative position...). The mutator maps them to concrete actions for the parent; a
combination that does not apply is told to the sampler as FAIL and another is asked for.

The strategy owns an in-memory Optuna study (ask/tell), *not* the run's leaderboard. Its state is
the list of finished and pending parameter sets; restoring re-adds them to a fresh study. The
sampler is re-seeded from (seed, number of asks) before every ask, so a resumed run asks the same
sequence as an uninterrupted one would.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution

from morphnas.morphism.schema import rule
from morphnas.search.state.population import Population
from morphnas.search.state.records import Proposal, TrialResult
from morphnas.search.strategies.base import Strategy, register_strategy
from morphnas.search.study.domains import to_distribution


@register_strategy
class TPEPolicy(Strategy):
    name = "tpe"

    @dataclass(frozen=True)
    class Params:
        sampler: Literal["tpe", "random"] = "tpe"
        top_k: int = field(default=3, metadata=rule(ge=1))              # parent = member at rank parent_rank < top_k
        n_startup_trials: int = field(default=4, metadata=rule(ge=0))
        max_tries: int = field(default=20, metadata=rule(ge=1))         # infeasible asks before giving up on a proposal

    def __init__(self, params: Any, mutator: Any, seed: int):
        super().__init__(params, mutator, seed)
        self.seed = seed
        self.asks = 0
        self.done: list[dict[str, Any]] = []        # {"params", "value"} of finished trials
        self.pending: dict[str, dict[str, Any]] = {}  # proposal id -> params
        self._numbers: dict[str, int] = {}           # proposal id -> trial number in self.study
        self._dists: dict[str, Any] | None = None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(direction="maximize")

    def _distributions(self) -> dict[str, Any]:
        # Fixed for the whole search (they depend on the seed only), so computed once, on first use:
        # before the seed exists there is nothing to compute them from.
        if self._dists is None:
            extra = {k: to_distribution(k, v) for k, v in self.extra_domains().items()}
            self._dists = {**extra, **self.mutator.param_space()}
        return self._dists

    def extra_domains(self) -> dict[str, Any]:
        """``parent_rank``: the parent is the member at this rank by validation accuracy."""
        return {"parent_rank": {"low": 0, "high": max(0, self.p.top_k - 1)}}

    def _sampler(self) -> optuna.samplers.BaseSampler:
        s = (self.seed * 1_000_003 + self.asks) % 2**32
        if self.p.sampler == "random":
            return optuna.samplers.RandomSampler(seed=s)
        return optuna.samplers.TPESampler(seed=s, n_startup_trials=self.p.n_startup_trials)

    def propose(self, population: Population) -> Proposal | None:
        ranked = population.ranked()
        if not ranked:
            return None
        dists = self._distributions()
        for _ in range(self.p.max_tries):
            self.study.sampler = self._sampler()
            self.asks += 1
            trial = self.study.ask(dists)
            params = dict(trial.params)
            parent = ranked[min(int(params["parent_rank"]), len(ranked) - 1)]
            actions = self.mutator.actions_from_params(parent.id, params, int(self.rng.integers(2**31 - 1)))
            if actions is None:
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            self.proposed += 1
            pid = f"p{self.proposed}"
            self.pending[pid] = params
            self._numbers[pid] = trial.number
            return Proposal(parent.id, tuple(actions), params, pid)
        return None

    def observe(self, result: TrialResult, population: Population) -> None:
        self.observed += 1
        pid = result.extra.get("proposal_id")
        params = self.pending.pop(pid, None)
        if params is None:
            return
        number = self._numbers.pop(pid)
        if result.state == "COMPLETE" and result.values:
            self.study.tell(number, float(result.values[0]))
            self.done.append({"params": params, "value": float(result.values[0])})
        else:
            self.study.tell(number, state=optuna.trial.TrialState.FAIL)

    def _state(self) -> dict[str, Any]:
        dists = None if self._dists is None else {k: distribution_to_json(d) for k, d in self._dists.items()}
        return {"asks": self.asks, "done": list(self.done), "pending": dict(self.pending), "distributions": dists}

    def _load(self, s: dict[str, Any]) -> None:
        self.asks = int(s["asks"])
        self.done = list(s["done"])
        self.study = optuna.create_study(direction="maximize")
        self.pending, self._numbers = {}, {}
        if s["distributions"] is None:      # saved before the first ask: nothing asked, nothing to re-add
            return
        dists = self._dists = {k: json_to_distribution(v) for k, v in s["distributions"].items()}
        for d in self.done:
            self.study.add_trial(optuna.trial.create_trial(params=d["params"], distributions=dists, value=d["value"]))
        for pid, params in s["pending"].items():
            self.study.enqueue_trial(params)
            trial = self.study.ask(dists)
            self.pending[pid], self._numbers[pid] = dict(trial.params), trial.number

