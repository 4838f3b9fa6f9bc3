"""The growing lineage without Ray: its schedule, the config's checks, the strategy's logic, and the
worker's growth step (candidates scored, optimizer state carried, FLOPs counted)."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _fake_strategy import FakeMutator, seeded_world  # noqa: E402
from _jobs import worker_job  # noqa: E402

from morphnas.morphism.optstate import map_param_state  # noqa: E402
from morphnas.morphism.serialize import load_network  # noqa: E402
from morphnas.search.config import ConfigError, config_from_dict  # noqa: E402
from morphnas.search.state.population import Member  # noqa: E402
from morphnas.search.state.records import Proposal, TrialResult  # noqa: E402
from morphnas.search.strategies import build_strategy  # noqa: E402
from morphnas.search.trial.grow import GrowError, load_optimizer_state  # noqa: E402
from morphnas.search.trial.jobs import child_job, cycle_bounds, seed_cycle  # noqa: E402
from morphnas.search.trial.train import TrainSpec, _lr, training_flops  # noqa: E402
from morphnas.search.trial.worker import execute  # noqa: E402
from morphnas.spaces.actions import Action  # noqa: E402
from morphnas.spaces.counting import count  # noqa: E402
from morphnas.spaces.registry import create_network  # noqa: E402

SGDR = {"epochs": 2, "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "sgdr", "batch_size": 64,
        "restart_epochs": 2, "restart_mult": 1}


def test_cycles_follow_the_seeds_schedule():
    assert cycle_bounds(SimpleNamespace(epochs=3, restart_epochs=1, restart_mult=2), 3) == [0, 1, 3]
    s = SimpleNamespace(epochs=3, restart_epochs=1, restart_mult=2)
    assert [seed_cycle(s, k) for k in (1, 2, 3)] == [(3, 4), (7, 8), (15, 16)]
    s = SimpleNamespace(epochs=4, restart_epochs=2, restart_mult=1)
    assert [seed_cycle(s, k) for k in (1, 2)] == [(4, 2), (6, 2)]


def test_a_continued_run_has_the_lr_the_uncut_schedule_has():
    spe, whole = 10, TrainSpec(8, 0.1, schedule="sgdr", restart_epochs=2, restart_mult=2)
    part = TrainSpec(6, 0.1, schedule="sgdr", restart_epochs=2, restart_mult=2, epoch_offset=2)
    for step in range(60):
        assert _lr(part, 20 + step, 60, spe) == _lr(whole, 20 + step, 80, spe)
    assert _lr(part, 20, 60, spe) == 0.1, "a cycle starts at the peak"
    cos = TrainSpec(3, 0.1, epoch_offset=5, total_epochs=8)
    assert _lr(cos, 50, 80, spe) == pytest.approx(0.5 * 0.1 * (1 + torch.cos(torch.tensor(torch.pi * 50 / 80)).item()))
    with pytest.raises(Exception, match="total_epochs"):
        TrainSpec(4, 0.1, epoch_offset=5, total_epochs=8)


def test_training_flops_are_three_forward_passes_per_example_and_the_teachers():
    net = create_network("tiny_resnet", num_classes=10)
    assert training_flops(net, 7) == 3 * count(net).flops * 7
    assert training_flops(net, 7, teacher=net) == 4 * count(net).flops * 7


BASE = {"name": "g", "data": {"dataset": "digits"}, "strategy": {"name": "grow"},
        "seed": {"epochs": 4, "schedule": "sgdr", "restart_epochs": 2}}


def test_the_config_refuses_a_seed_a_lineage_cannot_continue():
    config_from_dict(BASE)
    with pytest.raises(ConfigError, match=r"'seed.schedule'.*sgdr"):
        config_from_dict({**BASE, "seed": {"epochs": 4}})
    with pytest.raises(ConfigError, match=r"'seed.epochs'.*next cycle ends at epoch 4"):
        config_from_dict({**BASE, "seed": {"epochs": 3, "schedule": "sgdr", "restart_epochs": 2}})
    with pytest.raises(ConfigError, match=r"'seed.checkpoint'"):
        config_from_dict({**BASE, "seed": {**BASE["seed"], "checkpoint": "x"}})
    assert config_from_dict({**BASE, "budget": {"flops": "3e12", "trials": None}}).budget.flops == 3e12


def test_a_grow_child_job_continues_the_seed_schedule_with_its_optimizer(tmp_path):
    cfg = config_from_dict(BASE)
    world, pop = seeded_world()
    prop = Proposal("m0", (), {}, "p1", train={"seed_cycle": 2})
    job = child_job(cfg, tmp_path, pop, prop, 1)
    assert job.carry_optimizer and job.train["epoch_offset"] == 6 and job.train["epochs"] == 2
    assert job.train["lr"] == cfg.seed.lr and job.train["schedule"] == "sgdr"
    other = child_job(cfg, tmp_path, pop, Proposal("m0", (), {}, "p2"), 2)
    assert not other.carry_optimizer and other.train["lr"] == cfg.finetune_lr
    assert Proposal.from_json(prop.to_json()) == prop
    assert "candidates" not in Proposal("m0", ()).to_json(), "other strategies' proposals keep their form"


def test_the_strategy_grows_at_the_first_restarts_one_cycle_at_a_time():
    world, pop = seeded_world()
    s = build_strategy({"name": "grow", "candidates": 3, "growth_points": 2}, FakeMutator(world), seed=0)
    kinds = []
    for i in range(1, 5):
        p = s.propose(pop)
        assert s.propose(pop) is None, "one cycle at a time"
        assert p.parent_id == (f"m{i - 1}") and p.train == {"seed_cycle": i}
        kinds.append(len(p.candidates))
        chosen = p.candidates[0] if p.candidates else ()
        r = TrialResult(f"m{i}", p.parent_id, i, "COMPLETE", values=(0.5,), actions=tuple(a.to_json() for a in chosen),
                        extra={"proposal_id": p.proposal_id, **({"grow": {"chosen": 0}} if p.candidates else {})})
        pop.add(Member.from_result(r, born=i))
        world[f"m{i}"] = (0.5, 1000)
        s.observe(r, pop)
    assert kinds == [3, 3, 0, 0] and s.grown == 2 and s.head == "m4"
    # a failed cycle is proposed again from the same head, at most `retries` times in a row
    for _ in range(3):
        p = s.propose(pop)
        assert p.parent_id == "m4"
        s.observe(TrialResult("mx", "m4", 5, "FAIL", extra={"proposal_id": p.proposal_id}), pop)
    assert s.propose(pop) is None


def test_size_bounds_leave_out_candidates_that_grow_too_much():
    world, pop = seeded_world()
    s = build_strategy({"name": "grow", "candidates": 3, "max_params": 1200}, FakeMutator(world), seed=0)
    p = s.propose(pop)
    assert p.candidates and all(a.op != "good" for c in p.candidates for a in c), "good adds 300 params: over 1200"


@pytest.mark.parametrize("method", ["rung", "gradient", "first"])
def test_a_growth_step_scores_candidates_and_carries_the_optimizer_state(tmp_path, method):
    seed = execute(worker_job(tmp_path, "seed", train=SGDR), lambda m: None)
    assert seed.train_flops > 0
    m0 = tmp_path / "members/m0"
    parent, parent_state = load_network(m0), load_optimizer_state(m0)
    assert parent_state and all(v["momentum_buffer"].abs().sum() > 0 for v in parent_state.values())
    cands = ((Action("insert_path", "layer1.0.shortcut", {}, 1),), (Action("deepen", "layer1.0.conv1", {}, 2),),
             (Action("widen", "layer1.0.a1", {"factor": 2.0}, 3),))
    prop = Proposal("m0", (), {}, "p1", candidates=cands, scoring={"method": method, "rung_fraction": 0.5},
                    train={"seed_cycle": 1})
    job = worker_job(tmp_path, "child", parent_path=str(m0), proposal=prop.to_json(), carry_optimizer=True,
                     train={**SGDR, "epoch_offset": 2})
    reports = []
    r = execute(job, reports.append)
    g = r.extra["grow"]
    assert g["scoring"] == method and len(g["scores"]) == 3 and 0 <= g["chosen"] < 3
    if method == "first":
        assert g["chosen"] == 0 and g["scoring_flops"] == 0
    else:
        assert all(isinstance(x, float) for x in g["scores"]) and g["scoring_flops"] > 0
        assert g["chosen"] == max(range(3), key=lambda i: (g["scores"][i], -i))
    assert r.train_flops > g["scoring_flops"], "the trial's FLOPs include its training and its scoring"
    assert [a["op"] for a in r.actions] == [cands[g["chosen"]][0].op]
    # the child started from the parent's state mapped through the chosen morph: replaying the map
    # gives the state the child trained from; its kept parameters' buffers are the parent's
    child = load_network(tmp_path / "members/m1")
    mapped = map_param_state(parent, child, r.actions, parent_state)
    kept = [n for n in parent_state if n in mapped and mapped[n]["momentum_buffer"].shape ==
            parent_state[n]["momentum_buffer"].shape]
    assert kept and all(torch.equal(mapped[n]["momentum_buffer"], parent_state[n]["momentum_buffer"])
                        for n in kept if not n.startswith("layer1.0"))
    assert load_optimizer_state(tmp_path / "members/m1").keys() == mapped.keys()


def test_a_growth_step_with_no_candidate_that_applies_fails_with_the_reasons(tmp_path):
    execute(worker_job(tmp_path, "seed", train=SGDR), lambda m: None)
    prop = Proposal("m0", (), {}, "p1", candidates=((Action("deepen", "no.such.site", {}, 1),),),
                    scoring={"method": "rung"}, train={"seed_cycle": 1})
    job = worker_job(tmp_path, "child", parent_path=str(tmp_path / "members/m0"), proposal=prop.to_json(),
                     carry_optimizer=True, train={**SGDR, "epoch_offset": 2})
    with pytest.raises(GrowError, match="no candidate morph applies: candidate 0"):
        execute(job, lambda m: None)


def test_a_corrupt_optimizer_state_is_named_with_the_fix(tmp_path):
    (tmp_path / "optimizer.pt").write_bytes(b"not a torch file")
    with pytest.raises(GrowError, match=r"cannot read the optimizer state .*optimizer.pt .*remove the file") as e:
        load_optimizer_state(tmp_path)
    assert "\n" not in str(e.value), "one line"
    assert load_optimizer_state(tmp_path / "nothing") is None, "a member of another strategy has none"
