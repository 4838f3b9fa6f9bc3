"""The strategy interface: ``propose`` a child, ``observe`` a finished trial, save/restore state.

Who calls what, and when (the driver, ``search/run/driver.py``, is the only caller):

* ``propose(population)`` whenever a trial slot is free. Returns a :class:`Proposal` (parent id +
  actions), or ``None`` when the strategy must wait for results in flight (e.g. hill climbing
  between generations). The driver writes the new state to disk *before* the trial starts.
* ``observe(result, population)`` once per finished trial, COMPLETE or FAIL, after the driver has
  added a completed child to the population.
* ``state_dict()`` / ``load_state_dict(d)``: a JSON-able snapshot including the rng state, written
  with the run state after every propose/observe, so a resumed run continues the same sequence.

Strategies are pure logic: networks are reached through a :class:`Mutator` (random actions for a
parent, fixed-domain parameters -> actions, and the cheap cost of a child), which the driver
implements with the action space and tests replace by a fake. No Ray, no training here.

A strategy module registers its class with :func:`register_strategy`; the package imports every
public module of ``strategies/`` (see ``strategies/__init__.py``), so a new strategy is one new
file. Its ``Params`` is a frozen dataclass checked by :func:`morphnas.morphism.schema.build`
(bounds as field metadata, ``Literal`` for choices). Search parameters a strategy adds to the
mutator's (e.g. TPE's ``parent_rank``) are declared by :meth:`Strategy.extra_domains`, so the
driver gives the leaderboard their fixed domains without knowing any strategy by name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Protocol, Sequence, TypeVar

import numpy as np

from morphnas.morphism.errors import did_you_mean
from morphnas.morphism.schema import build
from morphnas.search.errors import StrategyError
from morphnas.search.state.population import Population
from morphnas.search.state.records import Proposal, TrialResult
from morphnas.spaces.actions import Action

__all__ = ["Mutator", "Strategy", "StrategyError", "REGISTRY", "register_strategy", "strategy_class",
           "parse_params"]


class Mutator(Protocol):
    """What a strategy may ask about networks (implemented by the driver from the action space)."""

    def random_actions(self, parent_id: str, rng: np.random.Generator
                       ) -> tuple[tuple[Action, ...], dict[str, Any]] | None:
        """Random valid actions (how many: the action space's ``actions_per_child``) applied in
        sequence to the parent, plus their fixed-domain search params; ``None`` when the parent
        admits no valid action."""

    def param_space(self) -> dict[str, Any]:
        """Optuna distributions of the fixed-domain action parameters (for samplers)."""

    def actions_from_params(self, parent_id: str, params: dict[str, Any], seed: int
                            ) -> tuple[Action, ...] | None:
        """Concrete actions for a parent from sampler parameters; ``None`` if they do not apply."""

    def cost(self, parent_id: str, actions: Sequence[Action]) -> dict[str, float]:
        """Cheap objectives of the child (``params``, ``flops``) without training it."""


def new_rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return rng.bit_generator.state


def set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state


class Strategy:
    """Base class. Subclasses set ``name`` and ``Params`` and implement ``propose``/``observe``
    plus ``_state``/``_load`` for their own bookkeeping (the rng is saved here)."""

    name: ClassVar[str] = ""
    objectives: ClassVar[tuple[str, ...]] = ("val_acc",)
    directions: ClassVar[tuple[str, ...]] = ("maximize",)

    @dataclass(frozen=True)
    class Params:
        pass

    def __init__(self, params: Any, mutator: Mutator, seed: int):
        self.p = params
        self.mutator = mutator
        self.rng = new_rng(seed)
        self.proposed = 0
        self.observed = 0

    # --- to implement -----------------------------------------------------------------------
    def propose(self, population: Population) -> Proposal | None:
        raise NotImplementedError

    def observe(self, result: TrialResult, population: Population) -> None:
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        return {}

    def _load(self, state: dict[str, Any]) -> None:
        pass

    # --- provided ---------------------------------------------------------------------------
    def extra_domains(self) -> dict[str, Any]:
        """Fixed domains of the search params this strategy adds to the mutator's, as plain
        descriptions (a list of choices or ``{"low": .., "high": ..}``); none by default."""
        return {}

    def objective_values(self, result: TrialResult) -> tuple[float, ...]:
        """The values a finished trial is ranked by (``(val_acc,)`` unless multi-objective)."""
        return result.values[:1]

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rng": rng_state(self.rng), "proposed": self.proposed,
                "observed": self.observed, "own": self._state()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        if d.get("name") != self.name:
            raise StrategyError(f"saved strategy state is for {d.get('name')!r}, not {self.name!r}")
        set_rng_state(self.rng, d["rng"])
        self.proposed, self.observed = int(d["proposed"]), int(d["observed"])
        self._load(d["own"])

    def _proposal(self, parent_id: str, extra: dict[str, Any] | None = None) -> Proposal | None:
        got = self.mutator.random_actions(parent_id, self.rng)
        if got is None:
            return None
        actions, search = got
        self.proposed += 1
        return Proposal(parent_id, tuple(actions), {**search, **(extra or {})}, f"p{self.proposed}")


def parse_params(cls: type, knobs: dict[str, Any], strategy: str) -> Any:
    """The strategy's checked ``Params`` from its knobs in the ``strategy:`` section."""
    return build(cls, knobs, "strategy", error=StrategyError, label="config key")


# ------------------------------------------------------------------------------------ registry
REGISTRY: dict[str, type[Strategy]] = {}
"""Strategy name -> class, filled by :func:`register_strategy` as the strategy modules load."""

S = TypeVar("S", bound=type)


def register_strategy(cls: S) -> S:
    """Class decorator: make ``cls`` selectable as ``strategy.name: <cls.name>``."""
    name = getattr(cls, "name", "")
    if not name:
        raise TypeError(f"strategy class {cls.__qualname__} must set a non-empty class attribute 'name'")
    other = REGISTRY.get(name)
    if other is not None and other is not cls:
        raise TypeError(f"strategy name {name!r} is registered twice ({other.__module__} and {cls.__module__}); "
                        f"rename one of them")
    REGISTRY[name] = cls  # type: ignore[assignment]
    return cls


def strategy_class(name: Any) -> type[Strategy]:
    """The registered class called ``name`` (the strategy modules must be loaded: see the package)."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise StrategyError(f"config key 'strategy.name': unknown strategy {name!r}"
                            f"{did_you_mean(name, REGISTRY, known='choose from')}")
    return REGISTRY[name]


Factory = Callable[[dict[str, Any], Mutator, int], Strategy]
