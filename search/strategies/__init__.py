"""Search strategies behind one interface (``base.Strategy``: propose / observe / state).

``build_strategy(section, mutator, seed)`` turns the config's ``strategy:`` section (``name`` plus
that strategy's knobs) into an instance, naming unknown names and knobs with close matches.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Any

from .base import Mutator, Strategy, StrategyError, parse_params

NAMES = ("random_walk", "hill_climb", "evolution", "pareto", "tpe")


def strategy_class(name: Any) -> type[Strategy]:
    if name not in NAMES:
        close = difflib.get_close_matches(str(name), NAMES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise StrategyError(f"config key 'strategy.name': unknown strategy {name!r}; {hint}choose from {', '.join(NAMES)}")
    return importlib.import_module(f"{__name__}.{name}").STRATEGY


def check_section(section: dict[str, Any]) -> Any:
    """Validate the ``strategy:`` section; returns the parsed ``Params``."""
    knobs = {k: v for k, v in section.items() if k != "name"}
    cls = strategy_class(section.get("name"))
    return parse_params(cls.Params, knobs, cls.name)


def build_strategy(section: dict[str, Any], mutator: Mutator, seed: int) -> Strategy:
    cls = strategy_class(section.get("name"))
    return cls(check_section(section), mutator, seed)


__all__ = ["Mutator", "Strategy", "StrategyError", "build_strategy", "check_section", "strategy_class", "NAMES"]
