"""The morph-op interface, its record, and the owned op registry.

An op is a small object with three methods (see :class:`MorphOp`):

* ``sites(net)`` lists every place the op can go (edge or blob names, typed by ``site_kind``);
* ``check(net, site, params)`` raises :class:`NotApplicable` with the reason, or returns;
* ``apply(net, site, params, rng)`` returns ``(new_net, record)`` and never mutates ``net``.

Parameters are a frozen dataclass per op (``Params``), built from plain dicts (CLI ``--param``,
YAML, JSON records) by :meth:`MorphOp.parse_params` through :mod:`morphnas.morphism.schema`: every
check of a parameter alone (choices as ``Literal`` types, bounds as ``rule(...)`` metadata,
cross-field checks in ``Params._validate``) lives on ``Params``, so a bad value is refused before
any network is looked at; ``check`` keeps only what depends on the network and the site.
An op module registers its op by decorating its class (``@register_op``): adding an op is one new file in this
package. :func:`default_registry` imports every public module of the package (``pkgutil``; files
starting with ``_`` are helpers, ``base`` is this framework), refuses a public module that
registers no op and a name registered twice, and lists ops by their ``order`` (then by name).
Randomness comes only from the ``numpy.random.Generator`` handed to ``apply`` (derived from the
caller's explicit seed), so replaying a record reproduces the child bit for bit.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Sequence, TypeVar, cast

import numpy as np

from ..errors import MorphnasError, NotApplicable, SpecError, did_you_mean
from ..graph import Network
from ..lint import lint
from ..schema import build

# Sane upper bounds of op parameters (a bigger value is a typo or an attack on memory, not a design).
MAX_KERNEL = 31          # kernel sizes: odd, 1..31
MAX_WIDTH = 65536        # channel counts
MAX_NOISE = 10.0         # noise, relative to the layer's He scale


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
    order: ClassVar[int | None] = None  # place in op listings; ops without one follow, by name
    approximate: ClassVar[bool] = False  # shrinking ops: approximate by default, record the error they make

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
        """Turn a dict (strings allowed, as from the CLI) into ``Params``, refusing unknown keys and
        every bad value (type, choice, bound, non-finite) with a one-line :class:`SpecError`."""
        if raw is None:
            return self.Params()
        if isinstance(raw, self.Params):
            self._build(dataclasses.asdict(raw), raw)   # validate a hand-made Params the same way
            return raw
        if not isinstance(raw, dict):
            raise SpecError(f"op {self.name}: params must be a mapping, got {raw!r}")
        fields = {f.name: f for f in dataclasses.fields(self.Params)}
        out = {}
        for k, v in raw.items():
            if k not in fields:
                hint = did_you_mean(k, fields, known=None) or (
                    f"; its parameters are {', '.join(fields)}" if fields else "; it takes no parameters")
                raise SpecError(f"op {self.name} has no parameter {k!r}{hint}")
            out[k] = _coerce(self.name, k, v, fields[k])
        return self._build(out, raw)

    def _build(self, values: dict[str, Any], raw: Any) -> Any:
        try:
            return build(self.Params, values, "", error=SpecError, label=f"op {self.name} parameter")
        except (TypeError, ValueError) as e:
            raise SpecError(f"op {self.name}: bad parameters {raw!r}: {e}") from None

    def apply(self, net: Network, site: str, params: Any = None, seed: int = 0) -> tuple[Network, MorphRecord]:
        """Check, apply, and lint the result. ``net`` is never modified."""
        p = self.parse_params(params)
        self.check(net, site, p)
        rng = np.random.default_rng(seed)
        child, extra = self._apply(net, site, p, rng)
        lint(child)
        return child, MorphRecord(op=self.name, site=site, params=jsonable_params(p), seed=int(seed), **extra)


def odd_kernels(op: str, **kernels: int | None) -> None:
    """Refuse even kernel sizes (a ``Params._validate`` helper: bounds come from ``rule``)."""
    for name, k in kernels.items():
        if k is not None and k % 2 == 0:
            raise SpecError(f"op {op} parameter {name!r} must be an odd kernel size (1, 3, 5, ...), got {k}; "
                            "identity and factor filters are centred")


def _coerce(op: str, key: str, value: Any, f: dataclasses.Field) -> Any:
    """Accept CLI strings for typed fields: '3' -> 3, 'true' -> True, '[1,3]' -> (1, 3)."""
    if not isinstance(value, str):
        return tuple(value) if isinstance(value, list) else value
    t = str(f.type)
    if t.startswith("Literal"):
        return value   # a choice: the schema checks it (and "pointwise" is no int)
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


def jsonable_params(p: Any) -> dict[str, Any]:
    """A ``Params`` as the JSON dict a record stores (tuples become lists)."""
    d = dataclasses.asdict(cast(Any, p)) if dataclasses.is_dataclass(p) else dict(p)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


# --- registration --------------------------------------------------------------------------------
FRAMEWORK = frozenset({"base"})   # public modules of this package that define no op

T = TypeVar("T")

_REGISTERED: dict[str, MorphOp] = {}   # every op registered in this process, by name


class OpRegistrationError(MorphnasError):
    """An op module or op is declared wrongly (no op in a public module, a name used twice)."""


def register_op(target: T) -> T:
    """Register a ``MorphOp`` instance, or a subclass (registered as one instance); returns ``target``."""
    op: Any = target() if isinstance(target, type) else target
    where = type(op).__module__
    if not getattr(op, "name", ""):
        raise OpRegistrationError(f"op class {type(op).__qualname__} in {where} has no name; "
                                  "set the class attribute name = '<op name>'")
    other = _REGISTERED.get(op.name)
    if other is not None:
        raise OpRegistrationError(f"op {op.name!r} is registered twice ({type(other).__module__}."
                                  f"{type(other).__qualname__} and {where}.{type(op).__qualname__}); "
                                  "give the new op another name")
    _REGISTERED[op.name] = op
    return target


def registered(cls: type[T]) -> T:
    """The instance :func:`register_op` made of the op class ``cls`` (``OP = registered(Deepen)``)."""
    for op in _REGISTERED.values():
        if type(op) is cls:
            return op  # type: ignore[return-value]
    raise OpRegistrationError(f"op class {cls.__qualname__} is not registered; decorate it with @register_op")


def listing_key(op: MorphOp) -> tuple[bool, int, str]:
    """Ops with an ``order`` first, by order; the others after them, by name."""
    order = getattr(op, "order", None)
    return (order is None, order if order is not None else 0, op.name)


def discover_ops(package: str) -> OpRegistry:
    """A registry of the ops defined in ``package``'s public modules (each imported, in name order).

    A public module (name not starting with ``_``, not a framework module) that registers no op
    is an :class:`OpRegistrationError` naming the file and the fix.
    """
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in FRAMEWORK:
            continue
        mod = importlib.import_module(f"{package}.{info.name}")
        if not any(type(op).__module__ == mod.__name__ for op in _REGISTERED.values()):
            raise OpRegistrationError(
                f"op module {info.name}.py ({mod.__file__}) registers no op; register its op with "
                f"the @register_op decorator on its class (from .base import register_op), or rename it "
                f"_{info.name}.py if it only holds helpers")
    reg = OpRegistry()
    for op in sorted((o for o in _REGISTERED.values() if type(o).__module__.startswith(package + ".")),
                     key=listing_key):
        reg.register(op)
    return reg


_DEFAULT: OpRegistry | None = None


def default_registry() -> OpRegistry:
    """The registry of every op shipped with morphnas (discovered once, on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = discover_ops(__package__ or "morphnas.morphism.ops")
    return _DEFAULT


class OpRegistry:
    """An owned name -> op mapping, in listing order (no import-time side effects)."""

    def __init__(self) -> None:
        self._ops: dict[str, MorphOp] = {}

    def register(self, op: MorphOp) -> MorphOp:
        if not op.name:
            raise OpRegistrationError(f"{type(op).__name__} has no name")
        if op.name in self._ops:
            raise OpRegistrationError(f"op {op.name!r} is registered twice")
        self._ops[op.name] = op
        return op

    def get(self, name: str) -> MorphOp:
        try:
            return self._ops[name]
        except KeyError:
            hint = did_you_mean(name, self._ops, known=None)
            raise MorphnasError(f"unknown morph op {name!r}{hint + ' ' if hint else '; '}"
                                f"known ops: {', '.join(sorted(self._ops))}") from None

    def names(self) -> list[str]:
        return sorted(self._ops)

    def listed(self) -> list[MorphOp]:
        """The ops in the order they are shown to users (``order``, then name)."""
        return list(self._ops.values())

    def __contains__(self, name: str) -> bool:
        return name in self._ops

    def __iter__(self) -> Iterator[MorphOp]:
        return iter(self._ops[n] for n in self.names())


def apply_op(net: Network, op: str | MorphOp, site: str | None = None, params: Any = None,
             seed: int = 0, registry: OpRegistry | None = None) -> tuple[Network, MorphRecord]:
    """Apply one op by name or object. Without ``site``, a valid site is drawn from ``seed``."""
    if isinstance(op, str):
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


def zero_fraction(*tensors: Any) -> float:
    """Share of exact zeros over all entries of ``tensors`` (for records)."""
    n = sum(t.numel() for t in tensors)
    return float(sum((t == 0).sum().item() for t in tensors)) / n if n else 0.0
