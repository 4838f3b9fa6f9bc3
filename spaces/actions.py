"""Actions and the action space: which morphs a search may make, where, and at what cost.

An :class:`Action` is one morph (op, concrete site, params, seed) — what proposals carry and
workers replay. An :class:`ActionSpace` is the ``actions:`` part of a search config::

    actions:
      ops:                                  # enabled ops; per op: parameter domains
        morph_block: {k1: [1, 3], k2: [1, 3], branches: [1, 2]}
        deepen: {k1: [1, 3], k2: 3, weight: 2}   # a scalar is fixed; weight = sampling weight
        widen: {factor: [1.5, 2.0], where: {stages: [2, 3]}}
        split_identity: {}
      where: any                            # or {stages: [..], blocks: [patterns], sites: [..], exclude: [..]}
      actions_per_child: [1, 2]             # an int or [min, max]
      constraints: {max_params: 1.0e6, max_params_mb: 4, max_flops: 6.0e7, max_depth: 60}
      max_tries: 50

A parameter domain is a scalar (fixed), a list (choices) or ``{low, high}`` (an int or float
range). ``ops`` may also be a plain list of op names (every parameter at its default).

Sampling (:meth:`ActionSpace.sample`) draws from an explicit ``numpy.random.Generator`` and
*applies* every drawn action to check it: the op must accept it (no ``NotApplicable``, lint
passes) and the child must meet the constraints. So the space never proposes an action the engine
rejects, and the cost check happens before any training. Samplers with fixed parameter domains
(Optuna, docs/design.md, "Numerics") use :meth:`ActionSpace.param_domains` and
:meth:`ActionSpace.actions_from_params`: per action an op from the fixed enabled list, a stage, a
relative position in [0, 1] within the stage's sites and the op's parameter choices.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from morphnas.morphism.errors import MorphnasError, NotApplicable, SpecError
from morphnas.morphism.graph import Network

from .counting import Counts, count
from .sites import SiteInfo, Where, site_infos


@dataclass(frozen=True)
class Action:
    """One morph: op name, concrete site (None = drawn from ``seed``), op parameters, seed."""

    op: str
    site: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Action":
        return cls(**d)


class ActionSpaceError(SpecError):
    """The ``actions:`` config is invalid; the message names the key and the fix."""


class ConstraintViolation(MorphnasError):
    """A network (or a proposal's child) exceeds the action space's constraints."""


class NoValidAction(NotApplicable):
    """No action of the space could be applied to the network within ``max_tries`` draws."""


def _unknown_key(path: str, key: Any, known) -> ActionSpaceError:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ActionSpaceError(f"{path}: unknown key {key!r}; {hint}known keys: {', '.join(known)}")


@dataclass(frozen=True)
class Domain:
    """A parameter's domain: ``kind`` is "categorical" (``choices``), "int" or "float" (low..high).

    Fixed for the whole search, so an Optuna sampler can use it: categorical ->
    ``CategoricalDistribution(choices)``, int -> ``IntDistribution(low, high)``, float ->
    ``FloatDistribution(low, high)``.
    """

    kind: str
    choices: tuple = ()
    low: float = 0.0
    high: float = 0.0

    def sample(self, rng: np.random.Generator) -> Any:
        if self.kind == "categorical":
            return self.choices[int(rng.integers(len(self.choices)))]
        if self.kind == "int":
            return int(rng.integers(int(self.low), int(self.high) + 1))
        return float(rng.uniform(self.low, self.high))

    def default(self) -> Any:
        return self.choices[0] if self.kind == "categorical" else self.low

    def values(self) -> list:
        """Representative values (to validate them against the op's parameter checks)."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    def to_json(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"kind": self.kind, "choices": list(self.choices)}
        return {"kind": self.kind, "low": self.low, "high": self.high}

    @classmethod
    def parse(cls, value: Any, path: str) -> "Domain":
        if isinstance(value, dict):
            for k in value:
                if k not in ("low", "high"):
                    raise _unknown_key(path, k, ("low", "high"))
            if "low" not in value or "high" not in value:
                raise ActionSpaceError(f"{path}: a range needs both 'low' and 'high', got {value!r}")
            lo, hi = value["low"], value["high"]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)):
                raise ActionSpaceError(f"{path}: 'low' and 'high' must be numbers, got {value!r}")
            if lo > hi:
                raise ActionSpaceError(f"{path}: `low <= high` must hold, but got (low={lo}, high={hi})")
            kind = "int" if isinstance(lo, int) and isinstance(hi, int) else "float"
            return cls(kind, low=lo, high=hi)
        if isinstance(value, (list, tuple)):
            if not value:
                raise ActionSpaceError(f"{path}: the list of choices is empty")
            if len(set(map(repr, value))) != len(value):
                raise ActionSpaceError(f"{path}: the choices {list(value)!r} repeat a value")
            return cls("categorical", choices=tuple(value))
        return cls("categorical", choices=(value,))


@dataclass(frozen=True)
class OpSpace:
    """One enabled op: its parameter domains, sampling weight and site filter."""

    op: str
    domains: dict[str, Domain]
    weight: float = 1.0
    where: Where = Where()


@dataclass(frozen=True)
class Constraints:
    """Upper bounds a network must meet (``None`` = unbounded)."""

    max_params: int | None = None
    max_params_mb: float | None = None
    max_flops: int | None = None
    max_depth: int | None = None

    def violations(self, counts: Counts) -> list[str]:
        out = []
        for key, value in (("max_params", counts.params), ("max_params_mb", counts.params_mb),
                           ("max_flops", counts.flops), ("max_depth", counts.depth)):
            bound = getattr(self, key)
            if bound is not None and value > bound:
                out.append(f"{key[4:]} {value:g} > {key} {bound:g}")
        return out


@dataclass(frozen=True)
class Sample:
    """A sampled (or mapped) proposal: the actions, the sampler-facing params, the child and its counts."""

    actions: tuple[Action, ...]
    search_params: dict[str, Any]
    child: Network
    counts: Counts


_TOP_KEYS = ("ops", "where", "actions_per_child", "constraints", "max_tries")
_OP_KEYS = ("weight", "where")


class ActionSpace:
    """Enabled ops + domains + constraints; samples valid actions for a network from an explicit rng."""

    def __init__(self, ops: list[OpSpace], actions_per_child: tuple[int, int] = (1, 1),
                 constraints: Constraints = Constraints(), max_tries: int = 50, registry=None):
        if not ops:
            raise ActionSpaceError("actions.ops: enable at least one morph op")
        self.ops = list(ops)
        self.actions_per_child = actions_per_child
        self.constraints = constraints
        self.max_tries = max_tries
        self._registry = registry

    # ------------------------------------------------------------------ config
    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, registry=None, path: str = "actions") -> "ActionSpace":
        """Build from the ``actions:`` mapping of a search config; errors name the key and a close match."""
        from morphnas.morphism.ops import default_registry
        reg = registry or default_registry()
        if not isinstance(d, dict):
            raise ActionSpaceError(f"{path}: must be a mapping with keys {', '.join(_TOP_KEYS)}, got {d!r}")
        for k in d:
            if k not in _TOP_KEYS:
                raise _unknown_key(path, k, _TOP_KEYS)
        if "ops" not in d:
            raise ActionSpaceError(f"{path}.ops: missing; list the morph ops the search may use "
                                   f"(known: {', '.join(reg.names())})")
        where = Where.from_value(d.get("where"), f"{path}.where")
        raw_ops = d["ops"]
        if isinstance(raw_ops, (list, tuple)):
            raw_ops = {name: {} for name in raw_ops}
        if not isinstance(raw_ops, dict) or not raw_ops:
            raise ActionSpaceError(f"{path}.ops: must be a non-empty mapping (op -> parameter domains) or list")
        ops = [_parse_op(reg, name, spec or {}, where, f"{path}.ops.{name}") for name, spec in raw_ops.items()]
        per = d.get("actions_per_child", 1)
        per = (per, per) if isinstance(per, int) and not isinstance(per, bool) else per
        if (not isinstance(per, (list, tuple)) or len(per) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in per) or not 1 <= per[0] <= per[1]):
            raise ActionSpaceError(f"{path}.actions_per_child: must be an int >= 1 or [min, max] with "
                                   f"1 <= min <= max, got {d.get('actions_per_child')!r}")
        constraints = _parse_constraints(d.get("constraints") or {}, f"{path}.constraints")
        tries = d.get("max_tries", 50)
        if not isinstance(tries, int) or isinstance(tries, bool) or tries < 1:
            raise ActionSpaceError(f"{path}.max_tries: must be a positive integer, got {tries!r}")
        return cls(ops, tuple(per), constraints, tries, reg)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config (what a run directory's config.yaml records)."""
        return {
            "ops": {o.op: {**{k: _domain_json(v) for k, v in o.domains.items()}, "weight": o.weight,
                           "where": o.where.to_json()} for o in self.ops},
            "actions_per_child": list(self.actions_per_child),
            "constraints": {k: v for k, v in dataclasses.asdict(self.constraints).items() if v is not None},
            "max_tries": self.max_tries,
        }

    @property
    def op_names(self) -> list[str]:
        """The enabled ops in config order: the fixed categorical domain of ``a<i>_op``."""
        return [o.op for o in self.ops]

    def _op(self, name: str):
        from morphnas.morphism.ops import default_registry
        return (self._registry or default_registry()).get(name)

    # ------------------------------------------------------------------ costs
    def estimate(self, net: Network, actions=()) -> tuple[Network, Counts]:
        """Apply ``actions`` to ``net`` (no training) and count the child."""
        from morphnas.morphism.ops import apply_op
        for a in actions:
            a = a if isinstance(a, Action) else Action.from_json(a)
            net, _ = apply_op(net, self._op(a.op), a.site, a.params, a.seed)
        return net, count(net)

    def violations(self, net: Network, counts: Counts | None = None) -> list[str]:
        """Every constraint ``net`` breaks (empty when it fits)."""
        return self.constraints.violations(counts or count(net))

    def cost_ok(self, net: Network, actions=()) -> bool:
        """Whether ``net`` with ``actions`` applied meets the constraints (cheap: applies and counts)."""
        child, counts = self.estimate(net, actions)
        return not self.violations(child, counts)

    def check(self, net: Network, actions=()) -> Counts:
        """Counts of the child, or :class:`ConstraintViolation` naming every bound it breaks."""
        child, counts = self.estimate(net, actions)
        v = self.violations(child, counts)
        if v:
            raise ConstraintViolation("the proposal breaks the constraints: " + "; ".join(v))
        return counts

    # ------------------------------------------------------------------ sites
    def sites(self, net: Network, op: str) -> list[SiteInfo]:
        """The sites of ``op`` in ``net`` its ``where`` admits, in network order."""
        spec = next((o for o in self.ops if o.op == op), None)
        if spec is None:
            raise ActionSpaceError(f"op {op!r} is not enabled in this action space (enabled: {', '.join(self.op_names)})")
        mop = self._op(op)
        return [i for i in site_infos(net, mop.sites(net), mop.site_kind) if spec.where.admits(i)]

    # ------------------------------------------------------------------ sampling
    def sample(self, net: Network, rng: np.random.Generator) -> list[Action]:
        """Valid actions for ``net`` (each one applied and checked); see :meth:`sample_proposal`."""
        return list(self.sample_proposal(net, rng).actions)

    def sample_proposal(self, net: Network, rng: np.random.Generator) -> Sample:
        """Draw ``actions_per_child`` actions, applying each to check the op accepts it and the
        child meets the constraints; redraw (up to ``max_tries`` per action) otherwise."""
        v = self.violations(net)
        if v:  # morphs only grow networks: no child of this parent can fit
            raise NoValidAction("the parent already breaks the constraints (" + "; ".join(v) + ")")
        lo, hi = self.actions_per_child
        n = int(rng.integers(lo, hi + 1))
        params: dict[str, Any] = {"n_actions": n} if lo < hi else {}
        actions, cur, counts = [], net, None
        for i in range(n):
            cur, counts, action, sp = self._draw_one(cur, rng, i)
            actions.append(action)
            params.update(sp)
        if counts is None:
            counts = count(cur)
        return Sample(tuple(actions), params, cur, counts)

    def _draw_one(self, net: Network, rng: np.random.Generator, slot: int):
        sites = {o.op: self.sites(net, o.op) for o in self.ops}
        usable = [o for o in self.ops if sites[o.op]]
        if not usable:
            raise NoValidAction("no enabled op has a site in this network (ops: "
                                f"{', '.join(self.op_names)}); widen the 'where' filters or enable other ops")
        weights = np.array([o.weight for o in usable], dtype=float)
        reasons: list[str] = []
        for _ in range(self.max_tries):
            spec = usable[int(rng.choice(len(usable), p=weights / weights.sum()))]
            info = sites[spec.op][int(rng.integers(len(sites[spec.op])))]
            p = {k: d.sample(rng) for k, d in spec.domains.items()}
            seed = int(rng.integers(2**31 - 1))
            try:
                child, counts = self._try(net, Action(spec.op, info.site, p, seed))
            except MorphnasError as e:
                reasons.append(f"{spec.op}@{info.site}: {e}")
                continue
            return child, counts, Action(spec.op, info.site, p, seed), self._coords(slot, spec, info, sites, p)
        shown = "; ".join(reasons[-3:])
        raise NoValidAction(f"no valid action after {self.max_tries} draws (last reasons: {shown})")

    def _try(self, net: Network, action: Action) -> tuple[Network, Counts]:
        child, counts = self.estimate(net, (action,))
        v = self.violations(child, counts)
        if v:
            raise ConstraintViolation("; ".join(v))
        return child, counts

    # ------------------------------------------------------------------ fixed-domain params
    def param_domains(self, seed_net: Network) -> dict[str, Domain]:
        """Sampler-facing parameters with domains fixed for a search started from ``seed_net``.

        ``n_actions`` (if the count varies), then per action slot ``i``: ``a<i>_op`` (the enabled
        ops), ``a<i>_stage`` (stages where some enabled op has a site in the seed — morphs never
        change them), ``a<i>_pos`` in [0, 1] and ``a<i>_<op>_<param>`` for every parameter with
        more than one value. Not every parameter is used by every trial (conditional on the op).
        """
        stages = sorted({i.stage for o in self.ops for i in self.sites(seed_net, o.op)})
        lo, hi = self.actions_per_child
        out: dict[str, Domain] = {}
        if lo < hi:
            out["n_actions"] = Domain("int", low=lo, high=hi)
        for slot in range(hi):
            out[f"a{slot}_op"] = Domain("categorical", choices=tuple(self.op_names))
            if stages:  # even a single stage: sampled proposals always report their stage
                out[f"a{slot}_stage"] = Domain("int", low=stages[0], high=stages[-1])
            out[f"a{slot}_pos"] = Domain("float", low=0.0, high=1.0)
            for o in self.ops:
                for k, d in o.domains.items():
                    if d.kind != "categorical" or len(d.choices) > 1:
                        out[f"a{slot}_{o.op}_{k}"] = d
        return out

    def actions_from_params(self, net: Network, params: dict[str, Any], seed: int = 0) -> Sample:
        """The concrete actions that fixed-domain ``params`` mean for parent ``net``.

        Per slot: the op's admitted sites in the requested stage (the nearest stage that has some
        if it has none), the one at the relative position ``pos``; if the op rejects it, the next
        nearest sites are tried. Raises :class:`NoValidAction` if no site works and
        :class:`ConstraintViolation` if the child breaks the constraints.
        """
        lo, hi = self.actions_per_child
        n = int(params.get("n_actions", lo))
        if not lo <= n <= hi:
            raise ActionSpaceError(f"n_actions must satisfy {lo} <= n_actions <= {hi}, got {n}")
        seeds = np.random.default_rng(seed).integers(2**31 - 1, size=n)
        actions, cur, counts = [], net, None
        for slot in range(n):
            name = params.get(f"a{slot}_op", self.op_names[0])
            spec = next((o for o in self.ops if o.op == name), None)
            if spec is None:
                raise _unknown_key(f"a{slot}_op", name, self.op_names)
            p = {k: params.get(f"a{slot}_{name}_{k}", d.default()) for k, d in spec.domains.items()}
            infos = self.sites(cur, name)
            if not infos:
                raise NoValidAction(f"op {name} has no admitted site in the parent network")
            reasons = []
            for info in _by_distance(infos, params.get(f"a{slot}_stage"), float(params.get(f"a{slot}_pos", 0.5))):
                action = Action(name, info.site, p, int(seeds[slot]))
                try:
                    cur, counts = self.estimate(cur, (action,))
                except MorphnasError as e:
                    reasons.append(str(e))
                    if len(reasons) >= self.max_tries:
                        break
                    continue
                actions.append(action)
                break
            else:
                reasons.append("every admitted site was tried")
            if len(actions) <= slot:
                raise NoValidAction(f"op {name} fits no site of the parent near the requested place: "
                                    + "; ".join(reasons[-3:]))
        counts = counts or count(cur)
        v = self.violations(cur, counts)
        if v:
            raise ConstraintViolation("the proposal breaks the constraints: " + "; ".join(v))
        return Sample(tuple(actions), dict(params), cur, counts)

    def _coords(self, slot: int, spec: OpSpace, info: SiteInfo, sites: dict, p: dict) -> dict[str, Any]:
        """The fixed-domain params describing a sampled action (for leaderboards and samplers)."""
        same = [i for i in sites[spec.op] if i.stage == info.stage]
        pos = same.index(info) / (len(same) - 1) if len(same) > 1 else 0.5
        out = {f"a{slot}_op": spec.op, f"a{slot}_stage": info.stage, f"a{slot}_pos": pos}
        for k, d in spec.domains.items():
            if d.kind != "categorical" or len(d.choices) > 1:
                out[f"a{slot}_{spec.op}_{k}"] = p[k]
        return out


def _by_distance(infos: list[SiteInfo], stage: int | None, pos: float):
    """Sites ordered by closeness to (stage, relative position): the requested stage (or the
    nearest one with sites) first, nearest position first; then the other stages."""
    stages = sorted({i.stage for i in infos})
    if stage is None:
        stage = stages[len(stages) // 2] if len(stages) > 1 else stages[0]
    stage_order = sorted(stages, key=lambda s: (abs(s - int(stage)), s))
    pos = min(max(pos, 0.0), 1.0)
    for s in stage_order:
        same = [i for i in infos if i.stage == s]
        target = pos * (len(same) - 1)
        yield from sorted(same, key=lambda i: (abs(same.index(i) - target), same.index(i)))


def _domain_json(d: Domain) -> Any:
    if d.kind == "categorical":
        return d.choices[0] if len(d.choices) == 1 else list(d.choices)
    return {"low": d.low, "high": d.high}


def _parse_op(reg, name: str, spec: Any, where: Where, path: str) -> OpSpace:
    if name not in reg:
        close = difflib.get_close_matches(str(name), reg.names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ActionSpaceError(f"{path}: unknown morph op {name!r}; {hint}known ops: {', '.join(reg.names())}")
    if not isinstance(spec, dict):
        raise ActionSpaceError(f"{path}: must be a mapping of parameter domains, got {spec!r}")
    op = reg.get(name)
    fields = {f.name: f for f in dataclasses.fields(op.Params)}
    known = [*fields, *_OP_KEYS]
    domains = {}
    for k, v in spec.items():
        if k in _OP_KEYS:
            continue
        if k not in fields:
            raise _unknown_key(path, k, known)
        domains[k] = Domain.parse(v, f"{path}.{k}")
    missing = [f for f, fd in fields.items() if f not in domains
               and fd.default is dataclasses.MISSING and fd.default_factory is dataclasses.MISSING]
    if missing:
        raise ActionSpaceError(f"{path}: op {name} needs parameter(s) {', '.join(missing)}; give them a value")
    base = {k: d.default() for k, d in domains.items()}
    for k, d in domains.items():  # every value must pass the op's own parameter checks
        for v in d.values():
            try:
                op.parse_params({**base, k: v})
            except MorphnasError as e:
                raise ActionSpaceError(f"{path}.{k}: value {v!r} is refused by the op: {e}") from None
    weight = spec.get("weight", 1.0)
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0:
        raise ActionSpaceError(f"{path}.weight: must be a positive number, got {weight!r}")
    w = Where.from_value(spec["where"], f"{path}.where") if "where" in spec else where
    return OpSpace(name, domains, float(weight), w)


def _parse_constraints(d: Any, path: str) -> Constraints:
    if not isinstance(d, dict):
        raise ActionSpaceError(f"{path}: must be a mapping, got {d!r}")
    keys = [f.name for f in dataclasses.fields(Constraints)]
    out = {}
    for k, v in d.items():
        if k not in keys:
            raise _unknown_key(path, k, keys)
        if v is None:
            continue
        if isinstance(v, str):  # YAML 1.1 reads `1e6` (no dot) as a string
            try:
                v = float(v)
            except ValueError:
                pass
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            raise ActionSpaceError(f"{path}.{k}: must be a positive number, got {v!r}")
        out[k] = v if k == "max_params_mb" else int(v)
    return Constraints(**out)
