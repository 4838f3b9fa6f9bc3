"""Search strategies behind one interface (``base.Strategy``: propose / observe / state).

Every public module of this package is imported here (``pkgutil``) and must register a strategy
with :func:`~.base.register_strategy`: a module that registers nothing is an error naming the
file, so a strategy can neither be forgotten in a hand-written list nor silently skipped.

``build_strategy(section, mutator, seed)`` turns the config's ``strategy:`` section (``name`` plus
that strategy's knobs) into an instance, naming unknown names and knobs with close matches.
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

from morphnas.search.strategies.base import (
    REGISTRY,
    Mutator,
    Strategy,
    StrategyError,
    parse_params,
    register_strategy,
    strategy_class,
)

FRAMEWORK = ("base", "mutator")   # modules of this package that are no strategy


def discover(package: str = __name__, path: list[str] | None = None) -> tuple[str, ...]:
    """Import every public module of ``package``; each must register at least one strategy.

    Returns the registered names in module order. The framework modules (:data:`FRAMEWORK`: the
    interface and the action-space adapter) register nothing by design.
    """
    for info in sorted(pkgutil.iter_modules(path if path is not None else __path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in FRAMEWORK:
            continue
        mod = importlib.import_module(f"{package}.{info.name}")
        if not any(cls.__module__ == mod.__name__ for cls in REGISTRY.values()):
            where = Path(getattr(mod, "__file__", "") or info.name)
            raise StrategyError(f"strategy module {where.name} ({mod.__name__}) registers no strategy; decorate its "
                                f"class with @register_strategy or make the module private (a leading '_')")
    return tuple(REGISTRY)


NAMES = discover()


def check_section(section: dict[str, Any]) -> Any:
    """Validate the ``strategy:`` section; returns the parsed ``Params``."""
    knobs = {k: v for k, v in section.items() if k != "name"}
    cls = strategy_class(section.get("name"))
    return parse_params(cls.Params, knobs, cls.name)


def build_strategy(section: dict[str, Any], mutator: Mutator, seed: int) -> Strategy:
    cls = strategy_class(section.get("name"))
    return cls(check_section(section), mutator, seed)


__all__ = ["Mutator", "Strategy", "StrategyError", "build_strategy", "check_section", "discover", "register_strategy",
           "strategy_class", "NAMES"]
