"""Training and evaluation of a :class:`Network` (SGD with momentum; cosine, constant or SGDR LR).

Used for the seed (member 0), every child's brief low-LR fine-tuning and the final stage. The
network is compiled once, trained, and its tensors synced back into a copy of the IR, so the
result can be saved and morphed again. A loss that becomes NaN/inf raises :class:`Diverged`
(the trial is then recorded as failed). Randomness (shuffling, augmentation) comes from ``seed``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from morphnas.morphism.compile import compile_network, sync_from_module
from morphnas.morphism.errors import MorphnasError, did_you_mean
from morphnas.morphism.graph import Network

from .data import Data, Split, batches
from .distill import Teacher


class Diverged(MorphnasError):
    """The training loss became NaN or infinite."""


class TrainError(MorphnasError):
    """A training specification that cannot run (unknown schedule, non-positive restart period)."""


SCHEDULES = ("cosine", "constant", "sgdr")


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

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise TrainError(f"train schedule {self.schedule!r} is unknown{did_you_mean(self.schedule, SCHEDULES)}")
        if self.restart_epochs is not None and self.restart_epochs < 1:
            raise TrainError(f"train restart_epochs must be >= 1, got {self.restart_epochs}; "
                             "use 1 to restart the cosine every epoch")
        if self.restart_mult < 1:
            raise TrainError(f"train restart_mult must be >= 1, got {self.restart_mult}; use 1 for equal cycles")


@dataclass(frozen=True)
class EpochReport:
    epoch: int            # 1-based
    train_loss: float
    val_acc: float
    lr: float
    steps: int            # optimisation steps so far (the compute unit of the benchmarks)


def train(net: Network, data: Data, spec: TrainSpec, seed: int = 0,
          on_epoch: Callable[[EpochReport, Network], None] | None = None,
          device: str | torch.device = "cpu", amp: bool = False,
          teacher: Teacher | None = None) -> tuple[Network, list[EpochReport]]:
    """Train a copy of ``net``; ``on_epoch(report, net_so_far)`` is called after every epoch. With a
    ``teacher`` (:mod:`.distill`: the parent, T and w) the loss mixes labels and the parent's soft outputs."""
    device = torch.device(device)
    if teacher is not None:
        teacher.to(device)
    module = compile_network(net).to(device)
    params_decay = [p for n, p in module.named_parameters() if p.ndim > 1]
    params_other = [p for n, p in module.named_parameters() if p.ndim <= 1]
    # BN affine, biases and activation slopes are not decayed (decay would pull PReLU/PAct towards ReLU).
    opt = torch.optim.SGD([{"params": params_decay, "weight_decay": spec.weight_decay},
                           {"params": params_other, "weight_decay": 0.0}], lr=spec.lr, momentum=spec.momentum)
    steps_per_epoch = math.ceil(len(data.train) / spec.batch_size)
    total = max(1, spec.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    use_amp = amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    reports: list[EpochReport] = []
    step = 0
    for epoch in range(1, spec.epochs + 1):
        module.train()
        loss_sum, n_seen = 0.0, 0
        for x, y in batches(data.train, spec.batch_size, shuffle=True, augment=data.augment, gen=gen):
            lr = _lr(spec, step, total, steps_per_epoch)
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = x.to(device), y.to(device)
            with torch.autocast(device.type, enabled=use_amp):
                loss = F.cross_entropy(module(x), y) if teacher is None else teacher.loss(module(x), x, y)
            if not torch.isfinite(loss):
                raise Diverged(f"training loss became {loss.item()} at epoch {epoch}, step {step + 1} "
                               f"(lr {lr:.3g}); lower the learning rate")
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            step += 1
            loss_sum += loss.item() * len(y)
            n_seen += len(y)
        acc = accuracy_module(module, data.val, spec.batch_size, device)
        rep = EpochReport(epoch, loss_sum / max(1, n_seen), acc, _lr(spec, step - 1, total, steps_per_epoch), step)
        reports.append(rep)
        if on_epoch is not None:
            on_epoch(rep, sync_from_module(net, module.cpu()))
            module.to(device)
    return sync_from_module(net, module.cpu()), reports


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
def accuracy_module(module: torch.nn.Module, split: Split, batch_size: int = 256,
                    device: str | torch.device = "cpu") -> float:
    module.eval()
    correct = 0
    for x, y in batches(split, batch_size):
        correct += (module(x.to(device)).argmax(1).cpu() == y).sum().item()
    return correct / max(1, len(split))


def evaluate(net: Network, split: Split, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``net`` on ``split`` in eval mode."""
    return accuracy_module(compile_network(net), split, batch_size)
