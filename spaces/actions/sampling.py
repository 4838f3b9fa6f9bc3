"""Sampling valid actions from an action space with an explicit ``numpy.random.Generator``.

Every drawn action is *applied* to check it: the op must accept it (no ``NotApplicable``, lint
passes) and the child must meet the constraints; otherwise it is redrawn (up to ``max_tries`` per
action). So the space never proposes an action the engine rejects, and the cost check happens
before any training. The order of random draws (count, then per action: op, site, parameters,
seed) is part of the contract: the same rng gives the same proposal.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from morphnas.morphism.errors import MorphnasError
from morphnas.morphism.graph import Network
from morphnas.spaces.actions.core import SpaceCore
from morphnas.spaces.actions.domains import coordinates
from morphnas.spaces.actions.types import Action, Sample
from morphnas.spaces.counting import Counts, count
from morphnas.spaces.errors import ConstraintViolation, NoValidAction


def sample_proposal(space: SpaceCore, net: Network, rng: np.random.Generator) -> Sample:
    """Draw ``actions_per_child`` actions, applying each to check the op accepts it and the
    child meets the constraints; redraw (up to ``max_tries`` per action) otherwise."""
    v = space.violations(net)
    if v:  # morphs only grow networks: no child of this parent can fit
        raise NoValidAction("the parent already breaks the constraints (" + "; ".join(v) + ")")
    lo, hi = space.actions_per_child
    n = int(rng.integers(lo, hi + 1))
    params: dict[str, Any] = {"n_actions": n} if lo < hi else {}
    actions: list[Action] = []
    cur, counts = net, None
    for i in range(n):
        cur, counts, action, sp = _draw_one(space, cur, rng, i)
        actions.append(action)
        params.update(sp)
    if counts is None:
        counts = count(cur)
    return Sample(tuple(actions), params, cur, counts)


def _draw_one(space: SpaceCore, net: Network, rng: np.random.Generator,
              slot: int) -> tuple[Network, Counts, Action, dict[str, Any]]:
    sites = {o.op: space.sites(net, o.op) for o in space.ops}
    usable = [o for o in space.ops if sites[o.op]]
    if not usable:
        raise NoValidAction("no enabled op has a site in this network (ops: "
                            f"{', '.join(space.op_names)}); widen the 'where' filters or enable other ops")
    weights = np.array([o.weight for o in usable], dtype=float)
    reasons: list[str] = []
    for _ in range(space.max_tries):
        spec = usable[int(rng.choice(len(usable), p=weights / weights.sum()))]
        info = sites[spec.op][int(rng.integers(len(sites[spec.op])))]
        p = {k: d.sample(rng) for k, d in spec.domains.items()}
        seed = int(rng.integers(2**31 - 1))
        action = Action(spec.op, info.site, p, seed)
        try:
            child, counts = _try(space, net, action)
        except MorphnasError as e:
            reasons.append(f"{spec.op}@{info.site}: {e}")
            continue
        return child, counts, action, coordinates(slot, spec, info, sites, p)
    shown = "; ".join(reasons[-3:])
    raise NoValidAction(f"no valid action after {space.max_tries} draws (last reasons: {shown})")


def _try(space: SpaceCore, net: Network, action: Action) -> tuple[Network, Counts]:
    child, counts = space.estimate(net, (action,))
    v = space.violations(child, counts)
    if v:
        raise ConstraintViolation("; ".join(v))
    return child, counts
