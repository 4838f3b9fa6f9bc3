"""Distillation from the parent (search/trial/distill.py): the loss, the on/off rule, and the worker's use.

Why: a shrinking morph's child starts with an output error; fine-tuning it against the parent's soft
outputs is how LEMONADE repairs it. The loss must be exactly the configured mix (a wrong T² or a
swapped KL direction trains, just worse, so only a formula test catches it), distillation must be on
for approximate children and off for exact ones by default, and a pruned child must actually train.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _jobs import worker_job

from morphnas.morphism.ops import apply_op
from morphnas.morphism.serialize import load_network
from morphnas.search.config import DataConfig, config_from_dict
from morphnas.search.data.core import load_data
from morphnas.search.trial import distill
from morphnas.search.trial.distill import Teacher, distill_loss, teacher_for, wants_distillation
from morphnas.search.trial.train import TrainSpec, train
from morphnas.search.trial.worker import execute
from morphnas.spaces.registry import create_network

S = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]], dtype=torch.float64)   # student logits
T = torch.tensor([[1.0, 0.0, 3.0], [-1.0, 2.0, 0.0]], dtype=torch.float64)    # teacher logits
Y = torch.tensor([0, 1])


def _by_hand(w: float, t: float) -> float:
    """The documented formula, written out with explicit softmaxes and sums."""
    ce = -sum(torch.log(torch.softmax(S[i], 0)[Y[i]]) for i in range(2)) / 2
    kl = 0.0
    for i in range(2):
        p, q = torch.softmax(T[i] / t, 0), torch.softmax(S[i] / t, 0)
        kl += float((p * (p.log() - q.log())).sum())
    return float((1 - w) * ce + w * t * t * kl / 2)


@pytest.mark.parametrize("w, t", [(0.0, 4.0), (1.0, 4.0), (0.5, 4.0), (0.3, 1.0), (0.7, 2.5)])
def test_the_loss_is_the_formula(w, t):
    assert float(distill_loss(S, T, Y, t, w)) == pytest.approx(_by_hand(w, t), rel=1e-12)


def test_weight_zero_is_plain_cross_entropy_and_one_is_pure_distillation():
    assert torch.equal(distill_loss(S, T, Y, 4.0, 0.0), F.cross_entropy(S, Y))
    pure = distill_loss(S, T, Y, 4.0, 1.0)
    assert float(pure) == pytest.approx(_by_hand(1.0, 4.0), rel=1e-12)
    assert float(distill_loss(T, T, Y, 4.0, 1.0)) == pytest.approx(0.0, abs=1e-12)   # matching the teacher costs 0
    s = S.clone().requires_grad_(True)
    distill_loss(s, T.clone().requires_grad_(True), Y, 4.0, 1.0).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_default_is_on_for_approximate_children_and_off_for_exact_ones():
    exact, approx = [{"mode": "exact-dense"}, {"mode": "exact"}], [{"mode": "exact"}, {"mode": "approximate"}]
    assert not wants_distillation("auto", exact) and wants_distillation("auto", approx)
    assert wants_distillation(True, exact) and not wants_distillation(False, approx)
    net = create_network("small_cnn", num_classes=10)
    assert teacher_for(net, {}, exact) is None
    t = teacher_for(net, {"enabled": "auto", "temperature": 2.0, "weight": 0.25}, approx)
    assert isinstance(t, Teacher) and (t.temperature, t.weight) == (2.0, 0.25)
    cfg = config_from_dict({}).finetune.distill
    assert (cfg.enabled, cfg.temperature, cfg.weight) == ("auto", 4.0, 0.5)


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig(train_limit=400), seed=0)


def test_a_pruned_child_trains_with_distillation(digits):
    parent, _ = train(create_network("tiny_resnet", num_classes=10), digits, TrainSpec(epochs=2, lr=0.05), seed=0)
    child, rec = apply_op(parent, "prune_channels", "layer1.0.sum", {"fraction": 0.5})
    assert rec.mode == "approximate"
    teacher = Teacher(parent, 4.0, 0.5)
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    trained, reports = train(child, digits, TrainSpec(epochs=3, lr=0.01), seed=0, teacher=teacher)
    assert reports[-1].train_loss < reports[0].train_loss, [r.train_loss for r in reports]
    assert all(torch.equal(v, parent.state_dict()[k]) for k, v in before.items())   # the teacher is frozen
    assert trained.num_params() == child.num_params() < parent.num_params()


def test_the_worker_distils_approximate_children_only(tmp_path, monkeypatch):
    calls = []
    real = distill.Teacher.loss
    monkeypatch.setattr(distill.Teacher, "loss", lambda self, *a: calls.append(self.weight) or real(self, *a))
    assert execute(worker_job(tmp_path, "seed"), lambda r: None).state == "COMPLETE"
    parent = str(tmp_path / "members/m0")

    def child(op, site, params=None, **kw):
        calls.clear()
        prop = {"parent_id": "m0", "proposal_id": "p1", "search_params": {},
                "actions": [{"op": op, "site": site, "params": params or {}, "seed": 0}]}
        return execute(worker_job(tmp_path, "child", parent_path=parent, proposal=prop, **kw), lambda r: None)

    res = child("prune_channels", "layer1.0.sum", distill={"weight": 0.25})
    assert res.state == "COMPLETE" and res.preservation_error > 1e-4 and res.actions[0]["mode"] == "approximate"
    assert calls and set(calls) == {0.25}
    assert load_network(tmp_path / "members/m1").num_params() < load_network(parent).num_params()
    assert child("prune_channels", "layer1.0.sum", distill={"enabled": False}).state == "COMPLETE" and not calls
    assert child("deepen", "layer2.0.conv1").state == "COMPLETE" and not calls
    assert child("deepen", "layer2.0.conv1", distill={"enabled": True}).state == "COMPLETE" and calls
