"""Latency measured on the worker: the median of timed passes, recorded per trial, and the
``max_latency_ms`` constraint refusing a slow child before it is trained."""
from __future__ import annotations

import itertools
import json

import pytest
import torch
from _jobs import worker_job

from morphnas.morphism.serialize import load_network
from morphnas.search.config import ConfigError, config_from_dict
from morphnas.search.state.population import Member
from morphnas.search.state.records import TrialResult
from morphnas.search.trial.latency import check_latency, measure_latency
from morphnas.search.trial.worker import execute, failure_reason
from morphnas.spaces.actions import ActionSpace
from morphnas.spaces.errors import ConstraintViolation


def test_latency_is_the_median_of_the_timed_passes_after_warmup(tiny_resnet):
    # A fake clock: pass i takes (i + 1) ms, so warm-up passes 0-2 (1-3 ms) are excluded and the
    # timed passes 3..7 take 4, 5, 6, 7, 8 ms: median 6.
    ticks = itertools.count()
    now = [0.0]

    def clock():
        call, end = divmod(next(ticks), 2)
        if end:
            now[0] += (call + 1) / 1000.0
        return now[0]
    assert measure_latency(tiny_resnet, batch_size=2, repeats=5, warmup=3, clock=clock) == pytest.approx(6.0)
    assert next(ticks) == 16, "3 warm-up + 5 timed passes, each read the clock twice"


def test_measuring_uses_no_random_numbers_of_the_run(tiny_resnet):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    ms = measure_latency(tiny_resnet, batch_size=4, repeats=3, warmup=1)
    assert ms > 0 and torch.equal(state, torch.get_rng_state())


def test_check_latency_names_the_bound_the_device_and_the_batch():
    check_latency(5.0, None, {}, "cpu")
    check_latency(5.0, 5.0, {}, "cpu")
    with pytest.raises(ConstraintViolation, match=r"latency 5.5 ms > actions.constraints.max_latency_ms 5 "
                                                  r"\(median of 7 forward passes, batch 8, on cpu\)"):
        check_latency(5.5, 5.0, {"repeats": 7, "batch_size": 8}, "cpu")


def test_every_trial_records_latency_and_a_slow_child_is_not_trained(tmp_path):
    spec = {"batch_size": 2, "repeats": 3, "warmup": 1, "max_ms": None}
    seed = execute(worker_job(tmp_path, "seed", latency=spec), lambda r: None)
    assert seed.state == "COMPLETE" and seed.latency_ms is not None and seed.latency_ms > 0
    assert Member.from_json(Member.from_result(seed, 0).to_json()).latency_ms == seed.latency_ms
    parent = str(tmp_path / "members/m0")
    prop = {"parent_id": "m0", "proposal_id": "p1", "search_params": {},
            "actions": [{"op": "deepen", "site": "layer2.0.conv1", "params": {}, "seed": 0}]}
    reports = []
    with pytest.raises(ConstraintViolation) as err:
        execute(worker_job(tmp_path, "child", parent_path=parent, proposal=prop,
                           latency={**spec, "max_ms": 1e-9}), reports.append)
    assert "max_latency_ms 1e-09" in failure_reason(err.value) and "not trained" in str(err.value)
    assert reports == [] and not (tmp_path / "members/m1").exists(), "refused before any epoch"
    ok = execute(worker_job(tmp_path, "child", parent_path=parent, proposal=prop,
                            latency={**spec, "max_ms": 1e6}), reports.append)
    assert ok.state == "COMPLETE" and ok.latency_ms > 0 and load_network(tmp_path / "members/m1")
    assert json.loads(reports[-1]["trial_result"])["latency_ms"] == ok.latency_ms
    # a job without a latency spec (older run states) measures nothing
    assert execute(worker_job(tmp_path, "seed"), lambda r: None).latency_ms is None


def test_a_child_over_the_bound_is_measured_again_before_it_is_refused(tmp_path, monkeypatch):
    assert execute(worker_job(tmp_path, "seed"), lambda r: None).state == "COMPLETE"
    prop = {"parent_id": "m0", "proposal_id": "p1", "search_params": {},
            "actions": [{"op": "deepen", "site": "layer2.0.conv1", "params": {}, "seed": 0}]}
    spec = {"batch_size": 1, "repeats": 3, "warmup": 0, "max_ms": 5.0}
    # before training: a slowed first measurement, then the real one; after training: slowed again
    figures = iter([9.0, 4.0, 6.0])
    monkeypatch.setattr("morphnas.search.trial.worker.measure_latency", lambda *a, **k: next(figures))
    job = worker_job(tmp_path, "child", parent_path=str(tmp_path / "members/m0"), proposal=prop, latency=spec)
    reports = []
    assert execute(job, reports.append).latency_ms == 4.0
    assert json.loads(reports[-1]["trial_result"])["latency_ms"] == 4.0, "the recorded figure is the faster one"
    figures = iter([9.0, 7.0])          # slow twice before training: refused, with the faster figure
    with pytest.raises(ConstraintViolation, match=r"latency 7 ms > actions.constraints.max_latency_ms 5"):
        execute(job, lambda r: None)
    figures = iter([4.5, 3.0])          # under the bound: once before training, once after; the faster counts
    assert execute(job, lambda r: None).latency_ms == 3.0
    assert next(figures, None) is None


def test_latency_settings_and_the_bound_are_checked():
    assert config_from_dict({"latency": {"batch_size": 8}}).latency.batch_size == 8
    with pytest.raises(ConfigError, match=r"'latency.repeats' must be >= 1, got 0"):
        config_from_dict({"latency": {"repeats": 0}})
    with pytest.raises(ConfigError, match=r"latency.batchsize.*did you mean 'latency.batch_size'"):
        config_from_dict({"latency": {"batchsize": 8}})
    space = ActionSpace.from_dict({"ops": {"deepen": {}}, "constraints": {"max_latency_ms": 2.5}})
    assert space.constraints.max_latency_ms == 2.5
    with pytest.raises(Exception, match=r"max_latency_ms.*-1"):
        ActionSpace.from_dict({"ops": {"deepen": {}}, "constraints": {"max_latency_ms": -1}})


def test_a_missing_latency_objective_is_not_finite_so_the_trial_fails_with_why():
    from morphnas.search.strategies import build_strategy
    s = build_strategy({"name": "lemonade", "cost": ["params", "latency_ms"]}, mutator=None, seed=0)
    vals = s.objective_values(TrialResult("m1", "m0", 1, "COMPLETE", values=(0.5,), params=10, latency_ms=None))
    assert vals[:2] == (0.5, 10.0) and vals[2] != vals[2]   # NaN: the leaderboard records a FAIL with the reason
