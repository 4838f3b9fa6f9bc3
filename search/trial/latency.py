"""Inference latency of a network, measured where the trial runs (the worker's device).

The median of ``repeats`` timed forward passes of one batch of ``batch_size`` random inputs, after
``warmup`` untimed passes, in eval mode without autograd; on a GPU every pass is synchronised. It
is a wall-clock measurement: a trial that shares a CPU core with another trial measures that
contention too, which is why the median (not the mean) is kept and why ``repeats`` is configurable.
The input batch comes from a private generator, so measuring consumes no random numbers of the run.

Every trial records its ``latency_ms`` (the seed too): measured before training and again after
the last epoch, the faster of the two kept (``search/trial/worker.py``). Beside a neighbour that trains on
the other core a pass took 2.2x as long here (``bench/latency_noise.py``), so one measurement can
catch a busy moment; two far apart rarely both do. When latency is an objective of the ``lemonade``
strategy it joins the Optuna study's objectives; when ``actions.constraints.max_latency_ms`` is set,
a child slower than that (measured twice) is not trained: its trial fails at once with the measured
figure (:func:`check_latency`). Before training, strategies can only estimate a child's cost, so
latency is the one constraint enforced on the worker (docs/design.md, "Multi-objective search").
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch

from morphnas.morphism.compile import compile_network
from morphnas.morphism.graph import Network
from morphnas.spaces.errors import ConstraintViolation


def measure_latency(net: Network, batch_size: int = 1, repeats: int = 20, warmup: int = 3,
                    device: str = "cpu", clock: Callable[[], float] = time.perf_counter) -> float:
    """Median milliseconds of one forward pass of ``net`` on a batch of ``batch_size`` inputs
    (``clock``: seconds, read once before and once after each pass)."""
    module = compile_network(net, check=False).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((batch_size, *net.input_shape), generator=gen, dtype=net.dtype).to(device)
    cuda = device.startswith("cuda")
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            if cuda:
                torch.cuda.synchronize()
            t = clock()
            module(x)
            if cuda:
                torch.cuda.synchronize()
            dt = clock() - t
            if i >= warmup:
                times.append(dt)
    return 1000.0 * statistics.median(times)


def check_latency(latency_ms: float, max_ms: float | None, spec: dict[str, Any], device: str) -> None:
    """Raise :class:`ConstraintViolation` when ``latency_ms`` exceeds ``max_ms`` (None: unbounded)."""
    if max_ms is not None and latency_ms > max_ms:
        raise ConstraintViolation(
            f"latency {latency_ms:.3g} ms > actions.constraints.max_latency_ms {max_ms:g} (median of "
            f"{spec.get('repeats', 20)} forward passes, batch {spec.get('batch_size', 1)}, on {device}); "
            f"the child was not trained")
