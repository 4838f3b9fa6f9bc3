"""The fake world the strategy tests run in (pure logic: no Ray, no training, no networks).

Ops ``good`` / ``bad`` / ``flat`` change a child's validation accuracy by +0.02 / -0.03 / 0
relative to its parent and its params by +300 / +100 / +10. ``simulate`` plays the driver's part:
propose while slots are free, finish the oldest trial, observe.
"""
from __future__ import annotations

from optuna.distributions import CategoricalDistribution, FloatDistribution

from morphnas.search.state.population import Member, Population
from morphnas.search.state.records import TrialResult
from morphnas.spaces.actions import Action

DELTA = {"good": 0.02, "bad": -0.03, "flat": 0.0}
COST = {"good": 300, "bad": 100, "flat": 10}
OPS = tuple(DELTA)


class FakeMutator:
    def __init__(self, world: dict[str, tuple[float, int]], fail_parent: str | None = None):
        self.world = world          # member -> (val_acc, params)
        self.cost_calls = 0
        self.fail_parent = fail_parent

    def random_actions(self, parent_id, rng):
        if parent_id == self.fail_parent:
            return None
        op = OPS[int(rng.integers(len(OPS)))]
        pos = float(rng.uniform())
        return (Action(op, "s", {}, int(rng.integers(1000))),), {"a0_op": op, "a0_pos": pos}

    def param_space(self):
        return {"a0_op": CategoricalDistribution(OPS), "a0_pos": FloatDistribution(0.0, 1.0)}

    def actions_from_params(self, parent_id, params, seed):
        return (Action(params["a0_op"], "s", {}, seed),)

    def cost(self, parent_id, actions):
        self.cost_calls += 1
        p = self.world[parent_id][1] + sum(COST[a.op] for a in actions)
        return {"params": float(p), "flops": float(p * 10)}


def evaluate(world, member: str, parent: str, actions, fail_ops=()) -> TrialResult:
    if any(a.op in fail_ops for a in actions):
        return TrialResult(member, parent, 1, "FAIL", fail_reason="fake failure")
    acc = min(1.0, world[parent][0] + sum(DELTA[a.op] for a in actions))
    params = world[parent][1] + sum(COST[a.op] for a in actions)
    world[member] = (acc, params)
    return TrialResult(member, parent, 1, "COMPLETE", values=(acc,), params=params, flops=params * 10)


def seeded_world():
    world = {"m0": (0.5, 1000)}
    pop = Population()
    pop.add(Member("m0", None, 0, 0, 0.5, 1000, 10000, "members/m0"))
    return world, pop


def simulate(strategy, world, pop, budget, concurrency=2, fail_ops=(), log=None, start=1, stop_at=None):
    """Propose while slots are free; finish the oldest trial; return the proposals made (as JSON)."""
    running, made, idx = [], [], start
    while True:
        while len(running) < concurrency and idx - 1 < budget and (stop_at is None or idx - 1 < stop_at):
            prop = strategy.propose(pop)
            if prop is None:
                break
            assert prop.parent_id in pop, "a strategy proposed a parent that is not a member"
            made.append(prop.to_json())
            running.append((f"m{idx}", prop))
            idx += 1
        if not running:
            return made, idx
        mid, prop = running.pop(0)
        # A growing lineage's worker picks one of the candidates (here: the first) and says so.
        actions = prop.actions or (prop.candidates[0] if prop.candidates else ())
        r = evaluate(world, mid, prop.parent_id, actions, fail_ops)
        extra = {"proposal_id": prop.proposal_id, **({"grow": {"chosen": 0}} if prop.candidates else {})}
        r = TrialResult(**{**r.__dict__, "extra": extra, "search_params": prop.search_params,
                           "actions": tuple(a.to_json() for a in actions)})
        if r.state == "COMPLETE":
            r = TrialResult(**{**r.__dict__, "values": tuple(strategy.objective_values(r))})
            pop.add(Member.from_result(r, born=int(mid[1:])))
        strategy.observe(r, pop)
        if log is not None:
            log.append(r)


SECTIONS = {
    "random_walk": {"name": "random_walk"},
    "hill_climb": {"name": "hill_climb", "children": 3},
    "evolution": {"name": "evolution", "population_size": 4, "sample_size": 2},
    "pareto": {"name": "pareto", "candidates": 6, "accept": 2},
    "lemonade": {"name": "lemonade", "cost": ["params", "flops"], "candidates": 6, "accept": 2},
    "tpe": {"name": "tpe", "n_startup_trials": 3},
    "gp": {"name": "gp", "parents": 2, "candidates_per_parent": 3},
    "grow": {"name": "grow", "candidates": 3, "growth_points": None},
}
