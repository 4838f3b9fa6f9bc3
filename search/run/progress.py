"""The one-line progress report of a search: trials done / budget, running, best so far, time.

The driver calls :meth:`Progress.show` with :func:`snapshot` of its state after every event (trial
started, epoch, trial finished); printing is throttled so a fast run does not flood the terminal,
but finished trials always print.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Sequence, TextIO

from morphnas.search.data.task import Metric
from morphnas.search.state.population import Population
from morphnas.search.state.records import TrialResult


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
    mean_trial: float | None = None   # mean wall time of the finished children, seconds
    concurrent: int = 1               # trials at a time
    metric: str = "val_acc"           # the name best_acc and seed_acc are shown under (in its units)
    seed_epoch: tuple[int, int] | None = None   # (epochs done, epochs) while the seed trains


def snapshot(results: Sequence[TrialResult], population: Population, running: int, budget: int | None,
             elapsed: float, wall_time: float | None, concurrent: int = 1, metric: Metric | None = None,
             seed_epoch: tuple[int, int] | None = None) -> Snapshot:
    """The progress of a run from its results and population; the seed is not a trial. Scores are
    shown as ``metric`` values (default: accuracy)."""
    value = metric.value if metric is not None else float
    children = [r for r in results if r.member_id != "m0"]
    best = population.best()
    seed = value(population.get("m0").val_acc) if "m0" in population else None
    times = [float(r.wall_time or 0.0) for r in children if r.state == "COMPLETE"]
    return Snapshot(done=len(children), failed=sum(r.state == "FAIL" for r in children), budget=budget,
                    running=running, best_id=best.id if best else None, best_acc=value(best.val_acc) if best else None,
                    seed_acc=seed, elapsed=elapsed, wall_time=wall_time,
                    mean_trial=sum(times) / len(times) if times else None, concurrent=max(1, concurrent),
                    metric=metric.name if metric is not None else "val_acc", seed_epoch=seed_epoch)


def eta(s: Snapshot) -> float | None:
    """Time left, from the children seen: mean child time x children left / trials at a time, and
    never beyond the wall-time budget. Before any child finished there is nothing to estimate from,
    so the wall-time budget stands in (the seed's time says little about a short fine-tune)."""
    left = []
    if s.budget is not None and s.mean_trial is not None:
        left.append(s.mean_trial * max(0, s.budget - s.done) / s.concurrent)
    elif s.budget is not None and s.done > 0:      # no child time known: the pace so far
        left.append(s.elapsed / s.done * max(0, s.budget - s.done))
    if s.wall_time is not None:
        left.append(max(0.0, s.wall_time - s.elapsed))
    return min(left) if left else None


def format_line(s: Snapshot) -> str:
    budget = f"/{s.budget}" if s.budget is not None else ""
    if s.seed_epoch is not None and s.done == 0:     # nothing to estimate from yet: say what runs
        done, total = s.seed_epoch
        left = (f" | wall-time budget left {fmt_duration(max(0.0, s.wall_time - s.elapsed))}"
                if s.wall_time is not None else "")
        return (f"[search] seed m0 training: epoch {done} of {total} | trials 0{budget} | "
                f"elapsed {fmt_duration(s.elapsed)}{left}")
    fail = f" ({s.failed} failed)" if s.failed else ""
    best = "best -" if s.best_id is None else f"best {s.best_id} {s.metric} {s.best_acc:.4f}"
    seed = f" (seed {s.seed_acc:.4f})" if s.seed_acc is not None else ""
    return (f"[search] trials {s.done}{budget}{fail} | running {s.running} | {best}{seed} | "
            f"elapsed {fmt_duration(s.elapsed)} | ETA {fmt_duration(eta(s))}")


class Progress:
    def __init__(self, out: TextIO | None = None, every: float = 5.0):
        self.out = out or sys.stdout
        self.every = every
        self._last = 0.0
        self._running = 0      # trials running in the last printed line

    def show(self, s: Snapshot, force: bool = False) -> None:
        """Print if forced (a trial finished), if ``every`` seconds passed, or if more trials run than
        the last line said (so a line shows them side by side as soon as they are)."""
        now = time.monotonic()
        if force or now - self._last >= self.every or s.running > self._running:
            self._last = now
            self._running = s.running
            print(format_line(s), file=self.out, flush=True)
