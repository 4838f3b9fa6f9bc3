"""Training, evaluation and the trial body (``worker.execute``) without Ray."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from _jobs import worker_job

from morphnas.morphism.errors import PreservationError
from morphnas.morphism.serialize import load_network, save_network
from morphnas.search.config import DataConfig
from morphnas.search.data.core import load_data
from morphnas.search.trial.train import Diverged, TrainSpec, _lr, evaluate, train
from morphnas.search.trial.worker import execute
from morphnas.spaces.registry import create_network


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig(dataset="digits", train_limit=400), seed=0)


def test_training_learns_and_is_deterministic(digits):
    net = create_network("tiny_resnet", num_classes=10)
    before = evaluate(net, digits.val)
    spec = TrainSpec(epochs=2, lr=0.1, batch_size=64)
    seen = []
    a, reps = train(net, digits, spec, seed=5, on_epoch=lambda r, n: seen.append((r.epoch, n.num_params())))
    assert [r.epoch for r in reps] == [1, 2] and [e for e, _ in seen] == [1, 2]
    assert reps[-1].steps == 2 * math.ceil(400 / 64)
    assert reps[-1].val_acc > before + 0.2, (before, reps[-1].val_acc)
    assert reps[-1].val_acc == pytest.approx(evaluate(a, digits.val))
    b, _ = train(net, digits, spec, seed=5)
    assert all(torch.equal(a.params[e][k], b.params[e][k]) for e in a.params for k in a.params[e])
    assert evaluate(net, digits.val) == before, "train must not modify its input network"


def test_cosine_and_constant_schedules():
    s = TrainSpec(epochs=1, lr=0.2)
    assert _lr(s, 0, 100) == pytest.approx(0.2)
    assert _lr(s, 50, 100) == pytest.approx(0.1)
    assert _lr(s, 100, 100) == pytest.approx(0.0, abs=1e-12)
    assert _lr(dataclasses.replace(s, schedule="constant"), 70, 100) == 0.2


def _sgdr(epochs: int, spe: int, **kw) -> list[float]:
    s = TrainSpec(epochs=epochs, lr=0.4, schedule="sgdr", **kw)
    return [_lr(s, i, epochs * spe, spe) for i in range(epochs * spe)]


def test_sgdr_restarts_the_cosine_per_step():
    # restart every epoch (4 steps per epoch): 0.4 * (1 + cos(pi * k / 4)) / 2 for k = 0..3, then again
    cycle = [0.4, 0.2 + 0.2 * math.cos(math.pi / 4), 0.2, 0.2 - 0.2 * math.cos(math.pi / 4)]
    assert _sgdr(3, 4, restart_epochs=1) == pytest.approx(cycle * 3, abs=1e-15)
    # periods 1, 2, 4 epochs (2 steps each): cycles of 2, 4, 8 steps; the last one is cut short
    lrs = _sgdr(5, 2, restart_epochs=1, restart_mult=2)
    want = [0.2 * (1 + math.cos(math.pi * k / n)) for n, ks in ((2, range(2)), (4, range(4)), (8, range(4)))
            for k in ks]
    assert lrs == pytest.approx(want, abs=1e-15)
    assert [i for i, v in enumerate(lrs) if v == 0.4] == [0, 2, 6]
    # without restart_epochs: one cycle, the same numbers as cosine
    s = TrainSpec(epochs=2, lr=0.4)
    assert _sgdr(2, 5) == [_lr(s, i, 10) for i in range(10)]


def test_bad_schedules_are_one_line_errors():
    from morphnas.search.trial.train import TrainError
    with pytest.raises(TrainError, match=r"schedule 'sgdrr' is unknown; did you mean 'sgdr'"):
        TrainSpec(epochs=1, lr=0.1, schedule="sgdrr")
    with pytest.raises(TrainError, match=r"restart_epochs must be >= 1, got 0"):
        TrainSpec(epochs=1, lr=0.1, schedule="sgdr", restart_epochs=0)
    with pytest.raises(TrainError, match=r"restart_mult must be >= 1, got 0"):
        TrainSpec(epochs=1, lr=0.1, schedule="sgdr", restart_epochs=1, restart_mult=0)


def test_sgdr_training_reports_the_restarted_lr(digits):
    net = create_network("tiny_resnet", num_classes=10)
    spec = TrainSpec(epochs=2, lr=0.1, schedule="sgdr", restart_epochs=1)
    _, reps = train(net, digits, spec, seed=0)
    spe = math.ceil(400 / 64)
    assert [r.lr for r in reps] == [pytest.approx(0.05 * (1 + math.cos(math.pi * (spe - 1) / spe)))] * 2


def test_a_diverging_loss_raises(digits):
    net = create_network("small_cnn", num_classes=10)
    with pytest.raises(Diverged, match=r"training loss became (nan|inf)"):
        train(net, digits, TrainSpec(epochs=3, lr=1e6, momentum=0.9, batch_size=64), seed=0)


def test_trial_body_trains_the_seed_and_a_morphed_child(tmp_path):
    reports = []
    seed = execute(worker_job(tmp_path, "seed"), reports.append)
    assert seed.state == "COMPLETE" and seed.epochs == 1 and len(reports) == 1 and reports[0]["final"]
    parent = load_network(tmp_path / "members/m0")
    proposal = {"parent_id": "m0", "proposal_id": "p1", "search_params": {"a0_op": "deepen"},
                "actions": [{"op": "deepen", "site": "layer2.0.conv1", "params": {}, "seed": 3}]}
    reports.clear()
    child = execute(worker_job(tmp_path, "child", parent_path=str(tmp_path / "members/m0"), proposal=proposal), reports.append)
    assert child.state == "COMPLETE" and child.actions[0]["op"] == "deepen"
    assert child.preservation_error is not None and child.preservation_error < 1e-4
    assert child.params > parent.num_params() and child.extra == {"proposal_id": "p1", "attempt": 1}
    saved = load_network(tmp_path / "members/m1")
    assert saved.num_params() == child.params
    last = json.loads(reports[-1]["trial_result"])
    assert last["val_acc_history"] == list(child.val_acc_history) and reports[-1]["val_acc"] == child.values[0]


def test_a_child_that_breaks_preservation_fails_loudly(tmp_path, monkeypatch):
    net = create_network("tiny_resnet", num_classes=10)
    save_network(net, tmp_path / "members/m0")
    import morphnas.morphism.ops as ops

    def broken(net, op, site=None, params=None, seed=0, registry=None):   # an op that forgets to preserve
        child, rec = ops.base.apply_op(net, op, site, params, seed, registry)
        child.params["fc"]["bias"] = child.params["fc"]["bias"] + 1.0
        return child, rec
    monkeypatch.setattr("morphnas.search.trial.child.apply_op", broken)
    proposal = {"parent_id": "m0", "proposal_id": "p1", "search_params": {},
                "actions": [{"op": "deepen", "site": "conv1", "params": {}, "seed": 0}]}
    with pytest.raises(PreservationError, match=r"relative output error .* > tolerance 0.0001 after deepen@conv1"):
        execute(worker_job(tmp_path, "child", parent_path=str(tmp_path / "members/m0"), proposal=proposal), lambda m: None)


def test_seed_that_does_not_fit_the_data_is_refused(tmp_path):
    from morphnas.morphism.errors import MorphnasError
    with pytest.raises(MorphnasError, match=r"takes input \(3, 8, 8\) but the data is \(1, 8, 8\)"):
        execute(worker_job(tmp_path, "seed", seed={"network": "tiny_resnet32", "checkpoint": None}), lambda m: None)


def test_a_seed_checkpoint_is_loaded_not_trained(tmp_path):
    net = create_network("tiny_resnet", num_classes=10)
    save_network(net, tmp_path / "ckpt")
    reports = []
    r = execute(worker_job(tmp_path, "seed", seed={"network": "ignored", "checkpoint": str(tmp_path / "ckpt")}),
                reports.append)
    assert r.state == "COMPLETE" and r.epochs == 0 and len(reports) == 1 and reports[0]["final"]
    loaded = load_network(tmp_path / "members/m0")
    assert all(torch.equal(loaded.params[e][k], net.params[e][k]) for e in net.params for k in net.params[e])


def test_inserted_identity_bns_get_training_statistics_before_fine_tuning(tmp_path):
    """The worker calibrates a child's new identity BNs on a training batch (exact in eval mode)."""
    net = create_network("tiny_resnet", num_classes=10)
    save_network(net, tmp_path / "members/m0")
    proposal = {"parent_id": "m0", "proposal_id": "p1", "search_params": {},
                "actions": [{"op": "morph_block", "site": "layer1.0.shortcut", "params": {}, "seed": 0}]}
    job = worker_job(tmp_path, "child", parent_path=str(tmp_path / "members/m0"), proposal=proposal,
               train={"epochs": 0, "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "cosine",
                      "batch_size": 64})
    r = execute(job, lambda m: None)
    assert r.state == "COMPLETE" and r.preservation_error < 1e-6   # float32 weights
    child = load_network(tmp_path / "members/m1")
    bns = [e for e in r.actions[0]["new_edges"] if child.edge(e).layer.kind == "batchnorm2d"]
    assert len(bns) == 2
    for e in bns:
        p = child.params[e]
        assert p["running_mean"].abs().max() > 1e-3, f"{e}: running mean still the made-up 0"
        assert not torch.allclose(p["running_var"], torch.ones_like(p["running_var"])), e
        # still the identity in eval mode: gamma = sqrt(var + eps), beta = mean
        assert torch.allclose(p["weight"], (p["running_var"] + 1e-5).sqrt(), rtol=1e-5)
        assert torch.allclose(p["bias"], p["running_mean"])
