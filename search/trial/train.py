"""Training and evaluation of a :class:`Network` (SGD with momentum; cosine, constant or SGDR LR).

Used for the seed (member 0), every child's brief low-LR fine-tuning and the final stage. The
network is compiled once, trained, and its tensors synced back into a copy of the IR, so the
result can be saved and morphed again. A loss that becomes NaN/inf raises :class:`Diverged`
(the trial is then recorded as failed). Randomness (shuffling, augmentation) comes from ``seed``.

On a GPU (:mod:`.accel` resolves the settings): the data is copied to the device once per process
and batches are gathered and augmented there; convolutions run channels-last; the step runs under
bfloat16 autocast (float16 with a gradient scaler on GPUs without bfloat16); SGD uses torch's
fused kernel; the loss and the divergence check are read from the device every ``SYNC_EVERY`` steps
and once per epoch, not per step; and ``compile`` wraps the child's GraphModule in
``torch.compile``. On the CPU, with the defaults, every number is what it always was.
"""
from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Any, Callable

import torch

from morphnas.morphism.compile import compile_network, sync_from_module
from morphnas.morphism.errors import MorphnasError, did_you_mean
from morphnas.morphism.graph import Network
from morphnas.morphism.optstate import ParamState, load_optimizer_state_by_name, optimizer_state_by_name
from morphnas.search.config import Schedule
from morphnas.search.data.core import AnySplit, Data, batches
from morphnas.search.data.task import MetricSums, Task
from morphnas.search.trial.accel import fused_sgd_ok, resolve_accel
from morphnas.search.trial.distill import Teacher
from morphnas.search.trial.trainer import BuiltinTrainer, Diverged, EpochContext, TrainerError
from morphnas.spaces.counting import count


class TrainError(MorphnasError):
    """A training specification that cannot run (unknown schedule, non-positive restart period)."""


SCHEDULES: tuple[str, ...] = typing.get_args(Schedule)   # the config's own list


@dataclass(frozen=True)
class TrainSpec:
    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"        # cosine (per step, to 0) | constant | sgdr (cosine with warm restarts)
    batch_size: int = 64
    restart_epochs: int | None = None   # sgdr: first cycle length in epochs (None: one cycle = all epochs)
    restart_mult: int = 1               # sgdr: each cycle is this many times longer than the one before
    # Where this run sits in a longer schedule (a growing lineage: each child continues its parent's
    # schedule): the LR of local epoch e is the schedule's at epoch ``epoch_offset + e``, and a cosine
    # runs over ``total_epochs`` (None: over this run's epochs).
    epoch_offset: int = 0
    total_epochs: int | None = None
    optimizer: str = "sgd"              # sgd (momentum) | adamw
    max_steps: int | None = None        # stop after this many SGD steps (a scoring rung of part of an epoch)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise TrainError(f"train schedule {self.schedule!r} is unknown{did_you_mean(self.schedule, SCHEDULES)}")
        if self.restart_epochs is not None and self.restart_epochs < 1:
            raise TrainError(f"train restart_epochs must be >= 1, got {self.restart_epochs}; "
                             "use 1 to restart the cosine every epoch")
        if self.restart_mult < 1:
            raise TrainError(f"train restart_mult must be >= 1, got {self.restart_mult}; use 1 for equal cycles")
        if self.max_steps is not None and self.max_steps < 1:
            raise TrainError(f"train max_steps must be >= 1, got {self.max_steps}")
        if self.optimizer not in ("sgd", "adamw"):
            raise TrainError(f"train optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.epoch_offset < 0:
            raise TrainError(f"train epoch_offset must be >= 0, got {self.epoch_offset}")
        if self.total_epochs is not None and self.total_epochs < self.epoch_offset + self.epochs:
            raise TrainError(f"train total_epochs {self.total_epochs} is shorter than epoch_offset + epochs "
                             f"({self.epoch_offset} + {self.epochs})")


@dataclass(frozen=True)
class EpochReport:
    epoch: int            # 1-based
    train_loss: float
    val_acc: float
    lr: float
    steps: int            # optimisation steps so far (the compute unit of the benchmarks)
    train_flops: int = 0  # training multiply-adds so far (see :func:`training_flops`)


# A backward pass costs about twice its forward pass (the gradients of the inputs and of the weights
# are each one more pass of multiply-adds), so a training example costs 3x the forward MACs.
BACKWARD_FACTOR = 2


def training_flops(net: Network, examples: int, teacher: Network | None = None) -> int:
    """Multiply-adds of training ``net`` on ``examples`` examples: forward + backward (3x the forward
    MACs the IR counts), plus the teacher's forward pass when one distils. A bigger network costs
    more per step, which counting steps alone would hide."""
    per_example = (1 + BACKWARD_FACTOR) * count(net).flops + (count(teacher).flops if teacher is not None else 0)
    return int(per_example) * int(examples)


def make_optimizer(module: torch.nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    """SGD with momentum (or AdamW with ``optimizer="adamw"``); BN affine, biases and activation
    slopes are not decayed (decay would pull PReLU/PAct towards ReLU). Fused into one kernel per step
    when the parameters are on a CUDA GPU and torch has it (2.4 and later); the CPU keeps torch's
    default step."""
    params_decay = [p for n, p in module.named_parameters() if p.ndim > 1]
    params_other = [p for n, p in module.named_parameters() if p.ndim <= 1]
    fused = {"fused": True} if fused_sgd_ok(params_decay + params_other) else {}
    if spec.optimizer == "adamw":
        return torch.optim.AdamW([{"params": params_decay, "weight_decay": spec.weight_decay},
                                  {"params": params_other, "weight_decay": 0.0}], lr=spec.lr, **fused)
    return torch.optim.SGD([{"params": params_decay, "weight_decay": spec.weight_decay},
                            {"params": params_other, "weight_decay": 0.0}], lr=spec.lr, momentum=spec.momentum,
                           **fused)


def train(net: Network, data: Data, spec: TrainSpec, seed: int = 0,
          on_epoch: Callable[[EpochReport, Network], None] | None = None,
          device: str | torch.device = "cpu", amp: bool = False,
          teacher: Teacher | None = None, optimizer_state: ParamState | None = None,
          on_optimizer_state: Callable[[ParamState], None] | None = None,
          trainer: Any = None, task: Task | None = None, precision: str = "auto", channels_last: Any = "auto",
          compile: Any = "auto") -> tuple[Network, list[EpochReport]]:
    """Train a copy of ``net``; ``on_epoch(report, net_so_far)`` is called after every epoch. With a
    ``teacher`` (:mod:`.distill`: the parent, T and w) the loss mixes labels and the parent's soft outputs.
    ``optimizer_state`` (by parameter name, :mod:`morphnas.morphism.optstate`) starts the optimizer with
    those buffers instead of none; ``on_optimizer_state(state)`` gets the state after every epoch,
    before ``on_epoch``, so a lineage can continue from it. ``trainer`` (:mod:`.trainer`) runs each
    epoch (default: the built-in SGD epoch); ``task`` says the loss and the metric (default:
    classification, cross-entropy, accuracy). ``EpochReport.val_acc`` is the task's *score* (the
    metric, negated when lower is better: :class:`~morphnas.search.data.task.Metric`).

    ``precision`` (auto, fp32, bf16, fp16), ``channels_last`` and ``compile`` (auto, True, False) say how
    the run uses its device (:func:`~.accel.resolve_accel`; ``amp`` is ``resources.amp``, read by
    ``precision: auto`` on a GPU). Every ``auto`` keeps the CPU's float32, eager, NCHW loop."""
    device = torch.device(device)
    task = task if task is not None else Task()
    trainer = trainer if trainer is not None else BuiltinTrainer()
    steps_per_epoch = math.ceil(len(data.train) / spec.batch_size)
    planned = spec.epochs * steps_per_epoch if spec.max_steps is None else min(spec.max_steps,
                                                                               spec.epochs * steps_per_epoch)
    accel = resolve_accel(device, precision, channels_last, compile, amp=amp, planned_steps=planned,
                          images=len(data.input_shape) == 3)
    data = data.on(device)                 # once per process: the copy is cached with the data
    if teacher is not None:
        teacher.to(device)
    module = compile_network(net).to(device)
    if accel.channels_last:
        module = module.to(memory_format=torch.channels_last)
    offset = spec.epoch_offset * steps_per_epoch
    total = max(1, (spec.total_epochs if spec.total_epochs is not None else spec.epochs) * steps_per_epoch)
    ctx = EpochContext(data=data, task=task, spec=spec, device=device, generator=torch.Generator().manual_seed(seed),
                       lr_at=lambda step: _lr(spec, offset + step, total, steps_per_epoch), teacher=teacher,
                       amp=accel.autocast_dtype is not None, amp_dtype=accel.autocast_dtype,
                       scaler=torch.amp.GradScaler("cuda") if accel.scaler else None,
                       max_steps=spec.max_steps, channels_last=accel.channels_last, sync_every=accel.sync_every)
    ctx.extra["accel"] = accel
    ctx.optimizer = _optimizer(trainer, module, ctx)
    model = _compiled(module) if accel.compile else module
    if optimizer_state is not None:
        load_optimizer_state_by_name(ctx.optimizer, module, optimizer_state)
    flops_per_example = training_flops(net, 1, teacher.network if teacher is not None else None)
    reports: list[EpochReport] = []
    examples = 0
    for epoch in range(1, spec.epochs + 1):
        ctx.epoch = epoch
        module.train()
        loss = _call(trainer, "train_epoch", model, ctx)
        ctx.flush_checks()
        if isinstance(loss, bool) or not isinstance(loss, (int, float, torch.Tensor)) or \
                (isinstance(loss, torch.Tensor) and loss.numel() != 1):
            raise TrainerError(f"trainer {type(trainer).__name__}.train_epoch returned {type(loss).__name__}; "
                               f"return the epoch's mean training loss as a number")
        loss = float(loss)
        ctx.check_finite(loss)
        bad = _nonfinite_parameter(module)
        if bad is not None:
            raise Diverged(f"parameter {bad!r} became NaN or infinite in epoch {epoch}; lower the learning rate")
        value = _call(trainer, "evaluate", module, ctx) if hasattr(trainer, "evaluate") else ctx.evaluate(module)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            raise TrainerError(f"trainer {type(trainer).__name__}.evaluate returned {value!r}; return the validation "
                               f"{task.metric.name} as a finite number")
        examples += ctx.examples_seen
        rep = EpochReport(epoch, loss, task.metric.score(float(value)), ctx.lr_at(ctx.step - 1), ctx.step,
                          flops_per_example * examples)
        reports.append(rep)
        if on_optimizer_state is not None:
            on_optimizer_state(optimizer_state_by_name(ctx.optimizer, module))
        if on_epoch is not None:
            on_epoch(rep, _synced(net, module))
    return _synced(net, module), reports


def _synced(net: Network, module: torch.nn.Module) -> Network:
    """A copy of ``net`` holding ``module``'s tensors, copied to the CPU in the standard (contiguous)
    layout; the module stays where it is (on its GPU, with its optimizer and compiled code)."""
    if all(t.device.type == "cpu" and t.is_contiguous() for t in module.state_dict().values()):
        return sync_from_module(net, module)
    out = net.copy()
    out.load_state_dict({k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()})
    return out


def _nonfinite_parameter(module: torch.nn.Module) -> str | None:
    """The name of the first parameter holding NaN or infinity, or None: one read of the device."""
    named = list(module.named_parameters())
    if not named:
        return None
    ok = torch.stack([torch.isfinite(p.detach()).all() for _, p in named]).cpu()
    return next((n for (n, _), good in zip(named, ok.tolist()) if not good), None)


def _compiled(module: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile`` of the child's GraphModule (inductor; the last, smaller batch of an epoch
    compiles once more). Its parameters are the module's own, so the optimizer, the state saved
    every epoch and evaluation (which runs the module itself) see the trained weights."""
    return torch.compile(module)


def _optimizer(trainer: Any, module: torch.nn.Module, ctx: EpochContext) -> torch.optim.Optimizer:
    if not hasattr(trainer, "configure_optimizer"):
        return make_optimizer(module, ctx.spec)
    opt = _call(trainer, "configure_optimizer", module, ctx)
    if not isinstance(opt, torch.optim.Optimizer):
        raise TrainerError(f"trainer {type(trainer).__name__}.configure_optimizer returned {type(opt).__name__}; "
                           f"return a torch.optim.Optimizer over model.parameters()")
    return opt


def _call(trainer: Any, method: str, *args: Any) -> Any:
    """A trainer's method; what it raises (other than our own errors) is one line naming it."""
    try:
        return getattr(trainer, method)(*args)
    except (MorphnasError, torch.cuda.OutOfMemoryError, KeyboardInterrupt):
        raise
    except Exception as e:  # the user's own code
        first = (str(e).strip().splitlines() or [""])[0]
        raise TrainerError(f"trainer {type(trainer).__name__}.{method} raised {type(e).__name__}: {first}") from e


def _lr(spec: TrainSpec, step: int, total: int, steps_per_epoch: int = 1) -> float:
    """The learning rate of optimisation step ``step`` (0-based) out of ``total``.

    ``sgdr`` (Loshchilov & Hutter; NASH trains every network with it) anneals per step from
    ``lr`` towards 0 over a cycle of ``restart_epochs`` epochs, then jumps back to ``lr``; each
    cycle is ``restart_mult`` times longer than the previous one. A last cycle cut short by the end
    of training stays unfinished, as in SGDR. Without ``restart_epochs`` it is one cosine cycle.
    """
    if spec.schedule == "constant":
        return spec.lr
    if spec.schedule == "sgdr" and spec.restart_epochs is not None:
        start, length = 0, spec.restart_epochs * steps_per_epoch
        while step >= start + length:
            start, length = start + length, length * spec.restart_mult
        return 0.5 * spec.lr * (1.0 + math.cos(math.pi * (step - start) / length))
    return 0.5 * spec.lr * (1.0 + math.cos(math.pi * step / total))


@torch.no_grad()
def accuracy_module(module: torch.nn.Module, split: AnySplit, batch_size: int = 256,
                    device: str | torch.device = "cpu") -> float:
    module.eval()
    correct: torch.Tensor | int = 0
    for x, y in batches(split, batch_size):
        x = x.to(device, non_blocking=True)
        correct = correct + (module(x).argmax(1) == y.to(x.device, non_blocking=True)).sum()   # stays on the device
    return int(correct) / max(1, len(split))


@torch.no_grad()
def metric_value(net: Network, split: AnySplit, task: Task | None = None,
                 target_scale: tuple[float, float] | None = None, batch_size: int = 256) -> float:
    """The task's metric of ``net`` on ``split`` in eval mode, in the metric's own units."""
    task = task if task is not None else Task()
    module = compile_network(net).eval()
    sums = MetricSums(task, target_scale)
    for x, y in batches(split, batch_size):
        sums.add(module(x), y)
    return sums.value()


def evaluate(net: Network, split: AnySplit, batch_size: int = 256, task: Task | None = None,
             target_scale: tuple[float, float] | None = None) -> float:
    """The *score* of ``net`` on ``split`` (top-1 accuracy for a classification; the metric
    negated when lower is better), what the search maximises."""
    if task is None or task.classification:
        return accuracy_module(compile_network(net), split, batch_size)
    return task.metric.score(metric_value(net, split, task, target_scale, batch_size))
