"""The value types of the action space: actions, parameter domains, per-op settings, constraints.

Plain frozen data with no parsing and no sampling, so the parser (:mod:`.action_parse`), the
samplers (:mod:`.action_sampling`, :mod:`.action_domains`) and the search driver can all share
them without importing each other. :class:`Constraints` doubles as the declarative schema of the
``actions.constraints`` mapping (its field metadata are the bounds :func:`~morphnas.morphism.schema.build`
checks).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from morphnas.morphism.graph import Network
from morphnas.morphism.schema import rule
from morphnas.spaces.actions.sites import Where
from morphnas.spaces.counting import Counts


@dataclass(frozen=True)
class Action:
    """One morph: op name, concrete site (None = drawn from ``seed``), op parameters, seed.

    What proposals carry and workers replay, so it round-trips through JSON unchanged.
    """

    op: str
    site: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Action":
        return cls(**d)


DomainKind = Literal["categorical", "int", "float"]


@dataclass(frozen=True)
class Domain:
    """A parameter's domain: ``kind`` is "categorical" (``choices``), "int" or "float" (low..high).

    Fixed for the whole search, so an Optuna sampler can use it: categorical ->
    ``CategoricalDistribution(choices)``, int -> ``IntDistribution(low, high)``, float ->
    ``FloatDistribution(low, high)``.
    """

    kind: DomainKind
    choices: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0

    def sample(self, rng: np.random.Generator) -> Any:
        if self.kind == "categorical":
            return self.choices[int(rng.integers(len(self.choices)))]
        if self.kind == "int":
            return int(rng.integers(int(self.low), int(self.high) + 1))
        return float(rng.uniform(self.low, self.high))

    def default(self) -> Any:
        return self.choices[0] if self.kind == "categorical" else self.low

    def values(self) -> list[Any]:
        """Representative values (to validate them against the op's parameter checks)."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    @property
    def varies(self) -> bool:
        """Whether a sampler has something to choose (single-valued params are not sampler params)."""
        return self.kind != "categorical" or len(self.choices) > 1

    def to_json(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"kind": self.kind, "choices": list(self.choices)}
        return {"kind": self.kind, "low": self.low, "high": self.high}

    def to_config(self) -> Any:
        """The domain as the ``actions:`` config writes it: a scalar, a list or ``{low, high}``."""
        if self.kind == "categorical":
            return self.choices[0] if len(self.choices) == 1 else list(self.choices)
        return {"low": self.low, "high": self.high}


@dataclass(frozen=True)
class OpSpace:
    """One enabled op: its parameter domains, sampling weight and site filter."""

    op: str
    domains: dict[str, Domain]
    weight: float = 1.0
    where: Where = Where()


def _whole(value: Any, key: str) -> Any:
    """YAML 1.1 reads ``1e6`` (no dot) as a string and ``1.0e6`` as a float: both mean a count."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


_COUNT: dict[str, Any] = dict(gt=0, parse=_whole, fix="; give a positive bound or leave the key out (unbounded)")


@dataclass(frozen=True)
class Constraints:
    """Upper bounds a network must meet (``None`` = unbounded)."""

    max_params: int | None = field(default=None, metadata=rule(**_COUNT))
    max_params_mb: float | None = field(default=None, metadata=rule(gt=0, fix=_COUNT["fix"]))
    max_flops: int | None = field(default=None, metadata=rule(**_COUNT))
    max_depth: int | None = field(default=None, metadata=rule(**_COUNT))
    # Measured, not counted: checked on the worker that trains the child (search/trial/latency.py), so
    # :meth:`violations` (the counts a proposal can be judged by before training) does not see it.
    max_latency_ms: float | None = field(default=None, metadata=rule(gt=0, fix=_COUNT["fix"]))

    def violations(self, counts: Counts) -> list[str]:
        out = []
        for key, value in (("max_params", counts.params), ("max_params_mb", counts.params_mb),
                           ("max_flops", counts.flops), ("max_depth", counts.depth)):
            bound = getattr(self, key)
            if bound is not None and value > bound:
                out.append(f"{key[4:]} {value:g} > {key} {bound:g}")
        return out


@dataclass(frozen=True)
class Sample:
    """A sampled (or mapped) proposal: the actions, the sampler-facing params, the child and its counts."""

    actions: tuple[Action, ...]
    search_params: dict[str, Any]
    child: Network
    counts: Counts
