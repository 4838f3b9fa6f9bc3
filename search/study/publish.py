"""Drawings of a run, made around recording rather than inside it.

:class:`Publisher` is what the driver records through: for a finished member it draws the
architecture (what the child gained over its parent highlighted), records the trial with that
drawing attached (:meth:`~.leaderboard.Leaderboard.record`), then redraws the lineage tree and the
Pareto plot and attaches them to the study. A drawing that fails is a warning: the trial is
recorded without it rather than not at all. :func:`draw_run_plots` is the same redraw for readers
(``morphnas leaderboard --plots``), which must not write the study.

:class:`BackgroundPublisher` takes all of this off the search's critical path: the driver hands it
each finished member and goes on scheduling trials, while one thread (the study's only writer during
a search) draws and records the members in order, and redraws the run plots in batches (at most
every ``plots_every`` seconds when it is idle) and once more when flushed. The run state is written
before a member is handed over, so nothing is lost if the process dies first: ``resume`` records
(and draws) whatever the study lacks.
"""
from __future__ import annotations

import queue
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from morphnas.morphism.errors import MorphnasError
from morphnas.morphism.serialize import load_network
from morphnas.search.errors import LeaderboardError
from morphnas.search.state.records import TrialResult
from morphnas.search.study import plots
from morphnas.search.study.leaderboard import Leaderboard
from morphnas.search.study.rows import cost_axis


class Publisher:
    def __init__(self, lb: Leaderboard):
        if lb.run is None:
            raise LeaderboardError("publishing needs the run directory; open the leaderboard with for_run()")
        self.lb = lb

    def record(self, result: TrialResult, plots: bool = True) -> int:
        """Draw the member, record it with the drawing, refresh the run plots (``plots``); returns the
        trial number."""
        if result.member_id in self.lb.recorded():
            return self.lb.recorded()[result.member_id]
        drawing = self.draw_member(result) if result.state == "COMPLETE" else None
        number = self.lb.record(result, attachments=[drawing] if drawing is not None else [])
        if plots:
            self.refresh_plots(f"after member {result.member_id}")
        return number

    def refresh_plots(self, when: str = "") -> None:
        try:
            draw_run_plots(self.lb, upload=True)
        except Exception as e:  # a plot must never cost a recorded trial; say what went wrong
            warnings.warn(f"leaderboard: could not refresh the run plots {when}: {type(e).__name__}: {e}",
                          stacklevel=2)

    def draw_member(self, result: TrialResult) -> Path | None:
        """``plots/arch_<member>.png``, or ``None`` (with a warning) when it cannot be drawn."""
        lb = self.lb
        assert lb.run is not None
        try:
            net = load_network(lb.resolve(result.member_path, result.member_id))
            parent = None
            if result.parent_id is not None and result.parent_id in lb.recorded():
                try:
                    parent = load_network(lb.member_dir(lb.row_of(result.parent_id)))
                except MorphnasError:
                    parent = None  # still draw the child, only without the highlighted changes
            ops = "+".join(str(a.get("op", "?")) for a in result.actions) or "seed"
            title = (f"{result.member_id} <- {result.parent_id}: {ops}" if result.parent_id
                     else f"{result.member_id}: seed")
            return plots.architecture(net, lb.run.plots / f"arch_{result.member_id}.png", base=parent,
                                      title=title if len(title) <= 48 else title[:47] + "…")
        except Exception as e:  # the trial is recorded without its drawing rather than not at all
            warnings.warn(f"leaderboard: no architecture drawing for member {result.member_id}: "
                          f"{type(e).__name__}: {e}", stacklevel=3)
            return None


def draw_run_plots(lb: Leaderboard, upload: bool = False) -> dict[str, Path]:
    """Redraw the lineage tree and Pareto plot into ``run/plots`` and (``upload``) attach them to the study.

    Only the driver uploads: a reader redraws the files only, so the study keeps a single writer.
    """
    if lb.run is None:
        raise LeaderboardError("drawing the run plots needs the run directory; open the leaderboard with for_run()")
    rows = lb.rows()
    out = {"lineage": plots.lineage_tree(rows, lb.run.plots / "lineage.png", title=lb.study.study_name)}
    names = lb.study.metric_names or ["val_acc"]
    out["pareto"] = plots.pareto_front(rows, lb.run.plots / "pareto.png", x=cost_axis(names),
                                       objectives=names if len(names) > 1 else ())
    if upload and lb.files is not None:
        for path in out.values():
            lb.upload_study_artifact(path)
    return out


class BackgroundPublisher:
    """Records members through ``publisher`` in one background thread (see the module docstring).

    ``warn`` gets a one-line message when a member could not be recorded (the run state keeps it and
    ``morphnas resume`` records it again).
    """

    def __init__(self, publisher: Publisher, warn: Callable[[str], None], plots_every: float = 10.0):
        self.publisher = publisher
        self.warn = warn
        self.plots_every = plots_every
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._stale = False                  # members recorded since the plots were last drawn
        self._last_plots = time.monotonic()
        self._thread = threading.Thread(target=self._work, name="morphnas-publisher", daemon=True)
        self._thread.start()

    def submit(self, result: TrialResult) -> None:
        """Record a finished member (drawn first)."""
        self._queue.put(("record", result))

    def open(self, job: Any) -> None:
        """Open the trial of a member being launched (:meth:`~.leaderboard.Leaderboard.open_trial`), in
        launch order, on the same thread as every other study write."""
        self._queue.put(("open", job))

    def flush(self) -> None:
        """Wait until every submitted member is recorded, then redraw the run plots (if anything changed)."""
        self._queue.join()
        if self._stale:
            self._stale = False
            self.publisher.refresh_plots("at the end of the session")
            self._last_plots = time.monotonic()

    def close(self) -> None:
        """Flush, then end the thread."""
        self.flush()
        self._queue.put(("stop", None))
        self._thread.join(timeout=10)

    def _work(self) -> None:
        while True:
            kind, item = self._queue.get()
            if kind == "stop":
                self._queue.task_done()
                return
            if kind == "open":
                try:
                    self.publisher.lb.open_trial(item)
                except Exception as e:  # the member is recorded whole when it finishes
                    self.warn(f"warning: could not open the trial of member {item.member_id} in the study "
                              f"({type(e).__name__}: {e})")
                finally:
                    self._queue.task_done()
                continue
            result = item
            try:
                self.publisher.record(result, plots=False)
                self._stale = True
                if self._queue.empty() and time.monotonic() - self._last_plots >= self.plots_every:
                    self._stale = False
                    self.publisher.refresh_plots(f"after member {result.member_id}")
                    self._last_plots = time.monotonic()
            except Exception as e:   # a study problem must not stop the search: the state keeps the result
                self.warn(f"warning: could not record member {result.member_id} in the study "
                          f"({type(e).__name__}: {e}); 'morphnas resume' records it again")
            finally:
                self._queue.task_done()
