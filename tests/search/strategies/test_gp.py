"""The ``gp`` strategy and its architecture edit distance (spaces/distance.py).

Populations are grown from small seeds by random morphs of the real action space (applied, never
trained); the strategy test fakes validation accuracies from the child's size.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from morphnas.search.state.population import Member, Population
from morphnas.search.state.records import TrialResult
from morphnas.search.strategies.gp import GPStrategy, bourgain_embed, bourgain_subsets, fit_gp, rbf
from morphnas.search.strategies.mutator import SpaceMutator
from morphnas.spaces.actions import ActionSpace
from morphnas.spaces.counting import count
from morphnas.spaces.distance import Architecture, DistanceCache, describe, distance, pairwise
from morphnas.spaces.registry import create_network

OPS = {"deepen": {}, "widen": {"factor": [1.5, 2.0]}, "insert_path": {}, "morph_block": {"k1": [1, 3], "k2": [1, 3]},
       "enlarge_kernel": {}}


def space(ops=OPS) -> ActionSpace:
    return ActionSpace.from_dict({"ops": ops, "actions_per_child": [1, 2], "constraints": {"max_params": 2_000_000}})


@pytest.fixture(scope="module")
def grown():
    """(parent index, child network) pairs: 14 random morph children grown from two seeds."""
    rng = np.random.default_rng(0)
    sp = space()
    nets = [create_network("tiny_resnet"), create_network("small_cnn")]
    parents = [-1, -1]
    for _ in range(14):
        i = int(rng.integers(len(nets)))
        nets.append(sp.sample_proposal(nets[i], rng).child)
        parents.append(i)
    return nets, parents


def test_distance_is_zero_exactly_between_identical_architectures(grown):
    nets, parents = grown
    archs = [describe(n) for n in nets]
    for n, a in zip(nets, archs):
        assert distance(n.copy(), n) == 0.0 and describe(n.copy()) == a
    d = pairwise(archs)
    for i in range(len(archs)):
        for j in range(len(archs)):
            assert (d[i, j] == 0.0) == (archs[i] == archs[j]), (i, j)
    for i, p in enumerate(parents):
        if p >= 0:
            assert d[i, p] > 0, f"a growing morph must move the architecture (child {i} of {p})"


def test_distance_ignores_weights_and_sees_width_and_kernel():
    net = create_network("tiny_resnet")
    other = create_network("tiny_resnet", seed=5)
    assert not torch.equal(net.params["conv1"]["weight"], other.params["conv1"]["weight"])
    assert distance(net, other) == 0.0
    sp = space({"widen": {"factor": 2.0}})
    rng = np.random.default_rng(1)
    wider = sp.sample_proposal(net, rng).child
    assert 0 < distance(net, wider) < 3, "widening one blob changes a few tokens' widths only"


def test_distance_is_symmetric(grown):
    nets, _ = grown
    archs = [describe(n) for n in nets]
    d = pairwise(archs)
    rev = DistanceCache().matrix(archs[::-1], archs[::-1])[::-1, ::-1]
    assert np.array_equal(d, d.T) and np.array_equal(d, rev)
    assert np.all(d >= 0) and np.all(np.diag(d) == 0)


def test_architecture_json_round_trip_keeps_the_key(grown):
    for n in grown[0]:
        a = describe(n)
        b = Architecture.from_json(json.loads(json.dumps(a.to_json())))
        assert b == a and b.key == a.key


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_matrix_is_psd_on_random_populations(grown, seed):
    nets, _ = grown
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(nets))
    anchors = [describe(nets[i]) for i in pick[:10]]
    queries = [describe(nets[i]) for i in pick[10:]]
    cache = DistanceCache()
    subsets = bourgain_subsets(len(anchors), np.random.default_rng(seed))
    everything = anchors + queries       # observed and candidate points share one embedding
    phi = bourgain_embed(cache.matrix(everything, anchors), subsets)
    d = cache.matrix(everything, everything)
    for length in (0.1, 1.0, 5.0, 50.0):
        k = rbf(phi, phi, length)
        assert np.allclose(k, k.T)
        assert np.linalg.eigvalsh(k).min() >= -1e-9
    rho = np.sqrt(((phi[:, None] - phi[None]) ** 2).sum(-1))
    assert np.all(rho <= d + 1e-9), "the embedding never stretches a distance"


def test_gp_posterior_interpolates_observations_with_small_noise():
    x = np.linspace(0, 3, 7)[:, None]
    y = np.sin(2 * x[:, 0]) * 0.1 + 0.7
    gp = fit_gp(x, y, lengths=[0.5], noises=[1e-8])
    mean, std = gp.predict(x)
    assert np.allclose(mean, y, atol=1e-4) and np.all(std < 1e-3)
    far_mean, far_std = gp.predict(np.array([[30.0]]))
    assert far_std[0] > 0.5 * y.std() and abs(far_mean[0] - y.mean()) < 1e-6


def test_gp_hyperparameters_maximise_the_marginal_likelihood():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 5, (12, 2))
    y = np.sin(x[:, 0]) + 0.01 * rng.normal(size=12)
    best = fit_gp(x, y)
    for length in (0.1, 10.0):
        assert fit_gp(x, y, lengths=[length]).log_likelihood <= best.log_likelihood


# ------------------------------------------------------------------------------------ the strategy
def fake_acc(net) -> float:
    """A made-up validation accuracy: bigger is better, with diminishing returns."""
    return round(0.6 + 0.05 * math.log(count(net).params / 1000.0), 6)


def world():
    nets = {"m0": create_network("tiny_resnet")}
    pop = Population()
    pop.add(Member("m0", None, 0, 0, fake_acc(nets["m0"]), count(nets["m0"]).params, 0, "members/m0"))
    sp = space({"deepen": {}, "widen": {"factor": [1.5, 2.0]}, "morph_block": {"k1": [1, 3], "k2": [1, 3]}})
    return nets, pop, SpaceMutator(sp, nets.__getitem__), sp


def drive(strategy, nets, pop, sp, budget, start=1, stop_at=None, concurrency=2):
    """Propose while slots are free, finish the oldest trial (fake accuracy), observe."""
    running, made, idx = [], [], start
    while True:
        while len(running) < concurrency and idx - 1 < budget and (stop_at is None or idx - 1 < stop_at):
            prop = strategy.propose(pop)
            assert prop is not None and prop.parent_id in pop
            made.append(prop.to_json())
            running.append((f"m{idx}", prop))
            idx += 1
        if not running:
            return made, idx
        mid, prop = running.pop(0)
        child, c = sp.estimate(nets[prop.parent_id], prop.actions)
        nets[mid] = child
        r = TrialResult(mid, prop.parent_id, 1, "COMPLETE", values=(fake_acc(child),), params=c.params,
                        extra={"proposal_id": prop.proposal_id})
        pop.add(Member.from_result(r, born=int(mid[1:])))
        strategy.observe(r, pop)


PARAMS = GPStrategy.Params(parents=2, candidates_per_parent=2)


def test_gp_strategy_resumes_exactly():
    nets, pop, mut, sp = world()
    full, _ = drive(GPStrategy(PARAMS, mut, seed=4), nets, pop, sp, budget=5, concurrency=1)

    nets_b, pop_b, mut_b, sp_b = world()
    b = GPStrategy(PARAMS, mut_b, seed=4)
    first, nxt = drive(b, nets_b, pop_b, sp_b, budget=5, stop_at=3, concurrency=1)
    saved = json.loads(json.dumps(b.state_dict()))
    pop_c = Population.from_json(json.loads(json.dumps(pop_b.to_json())))
    c = GPStrategy(PARAMS, SpaceMutator(sp_b, nets_b.__getitem__), seed=999)   # the state carries the seed
    c.load_state_dict(saved)
    rest, _ = drive(c, nets_b, pop_c, sp_b, budget=5, start=nxt, concurrency=1)
    assert first + rest == full
    assert len({json.dumps(p["actions"]) for p in full}) == len(full)


def test_gp_strategy_never_reproposes_a_known_architecture_while_new_ones_exist():
    nets, pop, mut, sp = world()
    s = GPStrategy(PARAMS, mut, seed=0)
    made, _ = drive(s, nets, pop, sp, budget=4)
    keys = [describe(nets[m.id]).key for m in pop]
    assert len(set(keys)) == len(keys)
