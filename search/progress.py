"""The one-line progress report of a search: trials done / budget, running, best so far, time.

The driver calls :meth:`Progress.line` after every event (trial started, epoch, trial finished);
printing is throttled so a fast run does not flood the terminal, but finished trials always print.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(max(0.0, seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


@dataclass(frozen=True)
class Snapshot:
    done: int                  # children finished (COMPLETE or FAIL)
    failed: int
    budget: int | None         # children allowed
    running: int
    best_id: str | None
    best_acc: float | None
    seed_acc: float | None
    elapsed: float             # search seconds, all sessions
    wall_time: float | None    # the wall-time budget, seconds


def eta(s: Snapshot) -> float | None:
    """Time left: the sooner of the trial budget at the mean pace so far and the wall-time budget."""
    left = []
    if s.budget is not None and s.done > 0:
        left.append(s.elapsed / s.done * max(0, s.budget - s.done))
    if s.wall_time is not None:
        left.append(max(0.0, s.wall_time - s.elapsed))
    return min(left) if left else None


def format_line(s: Snapshot) -> str:
    budget = f"/{s.budget}" if s.budget is not None else ""
    fail = f" ({s.failed} failed)" if s.failed else ""
    best = "best -" if s.best_id is None else f"best {s.best_id} val_acc {s.best_acc:.4f}"
    seed = f" (seed {s.seed_acc:.4f})" if s.seed_acc is not None else ""
    return (f"[search] trials {s.done}{budget}{fail} | running {s.running} | {best}{seed} | "
            f"elapsed {fmt_duration(s.elapsed)} | ETA {fmt_duration(eta(s))}")


class Progress:
    def __init__(self, out: TextIO | None = None, every: float = 5.0):
        self.out = out or sys.stdout
        self.every = every
        self._last = 0.0

    def show(self, s: Snapshot, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.every:
            self._last = now
            print(format_line(s), file=self.out, flush=True)
