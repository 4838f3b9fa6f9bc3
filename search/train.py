"""Training and evaluation of a :class:`Network` (SGD with momentum, cosine or constant LR).

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
from morphnas.morphism.errors import MorphnasError
from morphnas.morphism.graph import Network

from .data import Data, Split, batches


class Diverged(MorphnasError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainSpec:
    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"        # cosine (per step, to 0) | constant
    batch_size: int = 64


@dataclass(frozen=True)
class EpochReport:
    epoch: int            # 1-based
    train_loss: float
    val_acc: float
    lr: float
    steps: int            # optimisation steps so far (the compute unit of the benchmarks)


def train(net: Network, data: Data, spec: TrainSpec, seed: int = 0,
          on_epoch: Callable[[EpochReport, Network], None] | None = None,
          device: str | torch.device = "cpu", amp: bool = False) -> tuple[Network, list[EpochReport]]:
    """Train a copy of ``net``; ``on_epoch(report, net_so_far)`` is called after every epoch."""
    device = torch.device(device)
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
            lr = _lr(spec, step, total)
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = x.to(device), y.to(device)
            with torch.autocast(device.type, enabled=use_amp):
                loss = F.cross_entropy(module(x), y)
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
        rep = EpochReport(epoch, loss_sum / max(1, n_seen), acc, _lr(spec, step - 1, total), step)
        reports.append(rep)
        if on_epoch is not None:
            on_epoch(rep, sync_from_module(net, module.cpu()))
            module.to(device)
    return sync_from_module(net, module.cpu()), reports


def _lr(spec: TrainSpec, step: int, total: int) -> float:
    if spec.schedule == "constant":
        return spec.lr
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
