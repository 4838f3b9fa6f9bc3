"""Built-in modules by name, so the ``module`` op works without a file (``module=D``), and
:func:`as_module_spec`, which resolves any way of naming a module (spec, mapping, JSON, file, name).

The same modules ship as YAML in ``configs/modules/`` for users to copy and edit.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import did_you_mean
from .spec import ModuleSpec, ModuleSpecError, load_module_spec, parse_module_spec


def _edges(*rows):
    return [{"name": n, "from": a, "to": b, "kernel": k} for n, a, b, k in rows]


def _d(k1, k2, k3, k4, k5, k6, k7):
    return _edges(("F1", "s", "a", k1), ("F2", "s", "b", k2), ("F3", "a", "c", k3), ("F4", "b", "c", k4),
                  ("F5", "a", "t", k5), ("F6", "c", "t", k6), ("F7", "b", "t", k7))


MODULES: dict[str, dict] = {
    # The paper's module (D): G = F5 F1 + F6 (F3 F1 + F4 F2) + F7 F2; not simple morphable.
    "D": {"name": "D", "edges": _d(3, 3, 3, 3, 3, 3, 3)},
    # Module (D) with 1x1 inner edges (effective kernel 5).
    "D_mixed": {"name": "D_mixed", "edges": _d(3, 1, 1, 1, 1, 3, 3)},
    # The paper's morph_1c1 branch beside the 3x3 path (simple morphable).
    "1c1": {"name": "1c1", "edges": [{"name": "main", "from": "s", "to": "t", "kernel": 3},
                                     {"name": "conv1", "from": "s", "to": "m", "kernel": 1, "bn": True, "act": "prelu"},
                                     {"name": "conv2", "from": "m", "to": "t", "kernel": 1, "bn": True}]},
    # Two 3x3 convs in a chain (TYPE-I), effective kernel 5.
    "3c3": {"name": "3c3", "edges": [{"name": "conv1", "from": "s", "to": "m", "kernel": 3, "bn": True, "act": "relu"},
                                     {"name": "conv2", "from": "m", "to": "t", "kernel": 3}]},
}


def builtin_module(name: str) -> ModuleSpec:
    if name not in MODULES:
        hint = did_you_mean(name, MODULES, known=None)
        raise ModuleSpecError(f"module {name!r} is neither a file nor a built-in module{hint + ' ' if hint else '; '}"
                              f"built-in: {', '.join(MODULES)}; or pass a .yaml/.json module file")
    return parse_module_spec(MODULES[name], where=f"built-in module {name!r}")


def as_module_spec(spec: "ModuleSpec | dict | str | Path") -> ModuleSpec:
    """Accept a spec, a mapping, inline JSON (``'{"edges": [...]}'``), a path to a module file, or the
    name of a built-in module (:mod:`.library`)."""
    if isinstance(spec, ModuleSpec):
        return spec
    if isinstance(spec, dict):
        return parse_module_spec(spec)
    text = str(spec).strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ModuleSpecError(f"inline module JSON is not valid: {err}") from None
        return parse_module_spec(data, where="inline module")
    p = Path(text)
    if p.suffix.lower() in (".yaml", ".yml", ".json") or p.exists() or "/" in text:
        return load_module_spec(p)
    return builtin_module(text)
