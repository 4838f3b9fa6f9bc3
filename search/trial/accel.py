"""How a trial uses its device: precision, memory format, ``torch.compile``, how often it reads back.

:func:`resolve_accel` turns the run's settings (``resources.precision``, ``resources.channels_last``,
``finetune.compile``, the older ``resources.amp``) and the device into one :class:`Accel`. On the
CPU every ``auto`` resolves to what the loop always did (float32, contiguous NCHW, eager, the loss
checked every step), so CPU results do not change. On a GPU ``auto`` means:

* **precision**: bfloat16 autocast where the GPU supports it, else float16 with a gradient scaler
  (``resources.amp: false`` keeps float32). The weights and optimizer state stay float32.
* **channels_last**: on for image inputs (convolutions run NHWC, cuDNN's fast layout).
* **compile**: ``torch.compile`` of the child's GraphModule when the planned optimisation steps
  repay the compile time: ``steps >= COMPILE_MIN_STEPS`` (see its comment for where the number
  comes from).
* the divergence check and the loss sum are read from the device every :data:`SYNC_EVERY` steps
  and at the end of each epoch, not after every step.

No Ray, no Optuna; only torch APIs of torch 2.4 (newer ones are guarded).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from morphnas.morphism.errors import MorphnasError

__all__ = ["Accel", "AccelError", "COMPILE_MIN_STEPS", "COMPILE_SECONDS", "COMPILE_SAVED_MS", "PRECISIONS",
           "SYNC_EVERY", "accumulator_dtype", "bf16_supported", "fused_sgd_ok", "resolve_accel", "torch_at_least"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# Steps between two reads of the device (the divergence check) on a GPU. A read drains the GPU's queue
# (the host waits for every queued kernel), so reading after every step leaves the GPU idle while
# Python prepares the next one; one read in 50 costs at most a few per cent of an epoch, and a NaN is
# still caught within 50 steps.
SYNC_EVERY = 50

# The ``compile: auto`` rule on a GPU: compile when planned steps x COMPILE_SAVED_MS >= COMPILE_SECONDS.
# COMPILE_SECONDS: compiling the IR ResNet-20's training step (forward + backward, inductor) took 51.4 s
# on this project's CPU machine, one thread (BENCHMARKS.md, "torch.compile on the CPU"); the last,
# smaller batch of an epoch compiles once more, and a GPU's Triton compile is assumed to take about as
# long, so 60 s. COMPILE_SAVED_MS is an assumed saving per step of batch 128 on a GPU (fused
# BN/PReLU/add kernels, fewer launches): not measured (no GPU was available). bench/gpu_check.py
# measures both on a GPU and prints the break-even step count: put its figures here.
COMPILE_SECONDS = 60.0
COMPILE_SAVED_MS = 4.0
COMPILE_MIN_STEPS = int(math.ceil(COMPILE_SECONDS * 1000.0 / COMPILE_SAVED_MS))   # 15,000 steps


class AccelError(MorphnasError):
    """A device setting this device cannot honour (float16 on the CPU, bfloat16 on an old GPU)."""


def torch_at_least(major: int, minor: int) -> bool:
    """Whether the running torch is at least ``major.minor`` (local builds such as 2.4.1+cu121 count)."""
    parts = torch.__version__.split("+")[0].split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except (ValueError, IndexError):   # an unparsable development version: assume it is recent
        return True


def bf16_supported(device: torch.device) -> bool:
    """bfloat16 autocast runs on this device (any CPU; a GPU of compute capability 8.0 or more)."""
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return False


def fused_sgd_ok(params: list[torch.Tensor]) -> bool:
    """``torch.optim.SGD(fused=True)`` applies: torch >= 2.4 and every parameter on a CUDA device.
    The CPU keeps the for-each step (its results stay bit-identical to earlier runs)."""
    return bool(params) and torch_at_least(2, 4) and all(p.is_cuda and p.is_floating_point() for p in params)


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """The dtype of running sums kept on the device: float64 (the same sums Python floats gave), except on
    Apple's MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


@dataclass(frozen=True)
class Accel:
    """What a training run does on its device (see the module docstring)."""

    autocast_dtype: torch.dtype | None = None   # None: no autocast (float32)
    scaler: bool = False                         # float16 needs a gradient scaler
    channels_last: bool = False
    compile: bool = False
    sync_every: int = 1                          # 1: check the loss after every step (the CPU)

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]

    def describe(self) -> str:
        return (f"{self.precision}, channels_last {'on' if self.channels_last else 'off'}, "
                f"compile {'on' if self.compile else 'off'}, loss read every {self.sync_every} step(s)")


def _flag(value: Any, key: str) -> Any:
    if value in ("auto", True, False):
        return value
    raise AccelError(f"{key} must be auto, true or false, got {value!r}")


def resolve_accel(device: str | torch.device, precision: str = "auto", channels_last: Any = "auto",
                  compile: Any = "auto", amp: bool = True, planned_steps: int = 0,
                  images: bool = True) -> Accel:
    """The :class:`Accel` of a run on ``device``. ``amp`` (``resources.amp``) only matters for
    ``precision: auto`` on a GPU; ``planned_steps`` for ``compile: auto``; ``images`` (4-D inputs) for
    ``channels_last: auto``."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise AccelError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    channels_last, compile = _flag(channels_last, "channels_last"), _flag(compile, "compile")
    gpu = device.type == "cuda"
    if precision == "auto":
        precision = ("bf16" if bf16_supported(device) else "fp16") if (gpu and amp) else "fp32"
    if precision == "fp16" and not gpu:
        raise AccelError(f"precision fp16 needs a CUDA GPU (this trial runs on {device.type}); use bf16 or fp32 "
                         f"on the CPU, or auto")
    if precision == "bf16" and not bf16_supported(device):
        raise AccelError(f"precision bf16 is not supported on this {device.type} device; use fp16 (with a gradient "
                         f"scaler) or auto")
    cl = (gpu and images) if channels_last == "auto" else bool(channels_last) and images
    comp = (gpu and planned_steps >= COMPILE_MIN_STEPS) if compile == "auto" else bool(compile)
    return Accel(autocast_dtype=_DTYPES.get(precision), scaler=precision == "fp16", channels_last=cl, compile=comp,
                 sync_every=1 if device.type == "cpu" else SYNC_EVERY)
