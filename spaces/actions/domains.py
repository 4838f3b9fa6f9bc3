"""The action space as fixed-domain parameters, for samplers such as Optuna's (docs/design.md, "Numerics").

Optuna needs every parameter's domain fixed for the whole study, but a network's sites change with
every morph. So an action is described by coordinates that do not change: per action slot ``i`` an
op from the fixed enabled list (``a<i>_op``), a stage (``a<i>_stage``; morphs never change a
network's stages), a relative position in [0, 1] among the op's sites in that stage
(``a<i>_pos``) and the op's parameter choices (``a<i>_<op>_<param>``). This module maps an action
space to those domains, sampled actions to coordinates, and coordinates back to concrete actions.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from morphnas.morphism.errors import MorphnasError, did_you_mean
from morphnas.morphism.graph import Network
from morphnas.spaces.actions.core import SpaceCore
from morphnas.spaces.actions.sites import SiteInfo
from morphnas.spaces.actions.types import Action, Domain, OpSpace, Sample
from morphnas.spaces.counting import Counts, count
from morphnas.spaces.errors import ActionSpaceError, ConstraintViolation, NoValidAction


def param_domains(space: SpaceCore, seed_net: Network) -> dict[str, Domain]:
    """Sampler-facing parameters with domains fixed for a search started from ``seed_net``.

    ``n_actions`` (if the count varies), then per action slot ``i``: ``a<i>_op`` (the enabled
    ops), ``a<i>_stage`` (stages where some enabled op has a site in the seed — morphs never
    change them), ``a<i>_pos`` in [0, 1] and ``a<i>_<op>_<param>`` for every parameter with
    more than one value. Not every parameter is used by every trial (conditional on the op).
    """
    stages = sorted({i.stage for o in space.ops for i in space.sites(seed_net, o.op)})
    lo, hi = space.actions_per_child
    out: dict[str, Domain] = {}
    if lo < hi:
        out["n_actions"] = Domain("int", low=lo, high=hi)
    for slot in range(hi):
        out[f"a{slot}_op"] = Domain("categorical", choices=tuple(space.op_names))
        if stages:  # even a single stage: sampled proposals always report their stage
            out[f"a{slot}_stage"] = Domain("int", low=stages[0], high=stages[-1])
        out[f"a{slot}_pos"] = Domain("float", low=0.0, high=1.0)
        for o in space.ops:
            for k, d in o.domains.items():
                if d.varies:
                    out[f"a{slot}_{o.op}_{k}"] = d
    return out


def coordinates(slot: int, spec: OpSpace, info: SiteInfo, sites: dict[str, list[SiteInfo]],
                p: dict[str, Any]) -> dict[str, Any]:
    """The fixed-domain params describing a sampled action (for leaderboards and samplers)."""
    same = [i for i in sites[spec.op] if i.stage == info.stage]
    pos = same.index(info) / (len(same) - 1) if len(same) > 1 else 0.5
    out: dict[str, Any] = {f"a{slot}_op": spec.op, f"a{slot}_stage": info.stage, f"a{slot}_pos": pos}
    for k, d in spec.domains.items():
        if d.varies:
            out[f"a{slot}_{spec.op}_{k}"] = p[k]
    return out


def actions_from_params(space: SpaceCore, net: Network, params: dict[str, Any], seed: int = 0) -> Sample:
    """The concrete actions that fixed-domain ``params`` mean for parent ``net``.

    Per slot: the op's admitted sites in the requested stage (the nearest stage that has some
    if it has none), the one at the relative position ``pos``; if the op rejects it, the next
    nearest sites are tried. Raises :class:`NoValidAction` if no site works and
    :class:`ConstraintViolation` if the child breaks the constraints.
    """
    lo, hi = space.actions_per_child
    n = int(params.get("n_actions", lo))
    if not lo <= n <= hi:
        raise ActionSpaceError(f"n_actions must satisfy {lo} <= n_actions <= {hi}, got {n}")
    seeds = np.random.default_rng(seed).integers(2**31 - 1, size=n)
    actions: list[Action] = []
    cur, counts = net, None
    for slot in range(n):
        name = params.get(f"a{slot}_op", space.op_names[0])
        spec = space.op_space(name)
        if spec is None:
            raise ActionSpaceError(f"a{slot}_op: unknown op {name!r}{did_you_mean(name, space.op_names)}")
        p = {k: params.get(f"a{slot}_{name}_{k}", d.default()) for k, d in spec.domains.items()}
        infos = space.sites(cur, name)
        if not infos:
            raise NoValidAction(f"op {name} has no admitted site in the parent network")
        cur, counts = _place(space, cur, counts, actions, name, p, int(seeds[slot]), infos,
                             params.get(f"a{slot}_stage"), float(params.get(f"a{slot}_pos", 0.5)))
    counts = counts or count(cur)
    v = space.violations(cur, counts)
    if v:
        raise ConstraintViolation("the proposal breaks the constraints: " + "; ".join(v))
    return Sample(tuple(actions), dict(params), cur, counts)


def _place(space: SpaceCore, cur: Network, counts: Counts | None, actions: list[Action], name: str,
           p: dict[str, Any], seed: int, infos: list[SiteInfo], stage: int | None,
           pos: float) -> tuple[Network, Counts | None]:
    """Apply op ``name`` at the admitted site nearest (stage, pos) that accepts it; append the action."""
    reasons: list[str] = []
    for info in by_distance(infos, stage, pos):
        action = Action(name, info.site, p, seed)
        try:
            cur, counts = space.estimate(cur, (action,))
        except MorphnasError as e:
            reasons.append(str(e))
            if len(reasons) >= space.max_tries:
                break
            continue
        actions.append(action)
        return cur, counts
    else:
        reasons.append("every admitted site was tried")
    raise NoValidAction(f"op {name} fits no site of the parent near the requested place: " + "; ".join(reasons[-3:]))


def by_distance(infos: list[SiteInfo], stage: int | None, pos: float) -> Iterator[SiteInfo]:
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
