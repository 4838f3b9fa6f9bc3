"""The vocabulary of import rules: what a rule returns, and the checks rules share.

Each layer kind says how a traced ``torch`` module or function becomes that kind (its
``import_modules`` / ``import_functions``, :mod:`.kinds.base`); :mod:`.importer` looks the rules up.
A rule returns a :class:`Convert`: the layer specs to chain (empty = the op is a no-op alias), their
tensors, and whether the op worked in place; or :class:`Unsupported` with a reason that names the op
and the offending setting (raising ``ValueError(reason)`` means the same). Only settings the IR
computes exactly are accepted: e.g. a ``LeakyReLU`` with a non-default slope or a non-square kernel
is refused, not approximated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:  # kinds import this module; the spec type is for annotations only
    from .kinds.base import LayerSpec


@dataclass
class Convert:
    layers: list[LayerSpec] = field(default_factory=list)
    params: list[dict[str, torch.Tensor]] = field(default_factory=list)
    inplace: bool = False
    # Name the edge after the enclosing module rather than the call: torchvision's StochasticDepth
    # module calls a function, and the module is what the user sees.
    by_scope: bool = False


@dataclass
class Unsupported:
    reason: str


def square(value: Any, what: str, owner: str) -> int:
    """``3`` or ``(3, 3)`` -> 3; anything else is unsupported (the IR has square kernels only)."""
    if isinstance(value, int):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2 and value[0] == value[1] and isinstance(value[0], int):
        return value[0]
    if isinstance(value, (tuple, list)) and len(value) == 1 and isinstance(value[0], int):
        return value[0]
    raise ValueError(f"{owner} with non-square {what} {value!r}")


def tensors(mod: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of a module's parameters and buffers, by state-dict name."""
    return {k: t.detach().clone() for k, t in mod.state_dict().items()}


def fn_name(target: Any) -> str:
    """A readable name for a traced function target (``torch.cat``, ``operator.mul``)."""
    if isinstance(target, str):
        return f"Tensor.{target}"
    mod = getattr(target, "__module__", None) or ""
    mod = {"_operator": "operator", "torch._C._nn": "torch.nn.functional",
           "torch._C._VariableFunctions": "torch"}.get(mod, mod)
    return f"{mod}.{getattr(target, '__name__', repr(target))}".lstrip(".")


def extra_args(args: tuple, kwargs: dict, names: tuple[tuple[str, Any], ...], what: str) -> tuple[bool, str | None]:
    """Check a function's extra arguments against the values the IR computes (``names``: each
    argument's name and that value, ``None`` for ``inplace``); returns (inplace, problem)."""
    given = dict(zip((n for n, _ in names), args))
    if len(args) > len(names):
        return False, f"{what} with extra arguments {args[len(names):]!r}"
    given.update(kwargs)
    allowed = dict(names)
    inplace = False
    for k, v in given.items():
        if k not in allowed:
            return False, f"{what}({k}={v!r})"
        if k == "inplace":
            inplace = bool(v)
        elif v != allowed[k]:
            return False, f"{what}({k}={v!r})"
    return inplace, None
