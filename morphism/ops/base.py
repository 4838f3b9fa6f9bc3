"""The morph-op interface, its record, and the owned op registry.

An op is a small object with three methods (see :class:`MorphOp`):

* ``sites(net)`` lists every place the op can go (edge or blob names, typed by ``site_kind``);
* ``check(net, site, params)`` raises :class:`NotApplicable` with the reason, or returns;
* ``apply(net, site, params, rng)`` returns ``(new_net, record)`` and never mutates ``net``.

Parameters are a frozen dataclass per op (``Params``), built from plain dicts (CLI ``--param``,
YAML, JSON records) by :meth:`MorphOp.parse_params`, which names unknown keys and bad values.
Randomness comes only from the ``numpy.random.Generator`` handed to ``apply`` (derived from the
caller's explicit seed), so replaying a record reproduces the child bit for bit.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Sequence, cast

import numpy as np

from ..errors import MorphnasError, NotApplicable, SpecError
from ..graph import Network


@dataclass(frozen=True)
class MorphRecord:
    """What an op did: enough to replay it on the parent and to report it."""

    op: str
    site: str
    params: dict[str, Any]
    seed: int
    mode: str = "exact"               # exact-dense | exact-sparse | exact | approximate
    zero_fraction: float = 0.0        # share of exact zeros among the new/changed filter entries
    error: float | None = None        # measured or bound output error when mode is approximate
    new_edges: tuple[str, ...] = ()
    removed_edges: tuple[str, ...] = ()
    notes: str = ""

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["new_edges"] = list(self.new_edges)
        d["removed_edges"] = list(self.removed_edges)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "MorphRecord":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise SpecError(f"morph record has unknown field(s) {sorted(unknown)}")
        d = dict(d)
        d["new_edges"] = tuple(d.get("new_edges", ()))
        d["removed_edges"] = tuple(d.get("removed_edges", ()))
        return cls(**d)

    def summary(self) -> str:
        ps = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.op}@{self.site}" + (f"({ps})" if ps else "")


class MorphOp:
    """Base class of all morph ops. Subclasses set ``name``, ``site_kind``, ``Params``, and
    implement ``sites``, ``check`` and ``_apply``."""

    name: ClassVar[str] = ""
    site_kind: ClassVar[str] = "edge"   # "edge" or "blob"
    description: ClassVar[str] = ""

    if TYPE_CHECKING:  # any frozen dataclass: a nested class or an alias (``Params = SplitParams``)
        Params: ClassVar[type[Any]]
    else:
        @dataclass(frozen=True)
        class Params:
            pass

    # --- to implement --------------------------------------------------------------------------
    def sites(self, net: Network) -> list[str]:
        """Every site of ``net`` where ``check`` passes with default parameters, sorted."""
        raise NotImplementedError

    def check(self, net: Network, site: str, params: Any) -> None:
        """Raise :class:`NotApplicable` naming the site and the reason if the op cannot go there."""
        raise NotImplementedError

    def _apply(self, net: Network, site: str, params: Any, rng: np.random.Generator) -> tuple[Network, dict[str, Any]]:
        """Build the child from ``net.copy()``; return it and the extra record fields
        (mode, zero_fraction, error, new_edges, removed_edges, notes)."""
        raise NotImplementedError

    # --- optional ------------------------------------------------------------------------------------
    def example_params(self, net: Network, site: str) -> dict[str, Any]:
        """Parameters that make the op applicable at ``site`` when the defaults cannot (e.g. the
        ``module`` op needs a module file). The conformance suite calls this for every op x site it
        tests; the default ``{}`` means "the defaults work"."""
        return {}

    # --- provided --------------------------------------------------------------------------------
    def parse_params(self, raw: dict[str, Any] | Any | None) -> Any:
        """Turn a dict (strings allowed, as from the CLI) into ``Params``, naming bad keys/values."""
        if raw is None:
            return self.Params()
        if isinstance(raw, self.Params):
            return raw
        if not isinstance(raw, dict):
            raise SpecError(f"op {self.name}: params must be a mapping, got {raw!r}")
        fields = {f.name: f for f in dataclasses.fields(self.Params)}
        out = {}
        for k, v in raw.items():
            if k not in fields:
                close = difflib.get_close_matches(k, fields, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else (
                    f"; its parameters are {', '.join(fields)}" if fields else "; it takes no parameters")
                raise SpecError(f"op {self.name} has no parameter {k!r}{hint}")
            out[k] = _coerce(self.name, k, v, fields[k])
        try:
            return self.Params(**out)
        except (TypeError, ValueError) as e:
            raise SpecError(f"op {self.name}: bad parameters {raw!r}: {e}") from None

    def apply(self, net: Network, site: str, params: Any = None, seed: int = 0) -> tuple[Network, MorphRecord]:
        """Check, apply, and lint the result. ``net`` is never modified."""
        p = self.parse_params(params)
        self.check(net, site, p)
        rng = np.random.default_rng(seed)
        child, extra = self._apply(net, site, p, rng)
        from ..lint import lint
        lint(child)
        return child, MorphRecord(op=self.name, site=site, params=_jsonable(p), seed=int(seed), **extra)


def _coerce(op: str, key: str, value: Any, f: dataclasses.Field) -> Any:
    """Accept CLI strings for typed fields: '3' -> 3, 'true' -> True, '[1,3]' -> (1, 3)."""
    if not isinstance(value, str):
        return tuple(value) if isinstance(value, list) else value
    t = str(f.type)
    try:
        if t in ("int",):
            return int(value)
        if t in ("float",):
            return float(value)
        if t in ("bool",):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if t.startswith("tuple") or t.startswith("list"):
            v = json.loads(value)
            return tuple(v) if isinstance(v, list) else (v,)
        if "None" in t and value.lower() == "none":
            return None
        if "int" in t and "str" not in t:
            return int(value)
        if "float" in t and "str" not in t:
            return float(value)
    except (ValueError, json.JSONDecodeError):
        raise SpecError(f"op {op}: parameter {key!r} must be of type {t}, got {value!r}") from None
    return value


def _jsonable(p: Any) -> dict[str, Any]:
    d = dataclasses.asdict(cast(Any, p)) if dataclasses.is_dataclass(p) else dict(p)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


class OpRegistry:
    """An owned name -> op mapping (no import-time global side effects beyond the default one)."""

    def __init__(self) -> None:
        self._ops: dict[str, MorphOp] = {}

    def register(self, op: MorphOp) -> MorphOp:
        if not op.name:
            raise ValueError(f"{type(op).__name__} has no name")
        if op.name in self._ops:
            raise ValueError(f"op {op.name!r} is registered twice")
        self._ops[op.name] = op
        return op

    def get(self, name: str) -> MorphOp:
        try:
            return self._ops[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._ops, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise MorphnasError(f"unknown morph op {name!r}; {hint}known ops: {', '.join(sorted(self._ops))}") from None

    def names(self) -> list[str]:
        return sorted(self._ops)

    def __contains__(self, name: str) -> bool:
        return name in self._ops

    def __iter__(self):
        return iter(self._ops[n] for n in self.names())


def apply_op(net: Network, op: str | MorphOp, site: str | None = None, params: Any = None,
             seed: int = 0, registry: OpRegistry | None = None) -> tuple[Network, MorphRecord]:
    """Apply one op by name or object. Without ``site``, a valid site is drawn from ``seed``."""
    if isinstance(op, str):
        from . import default_registry
        op = (registry or default_registry()).get(op)
    if site is None:
        sites = op.sites(net)
        if not sites:
            raise NotApplicable(f"op {op.name} has no site in this network")
        site = sites[int(np.random.default_rng(seed).integers(len(sites)))]
    return op.apply(net, site, params, seed)


def replay(net: Network, records: Sequence[MorphRecord | dict], registry: OpRegistry | None = None) -> Network:
    """Rebuild a child from its parent and the records of the ops that made it."""
    for r in records:
        r = r if isinstance(r, MorphRecord) else MorphRecord.from_json(r)
        net, _ = apply_op(net, r.op, r.site, r.params, r.seed, registry)
    return net


def zero_fraction(*tensors) -> float:
    """Share of exact zeros over all entries of ``tensors`` (for records)."""
    n = sum(t.numel() for t in tensors)
    return float(sum((t == 0).sum().item() for t in tensors)) / n if n else 0.0
