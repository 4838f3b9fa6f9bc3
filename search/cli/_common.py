"""Argument helpers shared by the ``morphnas`` commands.

Values that argparse would reject with a two-line usage message (a bad ``--classes`` or
``--dtype``) are parsed here instead, so every user mistake ends as one line and exit code 2. Sizes
have upper bounds too: ``--classes 99999999999`` or ``--batch 100000000`` would otherwise end in an
allocator traceback, and a ``--seed`` beyond 64 bits in an overflow inside torch.
"""
from __future__ import annotations

import math
from typing import Any

import networkx as nx
import torch

from morphnas.morphism.errors import did_you_mean
from morphnas.morphism.lint import lint_problems
from morphnas.search.cli.registry import CLIError
from morphnas.spaces.resolve import resolve_network

DTYPES = {"float32": torch.float32, "float64": torch.float64}


MAX_CLASSES = 1_000_000          # far above any dataset; a typo'd size must not reach the allocator
MAX_BATCH = 4096
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def positive_int(value: str | int | None, flag: str, limit: int | None = None) -> int | None:
    """``None`` stays ``None``; otherwise an int in 1..``limit`` or a :class:`CLIError` naming ``flag``."""
    if value is None:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise CLIError(f"{flag} must be a positive integer, got {value!r}") from None
    if n < 1:
        raise CLIError(f"{flag} must be a positive integer, got {value!r}")
    if limit is not None and n > limit:
        raise CLIError(f"{flag} must be at most {limit:,}, got {value!r}")
    return n


def int_arg(value: str | int | None, flag: str) -> int | None:
    """``None`` stays ``None``; otherwise a 64-bit integer (what torch and numpy seeds hold)."""
    if value is None:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise CLIError(f"{flag} must be an integer, got {value!r}") from None
    if not INT64_MIN <= n <= INT64_MAX:
        raise CLIError(f"{flag} must fit in 64 bits ({INT64_MIN}..{INT64_MAX}), got {value!r}")
    return n


def positive_float(value: str, flag: str) -> float:
    """A finite number > 0 (tolerances): ``-1`` or ``nan`` would make every comparison fail."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise CLIError(f"{flag} must be a number, got {value!r}") from None
    if not math.isfinite(x) or x <= 0:
        raise CLIError(f"{flag} must be positive (a finite number > 0), got {value!r}; e.g. {flag} 1e-5")
    return x


def load_net(spec: str, **kwargs: Any):
    """:func:`resolve_network`, plus the graph check a saved file may fail (a hand-edited
    ``network.json`` with a cycle would otherwise end in a KeyError deep in shape inference)."""

    net = resolve_network(spec, **kwargs)
    if not nx.is_directed_acyclic_graph(net.graph):
        problems = [p for p in lint_problems(net) if p.startswith("cycle")] or ["a cycle"]
        raise CLIError(f"network {spec!r} is not a valid network ({problems[0]}); rebuild it or restore its "
                       f"network.json")
    return net


def add_force(p: Any, what: str) -> None:
    p.add_argument("--force", action="store_true", help=f"replace an existing {what} (atomically)")


def json_safe(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with NaN/inf floats as ``null`` and their keys listed under ``non_finite`` (plus
    ``"nan": true``): bare ``NaN`` is not JSON, and strict parsers refuse it."""
    bad = [k for k, v in d.items() if isinstance(v, float) and not math.isfinite(v)]
    if not bad:
        return d
    return {**{k: (None if k in bad else v) for k, v in d.items()}, "nan": True, "non_finite": bad}


def dtype_arg(value: str) -> torch.dtype:
    if value in DTYPES:
        return DTYPES[value]
    raise CLIError(f"--dtype must be one of {', '.join(DTYPES)}, got {value!r}{did_you_mean(value, DTYPES, known=None)}")
