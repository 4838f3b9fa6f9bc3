"""Declarative validation: plain data (YAML, JSON, ``--set``/``--param`` strings) -> frozen dataclasses.

One mechanism for every user-facing structure of morphnas (run configs, strategy knobs, the action
space, op parameters, module specs). A structure is a frozen dataclass; each field's type says what
is accepted and its metadata (``field(default=..., metadata=rule(ge=0))``) states the bounds::

    @dataclass(frozen=True)
    class Budget:
        trials: int | None = field(default=20, metadata=rule(ge=0, doc="children to train"))
        wall_time: float | None = field(default=None, metadata=rule(gt=0, parse=duration))

    build(Budget, {"trials": -1}, "budget", error=ConfigError)
    # ConfigError: config key 'budget.trials' must be >= 0, got -1

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``Optional[...]``, ``Literal[...]``,
``tuple[T, ...]``, ``list[T]``, ``dict`` (free mapping), ``dict[str, T]`` and nested dataclasses.
Numbers are always finite (no NaN or infinity) and integers fit in 64 bits. A dataclass may define
``_validate(self, where)`` for checks across fields; it runs after the fields are built.
Every message is one line naming the key, the value and what would be accepted.
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal

from .errors import MorphnasError, close_matches, did_you_mean

INT64 = 2**63 - 1


class SchemaError(MorphnasError):
    """A value does not match its schema (the default error class of :func:`build`)."""


@dataclass(frozen=True)
class Rule:
    """Bounds and parsing of one field (all optional)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None     # allowed values (for str fields; Literal does the same)
    pattern: str | None = None                 # a full-match regular expression for str fields
    parse: Callable[[Any, str], Any] | None = None   # (value, key) -> value, applied before the type check
    fix: str = ""                              # appended to every error of this field ("; use ...")
    doc: str = ""


def rule(**kw: Any) -> dict[str, Rule]:
    """Field metadata: ``field(default=1, metadata=rule(ge=1))``."""
    return {"rule": Rule(**kw)}


def _rule_of(f: dataclasses.Field) -> Rule:
    r = f.metadata.get("rule") if f.metadata else None
    return r if isinstance(r, Rule) else Rule()


def build(cls: type, raw: Any, where: str = "", *, error: type[MorphnasError] = SchemaError,
          label: str = "config key") -> Any:
    """Build the frozen dataclass ``cls`` from the mapping ``raw`` (``None`` = all defaults).

    ``where`` is the dotted path of ``raw`` (used in messages); ``label`` names what a key is to
    the user ("config key", "op deepen parameter", ...); ``error`` is the exception raised.
    """
    return _Builder(error, label).dataclass(cls, raw, where)


def check_field(cls: type, name: str, value: Any, key: str, *, error: type[MorphnasError] = SchemaError,
                label: str = "config key") -> Any:
    """Check one value against field ``name`` of ``cls`` (for callers that build field by field)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    return _Builder(error, label).value(hints[name], value, key, _rule_of(fields[name]))


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


class _Builder:
    def __init__(self, error: type[MorphnasError], label: str):
        self.error = error
        self.label = label

    def fail(self, key: str, what: str, value: Any, r: Rule | None = None) -> MorphnasError:
        fix = r.fix if r is not None and r.fix else ""
        name = f"{self.label} {key!r}" if key else self.label
        return self.error(f"{name} must be {what}, got {_show(value)}{fix}")

    # ------------------------------------------------------------------ dataclasses
    def dataclass(self, cls: type, raw: Any, where: str) -> Any:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise self.fail(where, "a mapping of keys to values", raw)
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        kwargs = {}
        for key, value in raw.items():
            full = f"{where}.{key}" if where else str(key)
            if key not in fields:
                prefix = f"{where}." if where else ""
                tail = did_you_mean(key, fields, known="known keys")
                if tail.startswith("; did you mean"):
                    tail = f"; did you mean {prefix + did_you_mean_name(key, fields)!r}?"
                raise self.error(f"unknown {self.label} {full!r}{tail}")
            kwargs[key] = self.value(hints[key], value, full, _rule_of(fields[key]))
        obj = cls(**kwargs)
        validate = getattr(obj, "_validate", None)
        if callable(validate):
            validate(where)
        return obj

    # ------------------------------------------------------------------ values
    def value(self, tp: Any, value: Any, key: str, r: Rule) -> Any:
        if r.parse is not None and value is not None:
            try:
                value = r.parse(value, key)
            except SchemaError as e:        # parsers raise SchemaError; report it as this builder's error
                raise self.error(f"{self.label} {e}") from None
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Union or (origin is not None and type(None) in args and len(args) > 1):
            if value is None:
                if type(None) in args:
                    return None
            inner = [a for a in args if a is not type(None)]
            if len(inner) == 1:
                return self.value(inner[0], value, key, r)
            first: MorphnasError | None = None
            for a in inner:              # the first type that takes the value wins
                try:
                    return self.value(a, value, key, r)
                except MorphnasError as e:
                    first = first or e
            assert first is not None
            raise first
        if value is None:
            if tp is type(None):
                return None
            raise self.fail(key, f"set (not empty); expected {_type_name(tp)}", value, r)
        if dataclasses.is_dataclass(tp):
            return self.dataclass(tp, value, key)  # type: ignore[arg-type]
        if origin is Literal:
            if value not in args:
                raise self.error(f"{self.label} {key!r}: unknown value {_show(value)}"
                                 f"{did_you_mean(value, args, known='choose from')}{r.fix}")
            return value
        if origin in (tuple, list):
            if not isinstance(value, (list, tuple)):
                raise self.fail(key, "a list", value, r)
            item = args[0] if args else Any
            out = [self.value(item, v, f"{key}[{i}]", Rule()) for i, v in enumerate(value)]
            return tuple(out) if origin is tuple else out
        if origin is dict or tp is dict:
            if not isinstance(value, dict):
                raise self.fail(key, "a mapping", value, r)
            if len(args) == 2:
                return {k: self.value(args[1], v, f"{key}.{k}", Rule()) for k, v in value.items()}
            return dict(value)
        if tp is bool:
            if isinstance(value, bool):
                return value
            raise self.fail(key, "true or false", value, r)
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.fail(key, "an integer", value, r)
            if abs(value) > INT64:
                raise self.fail(key, "an integer that fits in 64 bits", value, r)
            return self._bounds(value, key, r)
        if tp is float:
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    raise self.fail(key, "a number", value, r) from None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.fail(key, "a number", value, r)
            if isinstance(value, int) and abs(value) > INT64:
                raise self.fail(key, "a finite number", value, r)
            value = float(value)
            if not math.isfinite(value):
                raise self.fail(key, "a finite number", value, r)
            return self._bounds(value, key, r)
        if tp is str:
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise self.fail(key, "a string", value, r)
            value = str(value)
            if r.choices is not None and value not in r.choices:
                raise self.error(f"{self.label} {key!r}: unknown value {value!r}"
                                 f"{did_you_mean(value, r.choices, known='choose from')}{r.fix}")
            if r.pattern is not None and not re.fullmatch(r.pattern, value):
                raise self.fail(key, f"a string matching {r.pattern}", value, r)
            return value
        if tp is Any:
            return value
        return value

    def _bounds(self, value: float, key: str, r: Rule) -> Any:
        if r.ge is not None and not value >= r.ge:
            raise self.fail(key, f">= {_num(r.ge)}", value, r)
        if r.gt is not None and not value > r.gt:
            raise self.fail(key, f"> {_num(r.gt)}", value, r)
        if r.le is not None and not value <= r.le:
            raise self.fail(key, f"<= {_num(r.le)}", value, r)
        if r.lt is not None and not value < r.lt:
            raise self.fail(key, f"< {_num(r.lt)}", value, r)
        if r.choices is not None and value not in r.choices:
            raise self.fail(key, f"one of {', '.join(map(str, r.choices))}", value, r)
        return value


def did_you_mean_name(value: Any, choices: Any) -> str:
    """The single closest name (caller knows there is one)."""
    return close_matches(value, choices, n=1)[0]


def duration(value: Any, key: str) -> Any:
    """Parse ``300``, ``'90s'``, ``'10m'``, ``'2h'`` into seconds (numbers pass through)."""
    if not isinstance(value, str):
        return value
    m = re.fullmatch(r"\s*([0-9.]+)\s*(s|m|min|h)?\s*", value)
    if not m:
        raise SchemaError(f"{key!r}: {value!r} is not a duration (e.g. 300, '90s', '10m', '2h')")
    try:
        num = float(m.group(1))
    except ValueError:
        raise SchemaError(f"{key!r}: {value!r} is not a duration (e.g. 300, '90s', '10m', '2h')") from None
    return num * {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))
