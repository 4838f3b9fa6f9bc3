"""What a search learns and how a member is judged: the task, its loss and its named metric.

``task: classification`` (the default) trains with cross-entropy and ranks members by validation
accuracy (``val_acc``). ``task: regression`` trains with ``mse`` or ``l1`` on real-valued targets
and ranks by ``val_rmse``, ``val_mae`` or ``val_mse`` (lower is better) or ``val_r2`` (higher is
better). The metric's name and direction are what the study, leaderboard, dashboard and exports
show.

Inside the search every strategy, population and scheduler maximises one number, the *score*:
the metric itself when it is maximised, its negation when it is minimised (:meth:`Metric.score`).
Only the boundaries (the Optuna study, the tables, the reports) turn the score back into the
metric (:meth:`Metric.value`), so a strategy never needs to know the task.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from morphnas.morphism.errors import MorphnasError

__all__ = ["LOSSES", "METRICS", "Metric", "Task", "TaskError", "metric_of"]

TASKS = ("classification", "regression")


class TaskError(MorphnasError):
    """A task, loss or metric that does not fit together (e.g. accuracy of a regression)."""


@dataclass(frozen=True)
class Metric:
    """A named validation metric: what the leaderboard shows, and which way is better."""

    key: str             # config name: accuracy | rmse | mae | mse | r2
    name: str            # reported name: val_acc | val_rmse | ...
    direction: str       # maximize | minimize
    tasks: tuple[str, ...]

    @property
    def sign(self) -> float:
        return 1.0 if self.direction == "maximize" else -1.0

    def score(self, value: float) -> float:
        """The metric as the number the search maximises."""
        return self.sign * float(value)

    def value(self, score: float) -> float:
        """The score back in the metric's own units."""
        return self.sign * float(score)

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.name, "direction": self.direction}


METRICS: dict[str, Metric] = {m.key: m for m in (
    Metric("accuracy", "val_acc", "maximize", ("classification",)),
    Metric("rmse", "val_rmse", "minimize", ("regression",)),
    Metric("mae", "val_mae", "minimize", ("regression",)),
    Metric("mse", "val_mse", "minimize", ("regression",)),
    Metric("r2", "val_r2", "maximize", ("regression",)),
)}
DEFAULT_METRIC = {"classification": "accuracy", "regression": "rmse"}
LOSSES: dict[str, tuple[str, ...]] = {"cross_entropy": ("classification",), "mse": ("regression",),
                                      "l1": ("regression",)}
DEFAULT_LOSS = {"classification": "cross_entropy", "regression": "mse"}


def _regression_target(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Targets of shape (N,) against outputs (N, 1) are compared as (N, 1)."""
    y = y.to(out.dtype)
    return y.reshape(out.shape) if y.numel() == out.numel() else y


_LOSS_FNS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cross_entropy": F.cross_entropy,
    "mse": lambda out, y: F.mse_loss(out, _regression_target(out, y)),
    "l1": lambda out, y: F.l1_loss(out, _regression_target(out, y)),
}


@dataclass(frozen=True)
class Task:
    """The ``task:`` of a run, resolved: ``Task.of(type, loss, metric)`` fills the ``auto`` parts."""

    type: str = "classification"
    loss: str = "cross_entropy"
    metric: Metric = METRICS["accuracy"]

    @classmethod
    def of(cls, type: str = "classification", loss: str = "auto", metric: str = "auto") -> "Task":
        if type not in TASKS:
            raise TaskError(f"task {type!r} is unknown; use one of {', '.join(TASKS)}")
        loss = DEFAULT_LOSS[type] if loss == "auto" else loss
        if loss not in LOSSES or type not in LOSSES[loss]:
            fit = [k for k, t in LOSSES.items() if type in t]
            raise TaskError(f"config 'task.loss': {loss!r} does not fit a {type} task; use one of {', '.join(fit)}")
        key = DEFAULT_METRIC[type] if metric == "auto" else metric
        m = METRICS.get(key)
        if m is None or type not in m.tasks:
            fit = [k for k, v in METRICS.items() if type in v.tasks]
            raise TaskError(f"config 'task.metric': {metric!r} does not fit a {type} task; use one of {', '.join(fit)}")
        return cls(type, loss, m)

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> "Task":
        d = d or {}
        return cls.of(str(d.get("type", "classification")), str(d.get("loss", "auto")), str(d.get("metric", "auto")))

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "loss": self.loss, "metric": self.metric.key}

    @property
    def classification(self) -> bool:
        return self.type == "classification"

    def loss_fn(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _LOSS_FNS[self.loss](out, y)


# ------------------------------------------------------------------------------ evaluation
class MetricSums:
    """Running sums over evaluation batches from which every metric of the task follows.

    The sums stay on the outputs' device (float64, int64 counts) and are read once, by :meth:`value`,
    so evaluating on a GPU never waits for it between batches. Each batch's sum is taken in float32
    and added in float64, the same arithmetic as Python floats, so CPU values are unchanged."""

    def __init__(self, task: Task, target_scale: tuple[float, float] | None = None):
        self.task = task
        self.mean, self.std = target_scale if target_scale is not None else (0.0, 1.0)
        self.n = 0
        self._sums: torch.Tensor | None = None     # correct | (sq, abs, y_sum, y_sq), on the outputs' device

    def add(self, out: torch.Tensor, y: torch.Tensor) -> None:
        out = out.detach().float()
        y = y.to(out.device, non_blocking=True)
        if self.task.classification:
            self._accumulate((out.argmax(1) == y).sum())
            self.n += int(y.shape[0])
            return
        # Regression targets may be standardised for training: the metric is in the data's own units.
        pred = out * self.std + self.mean
        target = _regression_target(out, y).float() * self.std + self.mean
        diff = pred - target
        wide = torch.float32 if out.device.type == "mps" else torch.float64    # MPS has no float64
        self._accumulate(torch.stack([(diff * diff).sum(), diff.abs().sum(), target.sum(),
                                      (target * target).sum()]).to(wide))
        self.n += int(target.numel())

    def _accumulate(self, term: torch.Tensor) -> None:
        self._sums = term if self._sums is None else self._sums + term

    def value(self) -> float:
        n = max(1, self.n)
        key = self.task.metric.key
        if self._sums is None:
            return 0.0
        if key == "accuracy":
            return int(self._sums) / n
        sq, ab, y_sum, y_sq = (float(v) for v in self._sums.cpu())
        if key == "mse":
            return sq / n
        if key == "rmse":
            return (sq / n) ** 0.5
        if key == "mae":
            return ab / n
        var = y_sq / n - (y_sum / n) ** 2       # r2
        return 1.0 - (sq / n) / var if var > 0 else 0.0


def metric_of(name: str) -> Metric | None:
    """The metric whose reported name is ``name`` (``val_rmse``), or None."""
    return next((m for m in METRICS.values() if m.name == name), None)
