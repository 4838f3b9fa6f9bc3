"""Every strategy against a fake evaluator (pure logic: no Ray, no training, no networks).

The fake world: ops ``good`` / ``bad`` / ``flat`` change a child's validation accuracy by
+0.02 / -0.03 / 0 relative to its parent and its params by +300 / +100 / +10. A tiny driver
(``simulate``) plays the loop's part: propose while slots are free, finish the oldest trial,
observe. The same harness checks that saving a strategy's state mid-run and restoring it in a
fresh object continues with exactly the proposals of an uninterrupted run (the resume contract).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from _fake_strategy import COST, DELTA, OPS, SECTIONS, FakeMutator, evaluate, seeded_world, simulate  # noqa: E402,F401

from morphnas.search.state.population import Member, Population
from morphnas.search.state.records import TrialResult
from morphnas.search.strategies import NAMES, StrategyError, build_strategy, check_section
from morphnas.search.strategies.lemonade import inverse_density_choice, kde_density


@pytest.mark.parametrize("name", NAMES)
def test_every_strategy_runs_the_budget_and_finds_better_children(name):
    world, pop = seeded_world()
    s = build_strategy(SECTIONS[name], FakeMutator(world), seed=3)
    made, _ = simulate(s, world, pop, budget=15)
    assert len(made) == 15
    assert len({p["proposal_id"] for p in made}) == 15, "proposal ids must be unique"
    assert s.observed == 15 and s.proposed >= 15   # pareto also counts its rejected candidates
    assert pop.best().val_acc > 0.5, f"{name}: no child beat the seed in 15 trials of an easy world"
    json.dumps(s.state_dict())   # the state is plain JSON


@pytest.mark.parametrize("name", NAMES)
def test_state_can_be_saved_and_restored_before_the_seed_exists(name):
    class NotReady(FakeMutator):
        def param_space(self):
            raise AssertionError("the seed does not exist yet")
    s = build_strategy(SECTIONS[name], NotReady({}), seed=0)
    saved = json.loads(json.dumps(s.state_dict()))     # the driver saves state when it launches the seed
    build_strategy(SECTIONS[name], NotReady({}), seed=0).load_state_dict(saved)


@pytest.mark.parametrize("name", NAMES)
def test_state_restore_continues_exactly_like_an_uninterrupted_run(name):
    world_a, pop_a = seeded_world()
    a = build_strategy(SECTIONS[name], FakeMutator(world_a), seed=11)
    full, _ = simulate(a, world_a, pop_a, budget=12, concurrency=1)

    world_b, pop_b = seeded_world()
    b = build_strategy(SECTIONS[name], FakeMutator(world_b), seed=11)
    first, nxt = simulate(b, world_b, pop_b, budget=12, concurrency=1, stop_at=5)
    saved = json.loads(json.dumps(b.state_dict()))
    pop_saved = Population.from_json(json.loads(json.dumps(pop_b.to_json())))
    c = build_strategy(SECTIONS[name], FakeMutator(world_b), seed=999)   # seed must not matter: state wins
    if name == "tpe":
        c.seed = b.seed   # the sampler seed is configuration (the run's random_seed), not state
    c.load_state_dict(saved)
    rest, _ = simulate(c, world_b, pop_saved, budget=12, concurrency=1, start=nxt)
    assert first + rest == full


def test_hill_climb_waits_for_its_generation_and_takes_the_best_child():
    world, pop = seeded_world()
    s = build_strategy({"name": "hill_climb", "children": 3}, FakeMutator(world), seed=0)
    props = [s.propose(pop) for _ in range(3)]
    assert all(p.parent_id == "m0" for p in props)
    assert s.propose(pop) is None, "a new generation must wait for all children"
    accs = {0: 0.6, 1: 0.8, 2: 0.7}
    for i, p in enumerate(props):
        r = TrialResult(f"m{i + 1}", "m0", 1, "COMPLETE", values=(accs[i],), extra={"proposal_id": p.proposal_id})
        pop.add(Member.from_result(r, born=i + 1))
        assert s.parent_id == "m0"
        s.observe(r, pop)
    assert s.parent_id == "m2" and s.generation == 1
    assert s.propose(pop).parent_id == "m2"


def test_hill_climb_keeps_the_parent_when_every_child_is_worse_or_failed():
    world, pop = seeded_world()
    s = build_strategy({"name": "hill_climb", "children": 2}, FakeMutator(world), seed=0)
    p1, p2 = s.propose(pop), s.propose(pop)
    r1 = TrialResult("m1", "m0", 1, "COMPLETE", values=(0.4,), extra={"proposal_id": p1.proposal_id})
    pop.add(Member.from_result(r1, 1))
    s.observe(r1, pop)
    s.observe(TrialResult("m2", "m0", 1, "FAIL", fail_reason="x", extra={"proposal_id": p2.proposal_id}), pop)
    assert s.parent_id == "m0" and s.generation == 1


def test_evolution_ages_out_the_oldest_and_picks_tournament_winners():
    world, pop = seeded_world()
    s = build_strategy({"name": "evolution", "population_size": 3, "sample_size": 3}, FakeMutator(world), seed=0)
    s.propose(pop)
    assert s.alive == ["m0"]
    for i, acc in enumerate([0.9, 0.1, 0.2, 0.3], start=1):
        r = TrialResult(f"m{i}", "m0", 1, "COMPLETE", values=(acc,))
        pop.add(Member.from_result(r, i))
        s.observe(r, pop)
    # m0 and m1 (the best, 0.9) aged out: regularised evolution forgets old members however good.
    assert s.alive == ["m2", "m3", "m4"]
    assert s.propose(pop).parent_id == "m4", "with sample_size = population, the tournament picks the best alive"
    s.observe(TrialResult("m5", "m4", 2, "FAIL", fail_reason="x"), pop)
    assert s.alive == ["m2", "m3", "m4"], "failed children never join the population"


def test_pareto_trains_only_accepted_candidates_and_reports_two_objectives():
    world, pop = seeded_world()
    mut = FakeMutator(world)
    s = build_strategy({"name": "pareto", "candidates": 8, "accept": 2, "cost": "params"}, mut, seed=0)
    assert s.directions == ("maximize", "minimize") and s.objectives == ("val_acc", "params")
    first = s.propose(pop)
    assert mut.cost_calls == 8, "every candidate is costed before training"
    assert len(s.queue) == 1, "only `accept` of the candidates are queued for training"
    r = TrialResult("m1", "m0", 1, "COMPLETE", values=(0.7,), params=1300, flops=13000)
    assert s.objective_values(r) == (0.7, 1300.0)
    assert first.parent_id == "m0"


def test_pareto_front_and_inverse_density_selection():
    pop = Population()
    for i, (acc, p) in enumerate([(0.5, 100), (0.6, 200), (0.55, 300), (0.7, 1000)]):
        pop.add(Member(f"m{i}", None, 0, i, acc, p, p, ""))
    assert [m.id for m in pop.pareto_front("params")] == ["m0", "m1", "m3"]
    # Costs crowded near 100 vs one alone at 10000: the lonely one should be picked far more often.
    ref = np.array([100.0, 101, 102, 103, 104, 10000])
    dens = kde_density(np.log(ref), np.log(np.array([100.0, 10000])))
    assert dens[0] > 3 * dens[1]
    rng = np.random.default_rng(0)
    picks = [inverse_density_choice(rng, np.array([100.0, 10000.0]), ref, 1)[0] for _ in range(200)]
    assert picks.count(1) > 150


def test_tpe_asks_fixed_domains_and_tells_results():
    world, pop = seeded_world()
    s = build_strategy({"name": "tpe", "n_startup_trials": 2, "top_k": 2}, FakeMutator(world), seed=0)
    made, _ = simulate(s, world, pop, budget=8, concurrency=2)
    assert all(set(p["search_params"]) == {"parent_rank", "a0_op", "a0_pos"} for p in made)
    assert all(p["search_params"]["parent_rank"] in (0, 1) for p in made)
    assert len(s.done) == 8 and not s.pending
    done = s.study.get_trials()
    assert sum(t.state.name == "COMPLETE" for t in done) == 8


def test_random_walk_latest_is_a_chain():
    world, pop = seeded_world()
    s = build_strategy({"name": "random_walk", "parent": "latest"}, FakeMutator(world), seed=0)
    made, _ = simulate(s, world, pop, budget=5, concurrency=1)
    assert [p["parent_id"] for p in made] == ["m0", "m1", "m2", "m3", "m4"]


def test_a_parent_without_valid_actions_yields_no_proposal():
    world, pop = seeded_world()
    s = build_strategy({"name": "hill_climb"}, FakeMutator(world, fail_parent="m0"), seed=0)
    assert s.propose(pop) is None


def test_bad_names_and_knobs_name_the_key_and_the_close_match():
    with pytest.raises(StrategyError, match=r"unknown strategy 'hill_climbing'.*did you mean 'hill_climb'"):
        check_section({"name": "hill_climbing"})
    with pytest.raises(StrategyError, match=r"strategy.childs.*did you mean 'strategy.children'"):
        check_section({"name": "hill_climb", "childs": 3})
    with pytest.raises(StrategyError, match=r"strategy.children' must be an integer, got 'four'"):
        check_section({"name": "hill_climb", "children": "four"})
    with pytest.raises(StrategyError, match=r"'strategy.cost\[0\]': unknown value 'latency'; did you mean 'latency_ms'\?"):
        build_strategy({"name": "pareto", "cost": "latency"}, FakeMutator({}), 0)
