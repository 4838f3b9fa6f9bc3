"""Parsing the ``actions:`` section of a search config into typed, validated values.

The section is declared as frozen dataclasses (:class:`ActionsConfig`, :class:`OpOptions`,
:class:`Range`, :class:`~.action_types.Constraints`, :class:`~.sites.Where`) whose field types
and metadata state what is accepted, and :func:`morphnas.morphism.schema.build` checks them; only
what a declaration cannot say is written here: an op's parameter keys depend on the op, so they
are checked against its ``Params`` and every listed value goes through the op's own
``parse_params`` (a domain the op would refuse fails at config time, not mid-search). Every error
is one :class:`~.errors.ActionSpaceError` line naming the key (``actions.ops.widen.factor``), the
value and the fix; unknown keys and ops get a did-you-mean.

A key of ``ops`` that contains ``:`` is a user's own op, ``"package.module:ClassName"``: it is loaded
with :func:`~morphnas.morphism.ops.load_op` (imported and registered) and from then on is the op's
registered name, its domains checked by its own ``parse_params`` as for a built-in op. The paths are
kept (:attr:`ParsedActions.op_paths`) so the op can be loaded again elsewhere: a worker process calls
``load_ops`` with them, and the resolved config writes the path back as the op's key.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from morphnas.morphism.errors import MorphnasError, did_you_mean
from morphnas.morphism.ops import OpRegistry, default_registry, load_op
from morphnas.morphism.schema import SchemaError, build, rule
from morphnas.spaces.actions.sites import Where, any_or_mapping
from morphnas.spaces.actions.types import Constraints, Domain, OpSpace
from morphnas.spaces.errors import ActionSpaceError


def _op_table(value: Any, key: str) -> Any:
    """``ops`` may be a plain list of op names: every parameter at its default."""
    if isinstance(value, (list, tuple)):
        return {name: {} for name in value}
    return value


def _count_range(value: Any, key: str) -> Any:
    """``actions_per_child: 2`` means exactly two: ``[2, 2]``."""
    return (value, value) if isinstance(value, int) and not isinstance(value, bool) else value


@dataclass(frozen=True)
class ActionsConfig:
    """The ``actions:`` mapping as written (op specs stay raw: their keys depend on the op)."""

    ops: dict | None = field(default=None, metadata=rule(parse=_op_table))  # values: op specs (or None)
    where: Where | None = field(default=None, metadata=rule(parse=any_or_mapping))
    actions_per_child: tuple[int, ...] = field(default=(1, 1), metadata=rule(parse=_count_range))
    constraints: Constraints | None = None
    max_tries: int = field(default=50, metadata=rule(ge=1, fix="; give the number of draws per action before giving up (default 50)"))

    def _validate(self, where: str) -> None:
        per = self.actions_per_child
        if len(per) != 2 or not 1 <= per[0] <= per[1]:
            raise ActionSpaceError(f"config key '{where}.actions_per_child' must be an int >= 1 or [min, max] "
                                   f"with 1 <= min <= max, got {list(per)!r}")


@dataclass(frozen=True)
class OpOptions:
    """The keys of an op's entry that are not op parameters."""

    weight: float = field(default=1.0, metadata=rule(gt=0, fix="; give a positive sampling weight (default 1)"))
    where: Where | None = field(default=None, metadata=rule(parse=any_or_mapping))


@dataclass(frozen=True)
class Range:
    """A numeric parameter range ``{low, high}``: ints if both ends are ints, else floats."""

    low: int | float | None = None
    high: int | float | None = None

    def _validate(self, where: str) -> None:
        if self.low is None or self.high is None:
            raise ActionSpaceError(f"config key {where!r} must give both 'low' and 'high' of a range, "
                                   f"got {dataclasses.asdict(self)!r}")
        if self.low > self.high:
            raise ActionSpaceError(f"config key {where!r} must have low <= high, got low={self.low}, "
                                   f"high={self.high}; swap them")


_OPTION_KEYS = tuple(f.name for f in dataclasses.fields(OpOptions))


@dataclass(frozen=True)
class ParsedActions:
    """What :func:`parse_actions` returns: the pieces an action space is made of."""

    ops: list[OpSpace]
    actions_per_child: tuple[int, int]
    constraints: Constraints
    max_tries: int
    # user ops given by import path: registered name -> "package.module:ClassName", in config order
    op_paths: dict[str, str] = field(default_factory=dict)


def _build(cls: type, raw: Any, where: str) -> Any:
    try:
        return build(cls, raw, where, error=ActionSpaceError)
    except SchemaError as e:  # raised by a field's parse function, already naming the key
        raise ActionSpaceError(f"config key {e}") from None


def parse_domain(value: Any, key: str) -> Domain:
    """A parameter's domain from its config value: a scalar (fixed), a list (choices) or ``{low, high}``."""
    if isinstance(value, dict):
        r = _build(Range, value, key)
        if isinstance(r.low, int) and isinstance(r.high, int):
            return Domain("int", low=r.low, high=r.high)
        return Domain("float", low=r.low, high=r.high)
    if isinstance(value, (list, tuple)):
        if not value:
            raise ActionSpaceError(f"config key {key!r} must be a non-empty list of choices, got []; "
                                   "list at least one value or leave the key out (the op's default)")
        if len(set(map(repr, value))) != len(value):
            raise ActionSpaceError(f"config key {key!r} must list each choice once, got {list(value)!r}")
        return Domain("categorical", choices=tuple(value))
    return Domain("categorical", choices=(value,))


def parse_actions(raw: Any, registry: OpRegistry | None = None, path: str = "actions") -> ParsedActions:
    """Check the ``actions:`` mapping ``raw`` and turn it into ops, counts, constraints and tries."""
    reg = registry or default_registry()
    cfg = _build(ActionsConfig, raw, path)
    if cfg.ops is None:
        raise ActionSpaceError(f"config key '{path}.ops' is missing; list the morph ops the search may use "
                               f"(known: {', '.join(reg.names())})")
    if not cfg.ops:
        raise ActionSpaceError(f"config key '{path}.ops' must be a non-empty mapping (op -> parameter domains) "
                               f"or list, got {raw['ops']!r}; enable at least one of: {', '.join(reg.names())}")
    where = cfg.where or Where()
    ops: list[OpSpace] = []
    op_paths: dict[str, str] = {}
    keys: dict[str, Any] = {}   # registered name -> the key that enabled it
    for key, spec in cfg.ops.items():
        key_path = f"{path}.ops.{key}"
        name = _load_user_op(reg, key, key_path) if isinstance(key, str) and ":" in key else key
        if name in keys:
            raise ActionSpaceError(f"config key {key_path!r} enables op {name!r} a second time (also as "
                                   f"{keys[name]!r}); list each op once")
        keys[name] = key
        if name != key:
            op_paths[name] = key
        ops.append(_parse_op(reg, name, spec, where, key_path))
    lo, hi = cfg.actions_per_child
    return ParsedActions(ops, (lo, hi), cfg.constraints or Constraints(), cfg.max_tries, op_paths)


def _load_user_op(reg: OpRegistry, op_path: str, key_path: str) -> str:
    """Load the user op named by the import path ``op_path`` (an ``ops`` key); return its registered name."""
    try:
        name = load_op(op_path)
    except MorphnasError as e:
        raise ActionSpaceError(f"config key {key_path!r}: {e}") from None
    if name not in reg:   # a registry of the caller's own: the op joins it for this space's look-ups
        reg.register(default_registry().get(name))
    return name


def _parse_op(reg: OpRegistry, name: str, spec: Any, where: Where, path: str) -> OpSpace:
    """One op's entry: parameter domains (each value checked by the op) plus weight and where."""
    if name not in reg:
        raise ActionSpaceError(f"config key {path!r}: unknown morph op {name!r}"
                               f"{did_you_mean(name, reg.names(), known='known ops')}")
    spec = {} if spec is None else spec
    if not isinstance(spec, dict):
        raise ActionSpaceError(f"config key {path!r} must be a mapping of parameter domains, got {spec!r}")
    op = reg.get(name)
    fields = {f.name: f for f in dataclasses.fields(op.Params)}
    for k in spec:
        if k not in fields and k not in _OPTION_KEYS:
            raise ActionSpaceError(f"unknown config key '{path}.{k}' (op {name} has no such parameter)"
                                   f"{did_you_mean(k, [*fields, *_OPTION_KEYS], known='known keys')}")
    # `where: null` on an op lifts the section's filter, as `where: any` does; absent, it inherits it.
    options = {k: ({} if k == "where" and v is None else v) for k, v in spec.items() if k in _OPTION_KEYS}
    opts = _build(OpOptions, options, path)
    domains = {k: parse_domain(v, f"{path}.{k}") for k, v in spec.items() if k in fields}
    missing = [f for f, fd in fields.items() if f not in domains
               and fd.default is dataclasses.MISSING and fd.default_factory is dataclasses.MISSING]
    if missing:
        raise ActionSpaceError(f"config key {path!r}: op {name} needs parameter(s) {', '.join(missing)}; "
                               "give them a value")
    base = {k: d.default() for k, d in domains.items()}
    for k, d in domains.items():  # every value must pass the op's own parameter checks
        for v in d.values():
            try:
                op.parse_params({**base, k: v})
            except MorphnasError as e:
                raise ActionSpaceError(f"config key '{path}.{k}': value {v!r} is refused by op {name}: {e}") from None
    return OpSpace(name, domains, float(opts.weight), opts.where if opts.where is not None else where)


def resolved_config(ops: list[OpSpace], actions_per_child: tuple[int, int], constraints: Constraints,
                    max_tries: int, op_paths: dict[str, str] | None = None) -> dict[str, Any]:
    """The resolved ``actions:`` mapping (what a run directory's config.yaml records); parses back the same.

    A user op (``op_paths``: registered name -> import path) is keyed by its import path, so the
    config loads it again in any process."""
    paths = op_paths or {}
    return {
        "ops": {paths.get(o.op, o.op): {**{k: d.to_config() for k, d in o.domains.items()}, "weight": o.weight,
                       "where": o.where.to_json()} for o in ops},
        "actions_per_child": list(actions_per_child),
        "constraints": {k: v for k, v in dataclasses.asdict(constraints).items() if v is not None},
        "max_tries": max_tries,
    }
