"""The trainer protocol: your own epoch of training in place of the built-in SGD loop.

A trainer is any object with one method, ``train_epoch(model, ctx) -> float`` (the epoch's mean
training loss), and optionally ``evaluate(model, ctx) -> float`` (the validation metric in its own
units; the built-in one is the task's metric: accuracy, RMSE, ...) and
``configure_optimizer(model, ctx) -> torch.optim.Optimizer``. Name its class (or a factory) by
import path in the config, ``trainer: mypkg.train:MyTrainer`` with ``trainer_options`` as keyword
arguments, or pass the object to :func:`morphnas.run_search` (``trainer=...``)::

    class MyTrainer:
        def train_epoch(self, model, ctx):
            total = 0.0
            for x, y in ctx.train_batches():          # on ctx.device; the LR schedule is applied
                with ctx.autocast():                   # the run's precision (a no-op in float32)
                    loss = ctx.loss(model(x), x, y)    # the task's loss (+ distillation from the parent)
                ctx.optimizer.zero_grad()
                loss.backward()
                ctx.optimizer.step()
                total += loss.item()                   # reads the GPU every step: see below
            return total / max(1, ctx.batches_seen)

The search keeps its guarantees for any trainer: the child's function was checked against the
parent before training starts; ``ctx.loss`` mixes in the parent's outputs when the child distils
(a trainer with a loss of its own adds ``ctx.distill_term(outputs, x)``); a loss or weights that
become NaN or infinite fail the trial (:class:`~.train.Diverged`), checked after every epoch and on
every ``ctx.loss`` (on a GPU, ``ctx.loss`` keeps a running sum on the device and reads it every
``ctx.sync_every`` steps and at the end of the epoch, so a NaN is caught at most that many steps
late; on the CPU every step, as before); and every epoch is reported, saved and recorded as with the built-in loop, which
is what resume relies on. ``ctx.optimizer`` is made by ``configure_optimizer`` (default: SGD with
momentum, no decay on biases and norms) and starts from the parent's state when a growing lineage
carries it; ``ctx.train_batches()`` sets the schedule's learning rate on it before every step and
stops at ``max_steps`` (the scoring rungs of ``grow``).

On a GPU the batches are gathered and augmented on the device from data copied there once, in
channels-last layout when ``ctx.channels_last``; ``ctx.autocast()`` is the run's precision and
``ctx.scaler`` its gradient scaler (float16 only). A fast trainer avoids ``loss.item()`` per step (each
waits for the GPU): sum ``loss.detach()`` on the device and read it once per epoch, as the built-in
one does (``ctx.accumulate(loss, len(y))`` and ``ctx.mean_loss()``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, runtime_checkable

import torch

from morphnas.morphism.errors import MorphnasError
from morphnas.search.data.containers import Data
from morphnas.search.data.task import MetricSums, Task
from morphnas.search.trial.accel import accumulator_dtype
from morphnas.search.trial.distill import Teacher

__all__ = ["BuiltinTrainer", "Diverged", "EpochContext", "Trainer", "TrainerError", "check_trainer"]


class Diverged(MorphnasError):
    """The training loss became NaN or infinite."""


class TrainerError(MorphnasError):
    """A trainer plug-in that cannot be used (missing method, raises, returns the wrong thing)."""


@runtime_checkable
class Trainer(Protocol):
    """What a trainer must have (``evaluate`` and ``configure_optimizer`` are optional)."""

    def train_epoch(self, model: torch.nn.Module, ctx: "EpochContext") -> float: ...


@dataclass
class EpochContext:
    """What a trainer's epoch sees. Created by the search for every training run."""

    data: Data
    task: Task
    spec: Any                                   # the run's TrainSpec (lr, momentum, epochs, batch_size, ...)
    device: torch.device
    generator: torch.Generator                  # all randomness of shuffling and augmentation
    lr_at: Callable[[int], float]               # the schedule's LR at a global step
    teacher: Teacher | None = None
    amp: bool = False
    optimizer: Any = None
    scaler: Any = None
    epoch: int = 0                              # 1-based, set before every epoch
    step: int = 0                               # optimisation steps so far (all epochs)
    batches_seen: int = 0                       # batches of this epoch so far
    examples_seen: int = 0                      # examples of this epoch so far
    max_steps: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    amp_dtype: torch.dtype | None = None        # the autocast dtype (None: the device's default)
    channels_last: bool = False                 # image batches in channels-last memory format
    sync_every: int = 1                         # steps between reads of the device's divergence check
    _watch: Any = field(default=None, repr=False)       # running sum of this epoch's unchecked losses
    _checked_at: int = field(default=0, repr=False)     # ``step`` of the last check
    _loss_sum: Any = field(default=None, repr=False)    # ``accumulate``'s running sum (on the device)

    # ------------------------------------------------------------------ batches
    def train_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This epoch's shuffled (and augmented) training batches on ``device``. Before each one the
        schedule's LR is set on ``optimizer`` and ``step`` counts it; stops at ``max_steps``."""
        self.batches_seen = self.examples_seen = 0
        self._loss_sum = None
        for x, y in self.data.train.batches(self.spec.batch_size, shuffle=True, augment=self.data.augment,
                                            gen=self.generator):
            if self.max_steps is not None and self.step >= self.max_steps:
                break
            if self._watch is not None and self.step - self._checked_at >= self.sync_every:
                self.flush_checks()
            if self.optimizer is not None:
                lr = self.lr_at(self.step)
                for g in self.optimizer.param_groups:
                    g["lr"] = lr
            self.step += 1
            self.batches_seen += 1
            self.examples_seen += len(y)
            yield self._layout(x.to(self.device, non_blocking=True)), y.to(self.device, non_blocking=True)

    def val_batches(self, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.data.val.batches(batch_size):
            yield self._layout(x.to(self.device, non_blocking=True)), y.to(self.device, non_blocking=True)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x

    @property
    def lr(self) -> float:
        """The LR of the current step (what ``train_batches`` set last)."""
        return self.lr_at(max(0, self.step - 1))

    # ------------------------------------------------------------------ losses
    def loss(self, outputs: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The task's loss of ``outputs`` on batch ``x`` with targets ``y``, mixed with the parent's
        outputs when this child distils; NaN or infinity raises :class:`Diverged`."""
        if self.teacher is None:
            loss = self.task.loss_fn(outputs, y)
        elif self.task.classification:
            loss = self.teacher.loss(outputs, x, y)
        else:
            w = self.teacher.weight
            loss = (1 - w) * self.task.loss_fn(outputs, y) + self.distill_term(outputs, x)
        self.watch(loss)
        return loss

    def distill_term(self, outputs: torch.Tensor, x: torch.Tensor) -> torch.Tensor | float:
        """The distillation term alone (0 when the child does not distil): for classification the
        tempered KL to the parent's outputs, for regression the mean squared distance to them, times
        the distillation weight."""
        if self.teacher is None:
            return 0.0
        target = self.teacher.logits(x).to(outputs.dtype)
        if self.task.classification:
            t = self.teacher.temperature
            kl = torch.nn.functional.kl_div(torch.log_softmax(outputs / t, 1), torch.log_softmax(target / t, 1),
                                            reduction="batchmean", log_target=True)
            return self.teacher.weight * kl * t * t
        return self.teacher.weight * torch.nn.functional.mse_loss(outputs, target)

    def check_finite(self, loss: torch.Tensor | float) -> None:
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        if not math.isfinite(value):
            raise Diverged(f"training loss became {value} at epoch {self.epoch}, step {self.step} "
                           f"(lr {self.lr:.3g}); lower the learning rate")

    def watch(self, loss: torch.Tensor) -> None:
        """Check ``loss`` for NaN/inf: at once when ``sync_every`` is 1 (the CPU), else by adding it to a
        sum kept on the device (a NaN or infinity in any term makes the sum non-finite), read every
        ``sync_every`` steps and at the end of the epoch (:meth:`flush_checks`)."""
        if self.sync_every <= 1 or not isinstance(loss, torch.Tensor):
            self.check_finite(loss)
            return
        term = loss.detach().sum().to(accumulator_dtype(loss.device))
        self._watch = term if self._watch is None else self._watch + term

    def flush_checks(self) -> None:
        """Read the unchecked losses' sum from the device (one wait for the GPU); NaN or infinity raises
        :class:`Diverged` naming the steps it arose in."""
        first, last = self._checked_at + 1, self.step
        watched, self._watch, self._checked_at = self._watch, None, self.step
        if watched is None:
            return
        value = float(watched)
        if not math.isfinite(value):
            where = f"step {last}" if first >= last else f"steps {first}-{last}"
            raise Diverged(f"training loss became {'nan' if math.isnan(value) else 'infinite'} at epoch {self.epoch}, "
                           f"{where} (checked every {self.sync_every} steps on {self.device.type}; lr {self.lr:.3g}); "
                           f"lower the learning rate")

    def accumulate(self, loss: torch.Tensor, n: int) -> None:
        """Add ``loss`` (a batch's mean) times ``n`` examples to this epoch's loss sum, on the device."""
        term = loss.detach().to(accumulator_dtype(loss.device)) * n
        self._loss_sum = term if self._loss_sum is None else self._loss_sum + term

    def mean_loss(self) -> float:
        """This epoch's mean training loss per example so far (what :meth:`accumulate` summed): one read."""
        return float(self._loss_sum) / max(1, self.examples_seen) if self._loss_sum is not None else 0.0

    # ------------------------------------------------------------------ evaluation
    def autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, batch_size: int = 256) -> float:
        """The task's metric (accuracy, RMSE, ...) of ``model`` on the validation split, in eval mode and
        float32; the sums stay on the device and are read once."""
        model.eval()
        sums = MetricSums(self.task, self.data.target_scale)
        for x, y in self.val_batches(batch_size):
            sums.add(model(x), y)
        return sums.value()


class BuiltinTrainer:
    """The built-in epoch: SGD with momentum on the task's loss (mixed precision on a GPU with ``amp``).
    The loss is summed on the device and read once, at the end of the epoch (in float64: the same
    number the per-step ``loss.item()`` sum gave)."""

    def train_epoch(self, model: torch.nn.Module, ctx: EpochContext) -> float:
        for x, y in ctx.train_batches():
            with ctx.autocast():
                loss = ctx.loss(model(x), x, y)
            ctx.optimizer.zero_grad(set_to_none=True)
            if ctx.scaler is not None:
                ctx.scaler.scale(loss).backward()
                ctx.scaler.step(ctx.optimizer)
                ctx.scaler.update()
            else:
                loss.backward()
                ctx.optimizer.step()
            ctx.accumulate(loss, len(y))
        return ctx.mean_loss()


def check_trainer(obj: Any, name: str, options: dict[str, Any] | None = None) -> Any:
    """``obj`` as a trainer: an object with ``train_epoch``; a class or factory is called first with
    ``options`` as keyword arguments. Else a one-line :class:`TrainerError`."""
    options = dict(options or {})
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "train_epoch")):
        try:
            obj = obj(**options)
        except Exception as e:  # the user's constructor
            first = (str(e).strip().splitlines() or [""])[0]
            raise TrainerError(f"trainer {name!r}: creating it with trainer_options {options} raised "
                               f"{type(e).__name__}: {first}") from None
    elif options:
        raise TrainerError(f"trainer {name!r} is an object, so trainer_options {options} cannot be given to it; "
                           f"name its class instead, or drop trainer_options")
    if not callable(getattr(obj, "train_epoch", None)):
        raise TrainerError(f"trainer {name!r} is a {type(obj).__name__} without a train_epoch(model, ctx) method; "
                           f"see morphnas.Trainer")
    for opt in ("evaluate", "configure_optimizer"):
        if hasattr(obj, opt) and not callable(getattr(obj, opt)):
            raise TrainerError(f"trainer {name!r}: {opt} must be a method")
    return obj
