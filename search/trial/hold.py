"""Holds: trials that are no member, keeping a free slot's worker process warm while the strategy waits.

Without them Tune keeps only one live actor while the searcher waits; when two trials are staged
next, the second needs a new actor, which starts (a new Python process importing torch) slower
than a short trial runs, and Tune hands it the first trial's cached actor and kills the cold one:
every trial then runs in one process, one after another. A hold imports the child's modules (this
module imports what :mod:`.worker` needs) and loads the data into this process (useful for the
next child), then waits until the driver bumps the wake counter (``run_dir/.wake``: a job was
launched, the run was interrupted or ended) or until ``max_wait`` seconds passed (a node without
the run's file system just holds briefly). The driver bumps it only after the launched job took the
actor that freed up: a hold ending together with a real trial leaves Tune two idle actors, and it
keeps one. It reports nothing: schedulers (ASHA) and the study never see it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from morphnas.search.trial.worker import data_for

HOLD = "hold"          # the Tune trial config key of a hold: no job, no member
WAKE_FILE = ".wake"    # in the run directory: the driver's wake counter that ends holds


def read_wake(path: Path) -> int:
    """The driver's wake counter (0 when the file is missing or being replaced)."""
    try:
        return int(path.read_text() or 0)
    except (OSError, ValueError):
        return 0


def bump_wake(path: Path) -> int:
    """Increment the wake counter atomically (write a temp file, rename); returns the new value."""
    value = read_wake(path) + 1
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(str(value))
        os.replace(tmp, path)
    except OSError:  # a hold then waits for its bounded maximum instead; nothing is lost
        pass
    return value


def hold_config(wake: Path, seen: int, max_wait: float, threads: int, data: Mapping[str, Any],
                data_seed: int, task: str = "classification") -> dict[str, Any]:
    """The Tune trial config of a hold (what the driver hands a free slot)."""
    return {HOLD: {"wake": str(wake), "seen": seen, "max_wait": max_wait, "threads": threads,
                   "data": dict(data), "data_seed": data_seed, "task": task}}


def hold(spec: Mapping[str, Any]) -> None:
    """Keep this worker busy (and load the run's data) until woken or ``max_wait`` seconds passed."""
    start = time.monotonic()
    torch.set_num_threads(int(spec.get("threads", 1)))
    wake = Path(spec["wake"])
    seen = int(spec.get("seen", 0))
    try:
        if spec.get("data"):
            data_for(spec["data"], int(spec.get("data_seed", 0)), str(spec.get("task", "classification")))
    except Exception:  # the child that needs the data reports any problem with it
        pass
    while time.monotonic() - start < float(spec.get("max_wait", 20.0)):
        if read_wake(wake) > seen:
            return
        time.sleep(0.05)
