"""The trainer protocol: a user's epoch in place of the built-in loop, with the built-in guarantees kept."""
from __future__ import annotations

import pytest
import torch

from morphnas.search.config import DataConfig
from morphnas.search.data.core import load_data
from morphnas.search.data.task import Task
from morphnas.search.trial.distill import Teacher
from morphnas.search.trial.train import TrainSpec, evaluate, train
from morphnas.search.trial.trainer import BuiltinTrainer, Diverged, EpochContext, TrainerError, check_trainer
from morphnas.spaces.registry import create_network


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig(dataset="digits", train_limit=256), seed=0)


class AdamTrainer:
    """A user's loop: their own optimiser and loss (label smoothing), recording what it saw."""

    def __init__(self, lr: float = 0.01):
        self.lr = lr
        self.epochs: list[int] = []
        self.lrs: list[float] = []

    def configure_optimizer(self, model, ctx):
        return torch.optim.Adam(model.parameters(), lr=self.lr)

    def train_epoch(self, model, ctx: EpochContext) -> float:
        self.epochs.append(ctx.epoch)
        total = 0.0
        for x, y in ctx.train_batches():
            loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1) + ctx.distill_term(model(x), x)
            ctx.optimizer.zero_grad()
            loss.backward()
            ctx.optimizer.step()
            self.lrs.append(ctx.optimizer.param_groups[0]["lr"])
            total += loss.item()
        return total / ctx.batches_seen


def test_a_user_trainer_trains_and_reports_every_epoch(digits):
    net = create_network("tiny_resnet", num_classes=10)
    before = evaluate(net, digits.val)
    t = AdamTrainer()
    seen = []
    out, reps = train(net, digits, TrainSpec(epochs=3, lr=0.01, schedule="constant", batch_size=64), seed=1,
                      trainer=t, on_epoch=lambda r, n: seen.append(r.epoch))
    assert t.epochs == [1, 2, 3] and seen == [1, 2, 3]
    assert len(t.lrs) == 3 * 4 and set(t.lrs) == {0.01}   # 256 / 64 = 4 steps an epoch; the schedule set the LR
    assert reps[-1].steps == 12
    assert reps[-1].val_acc == pytest.approx(evaluate(out, digits.val))
    assert reps[-1].val_acc > before + 0.3


def test_the_builtin_trainer_is_the_default(digits):
    net = create_network("tiny_resnet", num_classes=10)
    spec = TrainSpec(epochs=1, lr=0.1, batch_size=64)
    a, ra = train(net, digits, spec, seed=2)
    b, rb = train(net, digits, spec, seed=2, trainer=BuiltinTrainer())
    assert ra == rb
    assert all(torch.equal(a.params[e][k], b.params[e][k]) for e in a.params for k in a.params[e])


def test_a_custom_evaluate_is_the_metric(digits):
    class Fixed(BuiltinTrainer):
        def evaluate(self, model, ctx):
            return 0.25
    _, reps = train(create_network("tiny_resnet", num_classes=10), digits, TrainSpec(epochs=1, lr=0.1), trainer=Fixed())
    assert reps[0].val_acc == 0.25


def test_a_regression_metric_is_reported_as_a_score():
    cfg = DataConfig(dataset="csv", path="configs/data/diabetes.csv", target="progression")
    data = load_data(cfg, seed=0, task="regression")
    task = Task.of("regression", "mse", "rmse")

    class Rmse(BuiltinTrainer):
        def evaluate(self, model, ctx):
            return 55.0
    _, reps = train(create_network("mlp", num_classes=1, features=10), data, TrainSpec(epochs=1, lr=0.05),
                    trainer=Rmse(), task=task)
    assert reps[0].val_acc == -55.0                     # the search maximises -rmse


class NaNLoss(BuiltinTrainer):
    def train_epoch(self, model, ctx):
        return float("nan")


class Explodes(BuiltinTrainer):
    def train_epoch(self, model, ctx):
        with torch.no_grad():
            next(model.parameters()).fill_(float("inf"))
        return 1.0


class Raises(BuiltinTrainer):
    def train_epoch(self, model, ctx):
        raise ValueError("my loop broke\nat line 2")


class ReturnsNone(BuiltinTrainer):
    def train_epoch(self, model, ctx):
        return None


class BadOptimizer(BuiltinTrainer):
    def configure_optimizer(self, model, ctx):
        return "adam"


class BadEvaluate(BuiltinTrainer):
    def evaluate(self, model, ctx):
        return float("inf")


class LossNaNInside(BuiltinTrainer):
    def train_epoch(self, model, ctx):
        for x, y in ctx.train_batches():
            ctx.loss(model(x) * float("nan"), x, y)
        return 0.0


@pytest.mark.parametrize("trainer, error, message", [
    (NaNLoss(), Diverged, r"training loss became nan at epoch 1"),
    (LossNaNInside(), Diverged, r"training loss became nan at epoch 1, step 1"),
    (Explodes(), Diverged, r"parameter '.*' became NaN or infinite in epoch 1; lower the learning rate"),
    (Raises(), TrainerError, r"^trainer Raises.train_epoch raised ValueError: my loop broke$"),
    (ReturnsNone(), TrainerError, r"train_epoch returned NoneType; return the epoch's mean training loss"),
    (BadOptimizer(), TrainerError, r"configure_optimizer returned str; return a torch.optim.Optimizer"),
    (BadEvaluate(), TrainerError, r"evaluate returned inf; return the validation val_acc as a finite number"),
])
def test_the_guarantees_hold_for_any_trainer(digits, trainer, error, message):
    with pytest.raises(error, match=message):
        train(create_network("tiny_resnet", num_classes=10), digits, TrainSpec(epochs=1, lr=0.1), trainer=trainer)


def test_distillation_reaches_a_user_trainer(digits):
    parent = create_network("tiny_resnet", num_classes=10)
    seen = {}

    class Probe(BuiltinTrainer):
        def train_epoch(self, model, ctx):
            for x, y in ctx.train_batches():
                out = model(x)
                seen["term"] = float(ctx.distill_term(out, x).detach())
                seen["mixed"] = float(ctx.loss(out, x, y).detach())
                seen["plain"] = float(torch.nn.functional.cross_entropy(out, y).detach())
                break
            return 0.0
    train(parent, digits, TrainSpec(epochs=1, lr=0.1), trainer=Probe(),
          teacher=Teacher(parent, temperature=2.0, weight=0.5))
    assert seen["term"] > 0         # train-mode BN differs from the parent's eval mode: a small KL
    # ctx.loss is the built-in mix; a trainer with its own loss adds ctx.distill_term to get the same
    assert seen["mixed"] == pytest.approx(0.5 * seen["plain"] + seen["term"], rel=1e-5)


def test_check_trainer_makes_and_refuses():
    assert isinstance(check_trainer(AdamTrainer, "x", {"lr": 0.5}), AdamTrainer)
    assert check_trainer(AdamTrainer, "x", {"lr": 0.5}).lr == 0.5
    with pytest.raises(TrainerError, match=r"creating it with trainer_options \{'rate': 1\} raised TypeError"):
        check_trainer(AdamTrainer, "my:T", {"rate": 1})
    with pytest.raises(TrainerError, match=r"trainer 'my:T' is a int without a train_epoch\(model, ctx\) method"):
        check_trainer(3, "my:T")
    with pytest.raises(TrainerError, match=r"is an object, so trainer_options .* cannot be given to it"):
        check_trainer(AdamTrainer(), "my:T", {"lr": 1})
