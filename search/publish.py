"""Drawings of a run, made around recording rather than inside it.

:class:`Publisher` is what the driver records through: for a finished member it draws the
architecture (what the child gained over its parent highlighted), records the trial with that
drawing attached (:meth:`~.leaderboard.Leaderboard.record`), then redraws the lineage tree and the
Pareto plot and attaches them to the study. A drawing that fails is a warning: the trial is
recorded without it rather than not at all. :func:`draw_run_plots` is the same redraw for readers
(``morphnas leaderboard --plots``), which must not write the study.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from morphnas.morphism.errors import MorphnasError

from . import plots
from .errors import LeaderboardError
from .leaderboard import Leaderboard
from .records import TrialResult


class Publisher:
    def __init__(self, lb: Leaderboard):
        if lb.run is None:
            raise LeaderboardError("publishing needs the run directory; open the leaderboard with for_run()")
        self.lb = lb

    def record(self, result: TrialResult) -> int:
        """Draw the member, record it with the drawing, refresh the run plots; returns the trial number."""
        if result.member_id in self.lb.recorded():
            return self.lb.recorded()[result.member_id]
        drawing = self.draw_member(result) if result.state == "COMPLETE" else None
        number = self.lb.record(result, attachments=[drawing] if drawing is not None else [])
        try:
            draw_run_plots(self.lb, upload=True)
        except Exception as e:  # a plot must never cost a recorded trial; say what went wrong
            warnings.warn(f"leaderboard: could not refresh the run plots after member {result.member_id}: "
                          f"{type(e).__name__}: {e}", stacklevel=2)
        return number

    def draw_member(self, result: TrialResult) -> Path | None:
        """``plots/arch_<member>.png``, or ``None`` (with a warning) when it cannot be drawn."""
        from morphnas.morphism.serialize import load_network
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
    names = lb.study.metric_names or []
    cost = next((n for n in names[1:] if n in ("params", "flops")), "params")
    out["pareto"] = plots.pareto_front(rows, lb.run.plots / "pareto.png", x=cost)
    if upload and lb.files is not None:
        for path in out.values():
            lb.upload_study_artifact(path)
    return out
