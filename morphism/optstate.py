"""Carry per-parameter optimizer state (SGD momentum, Adam moments) through morphs.

A growing search trains one network and grows it now and then; the child must go on training
where its parent was. Its weights already do (the morph preserves the function); this module maps
the optimizer's per-parameter state the same way, so that one more step of the child moves every
kept weight exactly as the parent's step would have.

State is keyed by name, never by optimizer index: ``{"<edge>.<param>": {"momentum_buffer": t}}``,
the compiled network's parameter names (:func:`.compile.compile_network`), so it survives param
groups that split parameters (decayed / non-decayed) and edges that come and go.
:func:`optimizer_state_by_name` reads it off a ``torch.optim`` optimizer,
:func:`load_optimizer_state_by_name` puts it back, :func:`map_param_state` maps it through morphs.

The map of one morph record, per parameter of the child (documented per case because the cases
are what the ops do):

* **new edge** (in ``record.new_edges``, or an edge the parent lacks): every tensor entry is zero
  (a fresh parameter has no history). E.g. ``deepen``'s ``conv_a``/``conv_b``, a ``split``'s
  second edge, an inserted BN or branch: even where the op copied a parent tensor into the new edge
  (``deepen``'s bias on ``conv_b``), the edge starts afresh.
* **kept and unchanged** (same name, shape and bit-identical value in parent and child): the state
  is copied.
* **kept and rewritten** (the op changed the tensor: ``widen`` replicates a producer's output
  units and divides a consumer's input columns by the replication count; ``insert_branch`` and
  ``concat_skip`` insert zero columns; ``enlarge_kernel`` zero-pads a filter; ``split`` scales by
  ``alpha``; ``activation`` renames a PReLU's ``weight`` to a PAct's ``a``): the op itself is
  replayed on copies of the parent whose tensors on the rewritten edges are replaced by probes,
  and the state gets the op's *linear part* ``L(s) = T(s) - T(0)``. Hence the state follows the
  weights' index map and scale factors bit for bit, and entries the op fills with constants
  (identity BN values, PReLU slopes 1, a depthwise delta: ``_grow``) or with values that do not
  depend on the tensor (``split`` random mode) get zero state. Entries where ``L`` is not additive
  (``L(s + r) != L(s) + L(r)`` for an independent random probe ``r``) are values the op drew from
  a non-linear function of the tensor: NetMorph's fresh units at the filter's std in ``widen
  method=netmorph``. They are new units, and get zero state.
* a ``noise`` parameter of the op is set to 0 for the replays: noise perturbs the weights, it is
  not a map of them, so under ``widen noise>0`` the state follows the noise-free replicate/divide
  map (``enlarge_kernel noise>0`` gives the new taps zero state either way).
* state of removed edges is dropped.

Entries: every tensor entry of a parameter's state has the parameter's shape and is mapped as
above, except the counters named in :data:`COUNTER_KEYS` (Adam's ``step``), which are copied for
every child parameter the parent has by that name and are zero (same dtype) otherwise. A
parameter without an entry that others have (no step taken yet) counts as zero there: the result
gives every child parameter the same entry keys. Optimizers with other scalar tensor state
(ASGD's ``eta``) are refused with :class:`OptimizerStateError`.

Shrinking ops (``approximate``) are not what this is for: their replays are valid where their map
of a tensor is linear in it (pruning slices it); a fold of one tensor into another is mapped with
the other held fixed.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from .errors import MorphnasError, did_you_mean
from .graph import Network
from .ops.base import MorphRecord, apply_op

COUNTER_KEYS = frozenset({"step"})     # scalar per-parameter entries: copied, never mapped
REPLAY_OVERRIDES: dict[str, Any] = {"noise": 0.0}   # op params set for the state replays (see above)

ParamState = dict[str, dict[str, torch.Tensor]]


class OptimizerStateError(MorphnasError):
    """Optimizer state that does not fit a network or an optimizer (unknown name, wrong shape), or
    that cannot be mapped through a morph; the message names the parameter and the entry."""


# ------------------------------------------------------------------------------------ names
def param_names(net: Network) -> list[str]:
    """The trainable parameter names of ``net``'s compiled module (``<edge>.<param>``, no buffers),
    in state-dict order."""
    cache: dict[Any, frozenset[str]] = {}
    out: list[str] = []
    for e, tensors in sorted(net.params.items()):
        if not tensors:
            continue
        layer = net.edge(e).layer
        try:
            trainable = cache.get(layer)
        except TypeError:   # an unhashable spec: no caching
            trainable = None
        if trainable is None:
            with torch.random.fork_rng(devices=[]):   # module constructors draw from the global RNG
                trainable = frozenset(n for n, _ in layer.module().named_parameters())
            try:
                cache[layer] = trainable
            except TypeError:
                pass
        out.extend(f"{e}.{k}" for k in tensors if k in trainable)
    return out


def _tensor(net: Network, name: str) -> torch.Tensor:
    edge, _, key = name.rpartition(".")
    return net.params[edge][key]


def _edge(name: str) -> str:
    return name.rpartition(".")[0]


# ------------------------------------------------------------------------------------ validation
def _split_entries(state: Mapping[str, Mapping[str, torch.Tensor]], shapes: Mapping[str, torch.Size],
                   where: str) -> tuple[list[str], dict[str, torch.Tensor]]:
    """Check ``state`` against parameter ``shapes``; return the per-element entry keys (sorted) and
    one template value per counter key."""
    unknown = sorted(set(state) - set(shapes))
    if unknown:
        raise OptimizerStateError(f"optimizer state names parameter {unknown[0]!r}, which {where} does not have"
                                  f"{did_you_mean(unknown[0], shapes, known=None)}"
                                  + (f" (+{len(unknown) - 1} more)" if len(unknown) > 1 else ""))
    elem: set[str] = set()
    counters: dict[str, torch.Tensor] = {}
    for name, entries in state.items():
        for k, v in entries.items():
            if not isinstance(v, torch.Tensor):
                raise OptimizerStateError(f"optimizer state {name!r}[{k!r}] is a {type(v).__name__}, not a tensor")
            if k in COUNTER_KEYS:
                if v.numel() != 1:
                    raise OptimizerStateError(f"optimizer state {name!r}[{k!r}] is a counter and must be a "
                                              f"scalar, got shape {tuple(v.shape)}")
                counters.setdefault(k, v)
            elif v.shape != shapes[name]:
                raise OptimizerStateError(f"optimizer state {name!r}[{k!r}] has shape {tuple(v.shape)}, the "
                                          f"parameter has {tuple(shapes[name])}; only per-element tensor state "
                                          f"(and the counters {sorted(COUNTER_KEYS)}) can be mapped")
            elif not v.is_floating_point():
                raise OptimizerStateError(f"optimizer state {name!r}[{k!r}] has dtype {v.dtype}; per-element "
                                          "state must be floating point")
            else:
                elem.add(k)
    return sorted(elem), counters


# ------------------------------------------------------------------------------------ the map
def map_param_state(parent: Network, child: Network, records: Sequence[MorphRecord | dict],
                    state: Mapping[str, Mapping[str, torch.Tensor]]) -> ParamState:
    """Per-parameter optimizer state (e.g. ``{"e3.weight": {"momentum_buffer": t}}``, keyed by the
    compiled network's parameter names) of ``parent`` mapped onto ``child``, the result of applying
    ``records`` (in order) to ``parent``. See the module docstring for what each case gets.

    Several records are mapped one after the other through the intermediate networks, rebuilt by
    replaying the records on ``parent``. Returns a fresh dict with one entry per parameter of
    ``child`` (:func:`param_names`), all with the same keys; tensors are on the CPU, per-element
    ones in the child parameter's dtype. Raises :class:`OptimizerStateError` for state that does
    not fit ``parent``, records that do not lead to ``child``, or a replay that fails or gives a
    non-finite or misshapen result.
    """
    shapes = {n: _tensor(parent, n).shape for n in param_names(parent)}
    elem_keys, templates = _split_entries(state, shapes, "the parent network")
    fields = {k: {n: _entry(state, n, k, _tensor(parent, n)) for n in shapes} for k in elem_keys}
    # Counters: name -> key -> value, for the parameters that have them.
    counters = {n: {k: v.detach().cpu().clone() for k, v in state.get(n, {}).items() if k in COUNTER_KEYS}
                for n in shapes}
    cur = parent
    for i, r in enumerate(records):
        rec = r if isinstance(r, MorphRecord) else MorphRecord.from_json(dict(r))
        try:
            nxt, _ = apply_op(cur, rec.op, rec.site, rec.params, rec.seed)
        except MorphnasError as err:
            raise OptimizerStateError(f"record {i} ({rec.summary()}) does not replay on its parent: {err}") from err
        fields, counters = _map_record(cur, nxt, rec, fields, counters)
        cur = nxt
    names = param_names(child)
    got = {n: tuple(_tensor(cur, n).shape) for n in param_names(cur)}
    want = {n: tuple(_tensor(child, n).shape) for n in names}
    if got != want:
        diff = sorted(set(got) ^ set(want)) or sorted(n for n in got if got[n] != want[n])
        raise OptimizerStateError(f"the records do not turn the parent into the child: parameter {diff[0]!r} "
                                  f"differs ({len(diff)} in all)")
    out: ParamState = {}
    for n in names:
        entries = {k: fields[k][n].to(_tensor(child, n).dtype) for k in elem_keys}
        for k, template in templates.items():
            entries[k] = counters[n].get(k, torch.zeros_like(template, device="cpu"))
        out[n] = entries
    return out


def _entry(state: Mapping[str, Mapping[str, torch.Tensor]], name: str, key: str, like: torch.Tensor) -> torch.Tensor:
    """Entry ``key`` of ``name`` on the CPU; zeros where the parameter has no such entry yet."""
    v = state.get(name, {}).get(key)
    return v.detach().cpu().clone() if v is not None else torch.zeros_like(like)


def _map_record(parent: Network, child: Network, rec: MorphRecord, fields: dict[str, dict[str, torch.Tensor]],
                counters: dict[str, dict[str, torch.Tensor]]
                ) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, dict[str, torch.Tensor]]]:
    """One record: each field (a per-element entry key: name -> tensor over ``parent``'s params)
    and the counters mapped onto ``child``'s params."""
    new_edges = set(rec.new_edges)
    parent_names = set(param_names(parent))
    fresh: list[str] = []
    copied: list[str] = []
    rewritten: list[str] = []
    for n in param_names(child):
        e = _edge(n)
        if e in new_edges or not parent.has_edge(e):
            fresh.append(n)
        elif n in parent_names and _tensor(parent, n).shape == _tensor(child, n).shape \
                and torch.equal(_tensor(parent, n), _tensor(child, n)):
            copied.append(n)
        else:
            rewritten.append(n)
    # Probed: every parent parameter of the rewritten kept edges (a renamed tensor comes from one).
    rewritten_edges = {_edge(n) for n in rewritten}
    probed = sorted(n for n in parent_names if _edge(n) in rewritten_edges)
    zero = _replay(parent, rec, {n: torch.zeros_like(_tensor(parent, n)) for n in probed}, rewritten) \
        if rewritten else {}
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, field in fields.items():
        mapped = {n: torch.zeros_like(_tensor(child, n)) for n in fresh}
        mapped.update({n: field[n].clone() for n in copied})
        if rewritten:
            mapped.update(_linear_part(parent, child, rec, {n: field[n] for n in probed}, rewritten, zero, key))
        out[key] = mapped
    kept = {n: dict(counters.get(n, {})) if n in parent_names else {} for n in copied + rewritten}
    return out, {**{n: {} for n in fresh}, **kept}


def _replay(parent: Network, rec: MorphRecord, values: Mapping[str, torch.Tensor],
            read: Iterable[str]) -> dict[str, torch.Tensor]:
    """Apply ``rec``'s op (noise off) to a copy of ``parent`` holding ``values`` at those names;
    return the result's tensors at ``read``."""
    net = parent.copy()
    for n, v in values.items():
        edge, _, k = n.rpartition(".")
        net.params[edge][k] = v.to(net.params[edge][k].dtype)
    params = {**rec.params, **{k: v for k, v in REPLAY_OVERRIDES.items() if k in rec.params}}
    try:
        out, _ = apply_op(net, rec.op, rec.site, params, rec.seed)
    except MorphnasError as err:
        raise OptimizerStateError(f"cannot map optimizer state through {rec.summary()}: replaying the op on "
                                  f"the state failed: {err}") from err
    return {n: _tensor(out, n) for n in read}


def _linear_part(parent: Network, child: Network, rec: MorphRecord, s: dict[str, torch.Tensor],
                 read: list[str], zero: dict[str, torch.Tensor], key: str) -> dict[str, torch.Tensor]:
    """``L(s) = T(s) - T(0)`` at ``read``, zero where ``L`` is not additive (see the module docstring)."""
    gen = torch.Generator().manual_seed(0)
    r: dict[str, torch.Tensor] = {}
    for n, t in s.items():
        rms = float(t.double().pow(2).mean().sqrt()) if t.numel() else 0.0
        noise = torch.randn(t.shape, generator=gen, dtype=torch.float64) * (rms if rms > 0 else 1.0)
        r[n] = noise.to(_tensor(parent, n).dtype)
    ts = _replay(parent, rec, s, read)
    tr = _replay(parent, rec, r, read)
    tsr = _replay(parent, rec, {n: s[n].to(r[n].dtype) + r[n] for n in s}, read)
    out: dict[str, torch.Tensor] = {}
    for n in read:
        t0 = zero[n]
        ls, lr, lsr = ts[n] - t0, tr[n] - t0, tsr[n] - t0
        tol = 256 * torch.finfo(t0.dtype).eps
        scale = ls.abs() + lr.abs() + lsr.abs() + t0.abs()
        additive = (lsr - ls - lr).abs() <= tol * scale
        m = torch.where(additive, ls, torch.zeros_like(ls))
        if m.shape != _tensor(child, n).shape:
            raise OptimizerStateError(f"cannot map optimizer state through {rec.summary()}: the op's replay gives "
                                      f"{n!r}[{key!r}] shape {tuple(m.shape)}, the child has "
                                      f"{tuple(_tensor(child, n).shape)}")
        if not torch.isfinite(m).all():
            raise OptimizerStateError(f"cannot map optimizer state through {rec.summary()}: {n!r}[{key!r}] "
                                      "comes out non-finite")
        out[n] = m
    return out


# ------------------------------------------------------------------------------------ optimizers
def _managed(opt: torch.optim.Optimizer) -> set[int]:
    return {id(p) for g in opt.param_groups for p in g["params"]}


def optimizer_state_by_name(opt: torch.optim.Optimizer, module: nn.Module) -> ParamState:
    """``opt``'s per-parameter state keyed by ``module``'s parameter names (detached clones), one
    entry per named parameter that ``opt`` manages (empty before its first step). ``None`` entries
    (no buffer) are left out; any other non-tensor value is an :class:`OptimizerStateError`."""
    managed = _managed(opt)
    out: ParamState = {}
    for name, p in module.named_parameters():
        if id(p) not in managed:
            continue
        entries: dict[str, torch.Tensor] = {}
        for k, v in opt.state.get(p, {}).items():
            if v is None:
                continue
            if not isinstance(v, torch.Tensor):
                raise OptimizerStateError(f"optimizer state {name!r}[{k!r}] is a {type(v).__name__}, not a tensor")
            entries[k] = v.detach().clone()
        out[name] = entries
    return out


def load_optimizer_state_by_name(opt: torch.optim.Optimizer, module: nn.Module,
                                 state: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
    """Set ``opt``'s per-parameter state from ``state`` keyed by ``module``'s parameter names.

    Every parameter ``opt`` manages gets exactly the given entries (none: its state is cleared);
    per-element tensors go to the parameter's device and dtype, counters keep theirs. The whole
    state is checked before anything is set: an unknown name, a parameter ``opt`` does not manage,
    or a wrong shape raises :class:`OptimizerStateError`.
    """
    params = dict(module.named_parameters())
    _split_entries(state, {n: p.shape for n, p in params.items()}, "the module")
    managed = _managed(opt)
    unmanaged = sorted(n for n in state if id(params[n]) not in managed)
    if unmanaged:
        raise OptimizerStateError(f"parameter {unmanaged[0]!r} has state but is in none of the optimizer's "
                                  "param groups")
    for name, p in params.items():
        if id(p) not in managed:
            continue
        entries = state.get(name)
        if not entries:
            opt.state.pop(p, None)
            continue
        opt.state[p] = {k: (v.detach().clone() if k in COUNTER_KEYS
                            else v.detach().to(device=p.device, dtype=p.dtype, copy=True))
                        for k, v in entries.items()}
