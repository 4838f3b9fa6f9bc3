"""Fixed search-parameter domains as Optuna distributions, from plain descriptions.

``spaces`` (and strategies) describe a domain as a list of choices or ``{"low", "high"}`` because
they must not import Optuna; the leaderboard and the sampler strategies turn those into
distributions here. :func:`contains` uses only the distributions' public attributes.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from morphnas.search.errors import LeaderboardError


def to_distribution(name: str, domain: Any) -> BaseDistribution:
    """A fixed Optuna distribution from a plain domain description.

    ``domain`` is an Optuna distribution, a list/tuple of choices (categorical), or a mapping
    ``{"low": a, "high": b, "step": s?, "log": bool?}`` (int if ``low``/``high``/``step`` are ints,
    else float).
    """
    if isinstance(domain, BaseDistribution):
        return domain
    if isinstance(domain, (list, tuple)):
        if not domain:
            raise LeaderboardError(f"search param {name!r}: an empty list of choices; give at least one")
        return CategoricalDistribution(tuple(domain))
    if isinstance(domain, Mapping) and "low" in domain and "high" in domain:
        low, high, step, log = domain["low"], domain["high"], domain.get("step"), bool(domain.get("log", False))
        if not low <= high:
            raise LeaderboardError(f"search param {name!r}: `low <= high` must hold, but got (low={low}, high={high})")
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high, step or 1)):
            return IntDistribution(low, high, log=log, step=step or 1)
        return FloatDistribution(float(low), float(high), log=log, step=step)
    raise LeaderboardError(f"search param {name!r}: cannot read domain {domain!r}; give a list of choices "
                      f"or {{low: .., high: ..}}")


def point_distribution(value: Any) -> BaseDistribution:
    """A one-point domain: the value is recorded, but parameter importance ignores it."""
    if isinstance(value, int) and not isinstance(value, bool):
        return IntDistribution(value, value)
    if isinstance(value, float) and math.isfinite(value):
        return FloatDistribution(value, value)
    return CategoricalDistribution((value,))


def contains(dist: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` is a point of ``dist``: the check Optuna makes before it stores a trial,
    through the public ``to_internal_repr`` and the distribution's bounds."""
    try:
        v = dist.to_internal_repr(value)
    except (ValueError, TypeError):
        return False
    if isinstance(dist, CategoricalDistribution):
        return 0 <= int(v) < len(dist.choices)
    if isinstance(dist, IntDistribution):
        return dist.low <= v <= dist.high and (v - dist.low) % dist.step == 0
    if isinstance(dist, FloatDistribution):
        if dist.step is None:
            return dist.low <= v <= dist.high
        k = (v - dist.low) / dist.step
        return dist.low <= v <= dist.high and abs(k - round(k)) < 1.0e-8
    return False
