"""The LEMONADE-style strategy (pure logic), the constraints every strategy respects, and hypervolume."""
from __future__ import annotations

import math

import numpy as np
import pytest
from _fake_strategy import SECTIONS, FakeMutator, seeded_world

from morphnas.search.state.hypervolume import hypervolume_2d
from morphnas.search.state.population import Member, Population
from morphnas.search.state.records import TrialResult
from morphnas.search.strategies import NAMES, build_strategy
from morphnas.search.strategies.lemonade import inverse_density_choice, kde_density
from morphnas.search.strategies.mutator import SpaceMutator
from morphnas.spaces.actions import ActionSpace
from morphnas.spaces.counting import count


def test_kde_is_the_product_gaussian_formula_in_two_dimensions():
    pts = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 1.0]])
    at = np.array([[0.5, 0.5], [3.0, 3.0]])
    h = np.maximum(1.06 * pts.std(axis=0) * 3 ** (-1 / 6), 0.1)
    by_hand = [sum(math.exp(-0.5 * (((a - p) / h) ** 2).sum()) for p in pts) / (3 * h.prod() * 2 * math.pi)
               for a in at]
    assert kde_density(pts, at) == pytest.approx(by_hand, rel=1e-12)
    # one dimension: the shapes (n,) and (n, 1) mean the same
    assert kde_density(pts[:, 0], at[:, 0]) == pytest.approx(kde_density(pts[:, :1], at[:, :1]), rel=1e-12)


def test_acceptance_favours_the_sparse_region_in_two_cheap_objectives():
    ref = np.array([[100.0, 1e4], [105, 1.05e4], [110, 1.1e4], [95, 0.95e4], [5000, 5e5]])
    cands = np.array([[102.0, 1.02e4], [4800.0, 4.8e5], [101.0, 1.01e4]])
    rng = np.random.default_rng(0)
    picks = [inverse_density_choice(rng, cands, ref, 1)[0] for _ in range(300)]
    dens = kde_density(np.log(ref), np.log(cands))
    assert dens[1] < dens[0] / 2 and dens[1] < dens[2] / 2
    assert picks.count(1) > 2 * max(picks.count(0), picks.count(2)), "the sparse corner should win most draws"


def test_objectives_directions_and_the_cheap_proxy_for_latency():
    s = build_strategy({"name": "lemonade", "cost": ["params", "latency_ms"]}, FakeMutator({}), 0)
    assert s.objectives == ("val_acc", "params", "latency_ms")
    assert s.directions == ("maximize", "minimize", "minimize") and s.cheap == ("params",)
    only = build_strategy({"name": "lemonade", "cost": "latency_ms"}, FakeMutator({}), 0)
    assert only.objectives == ("val_acc", "latency_ms") and only.cheap == ("flops",)
    r = TrialResult("m1", "m0", 1, "COMPLETE", values=(0.8,), params=10, flops=99, latency_ms=1.5)
    assert s.objective_values(r) == (0.8, 10.0, 1.5)
    assert build_strategy({"name": "pareto", "cost": "flops"}, FakeMutator({}), 0).objectives == ("val_acc", "flops")


def _world_with_a_dominated_member():
    world, pop = seeded_world()                       # m0: acc 0.5, 1000 params
    for i, (acc, params) in enumerate([(0.45, 1200), (0.6, 1500), (0.4, 900)], start=1):
        world[f"m{i}"] = (acc, params)
        pop.add(Member(f"m{i}", "m0", 1, i, acc, params, params * 10, f"members/m{i}"))
    return world, pop


@pytest.mark.parametrize("parents, allowed", [("front", {"m0", "m2", "m3"}), ("population", {"m0", "m1", "m2", "m3"})])
def test_parents_come_from_the_front_over_all_objectives(parents, allowed):
    world, pop = _world_with_a_dominated_member()
    assert {m.id for m in pop.pareto_front(["params"])} == {"m0", "m2", "m3"}    # m1: worse than m0 on both
    s = build_strategy({"name": "lemonade", "candidates": 4, "accept": 4, "parents": parents}, FakeMutator(world), 1)
    seen = {s.propose(pop).parent_id for _ in range(60)}
    assert seen == allowed


def test_three_objective_front_keeps_a_fast_member_that_two_objectives_drop():
    pop = Population()
    for i, (acc, params, ms) in enumerate([(0.9, 100, 5.0), (0.8, 200, 1.0), (0.7, 300, 9.0)]):
        pop.add(Member(f"m{i}", None, 0, i, acc, params, params, "", latency_ms=ms))
    assert [m.id for m in pop.pareto_front("params")] == ["m0"]
    assert [m.id for m in pop.pareto_front(["params", "latency_ms"])] == ["m0", "m1"]
    # a member whose latency was never measured is no better than any measured one
    pop.add(Member("m3", None, 0, 3, 0.95, 100, 100, "", latency_ms=None))
    assert [m.id for m in pop.pareto_front(["params", "latency_ms"])] == ["m0", "m1", "m3"]


# Save / restore mid-run continuing with exactly the same proposals: test_strategies.py's
# test_state_restore_continues_exactly_like_an_uninterrupted_run, run for every strategy (lemonade
# with two costs).


# ------------------------------------------------------------------ constraints, every strategy
GROW_SHRINK = {"ops": {"deepen": {}, "widen": {"factor": [1.5, 2.0]}, "insert_path": {}, "remove_layer": {},
                       "prune_channels": {"fraction": [0.25, 0.5]}, "shrink_kernel": {}},
               "actions_per_child": [1, 2]}


def _bound(net):
    return int(count(net).params * 1.15)


def test_the_max_params_bound_below_bites(tiny_resnet):
    """Unconstrained children of this space do exceed the bound the next test sets."""
    free = ActionSpace.from_dict(GROW_SHRINK)
    assert any(free.estimate(tiny_resnet, free.sample(tiny_resnet, np.random.default_rng(k)))[1].params
               > _bound(tiny_resnet) for k in range(20))


@pytest.mark.parametrize("name", NAMES)
def test_every_strategy_respects_max_params_on_real_networks(name, tiny_resnet):
    """Children of real morphs (growing and shrinking) never exceed ``max_params``, whichever
    strategy proposes them (random draws, sampler parameters mapped to actions, or costed candidates)."""
    bound = _bound(tiny_resnet)
    space = ActionSpace.from_dict({**GROW_SHRINK, "constraints": {"max_params": bound}})
    nets = {"m0": tiny_resnet}
    s = build_strategy(SECTIONS[name], SpaceMutator(space, lambda mid: nets[mid]), seed=2)
    pop = Population()
    pop.add(Member("m0", None, 0, 0, 0.5, count(tiny_resnet).params, count(tiny_resnet).flops, "m0"))
    rng = np.random.default_rng(0)
    made = 0
    for i in range(1, 6):
        prop = s.propose(pop)
        if prop is None:
            break
        child, c = space.estimate(nets[prop.parent_id], prop.actions)
        assert c.params <= bound, f"{name}: child m{i} has {c.params} params > max_params {bound}"
        nets[f"m{i}"] = child
        r = TrialResult(f"m{i}", prop.parent_id, 1, "COMPLETE", values=(float(rng.uniform(0.3, 0.9)),),
                        params=c.params, flops=c.flops, latency_ms=1.0, extra={"proposal_id": prop.proposal_id},
                        search_params=prop.search_params)
        r = TrialResult(**{**r.__dict__, "values": tuple(s.objective_values(r))})
        pop.add(Member.from_result(r, i))
        s.observe(r, pop)
        made += 1
    assert made >= 3, f"{name} made only {made} proposals"


# ------------------------------------------------------------------ hypervolume
def test_hypervolume_of_known_fronts():
    ref = (1.0, 100.0)
    assert hypervolume_2d([(0.2, 10.0)], ref) == pytest.approx(0.8 * 90)
    # a staircase of two points: union of [0.2,1]x[50,100] and [0.5,1]x[10,100]
    two = [(0.2, 50.0), (0.5, 10.0)]
    assert hypervolume_2d(two, ref) == pytest.approx(0.8 * 50 + 0.5 * 90 - 0.5 * 50)
    # dominated points, duplicates and points outside the box add nothing; order does not matter
    assert hypervolume_2d(two + [(0.6, 60.0), (0.2, 50.0), (1.5, 1.0), (0.1, 100.0)], ref) == \
        pytest.approx(hypervolume_2d(two[::-1], ref))
    assert hypervolume_2d([], ref) == 0.0
    assert hypervolume_2d([(0.0, 0.0)], ref, normalized=True) == pytest.approx(1.0)
    assert hypervolume_2d(two, ref, normalized=True) == pytest.approx((0.8 * 50 + 0.5 * 90 - 0.5 * 50) / 100)
