"""Pareto dominance, the one definition used by the population, the leaderboard ranking and the plots.

``signs`` gives each objective's direction: ``+1`` to maximise, ``-1`` to minimise. ``a`` dominates
``b`` when it is at least as good on every objective and strictly better on one.
"""
from __future__ import annotations

from typing import Sequence


def dominates(a: Sequence[float], b: Sequence[float], signs: Sequence[float]) -> bool:
    better_or_equal = all(s * x >= s * y for x, y, s in zip(a, b, signs))
    return better_or_equal and any(s * x > s * y for x, y, s in zip(a, b, signs))


def non_dominated(points: Sequence[Sequence[float]], signs: Sequence[float]) -> list[int]:
    """Indices (in input order) of the points no other point dominates."""
    return [i for i, p in enumerate(points) if not any(dominates(q, p, signs) for q in points)]
