"""Leaderboard rows: one line per trial, read back from Optuna, and their ranking.

Kept apart from :mod:`.leaderboard` (which writes trials) because the CLI table, the plots and
export all read rows and none of them needs to know how trials are written.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from optuna.trial import FrozenTrial

from morphnas.search.state.dominance import non_dominated

MEMBER_ATTR = "member_id"
# Raw JSON kept off the trial's visible attributes (the dashboard shows user attrs first): the
# applied morph records and the driver's notes (attempt, node, pid...). Read back by :func:`row_of`.
ACTIONS_ATTR = "morphnas:actions"
EXTRA_ATTR = "morphnas:extra"


def ops_summary(actions: Iterable[Mapping[str, Any]]) -> str:
    """``"split@layer1.0.conv1 + deepen@layer2.0.conv2"`` from action/morph-record dicts."""
    parts = []
    for a in actions:
        site = a.get("site")
        parts.append(f"{a.get('op', '?')}@{site}" if site else str(a.get("op", "?")))
    return " + ".join(parts)


@dataclass(frozen=True)
class Row:
    """One leaderboard line, read back from a trial (what the CLI, plots and export use)."""

    trial: int
    member_id: str
    parent_id: str | None
    depth: int
    state: str
    values: tuple[float, ...] | None
    ops: str
    val_acc: float | None           # the search's score: accuracy, or the task's metric signed so higher is better
    params: int | None
    params_mb: float | None
    flops: int | None
    preservation_error: float | None
    member_path: str
    fail_reason: str = ""
    rank: int | None = None
    pareto: bool = False
    ops_list: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    latency_ms: float | None = None
    train_flops: int | None = None      # training multiply-adds the trial spent (None: a run from before)

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "trial": self.trial, "member": self.member_id, "parent": self.parent_id,
                "depth": self.depth, "state": self.state,
                "values": list(self.values) if self.values is not None else None, "ops": self.ops,
                "val_acc": self.val_acc, "params": self.params, "params_mb": self.params_mb,
                "flops": self.flops, "latency_ms": self.latency_ms, "preservation_error": self.preservation_error,
                "member_path": self.member_path, "fail_reason": self.fail_reason, "pareto": self.pareto,
                "train_flops": self.train_flops, "extra": self.extra}


def row_of(t: FrozenTrial) -> Row:
    u, sys_attrs = t.user_attrs, t.system_attrs
    # studies written before the raw JSON moved to system attrs kept it in the user attrs
    actions = sys_attrs.get(ACTIONS_ATTR, u.get("actions")) or []
    done = t.state.name == "COMPLETE"

    def size(key: str) -> Any:
        """A failed member's size is unknown ("-", JSON null), never 0."""
        v = u.get(key)
        return None if (not done and not v) else v
    return Row(trial=t.number, member_id=str(u.get(MEMBER_ATTR, f"trial{t.number}")), parent_id=u.get("parent_id"),
               depth=int(u.get("depth", 0)), state=t.state.name,
               values=tuple(t.values) if t.values is not None else None, ops=u.get("ops", ""),
               val_acc=u.get("val_acc", u.get("score")), params=size("params"), params_mb=size("params_mb"),
               flops=size("flops"), preservation_error=u.get("preservation_error"),
               member_path=u.get("member_path", ""), fail_reason=u.get("fail_reason", ""),
               ops_list=tuple(str(a.get("op", "?")) for a in actions),
               extra=sys_attrs.get(EXTRA_ATTR, u.get("extra")) or {}, latency_ms=u.get("latency_ms"),
               train_flops=u.get("train_flops"))


def _signs(directions: Sequence[str]) -> list[float]:
    return [1.0 if d.lower().endswith("maximize") else -1.0 for d in directions]


def _finished(r: Row) -> bool:
    return r.state == "COMPLETE" and r.values is not None


def rank_rows(rows: Sequence[Row], directions: Sequence[str]) -> list[Row]:
    """Finished rows ranked by the first objective, then the rest. Ties go to the fewer parameters,
    then the lower trial number: the rule of ``Population.best``, so the leaderboard's first row, the
    Python API's ``best`` and the member the final stage trains are one member."""
    signs = _signs(directions)
    done = sorted((r for r in rows if _finished(r)),
                  key=lambda r: (-signs[0] * r.values[0], r.params if r.params is not None else math.inf, r.trial))
    rest = sorted((r for r in rows if not _finished(r)), key=lambda r: r.trial)
    return [dataclasses.replace(r, rank=i + 1) for i, r in enumerate(done)] + rest


# ----------------------------------------------------------------------------- the Pareto front
# One definition of "the front" for the leaderboard's ``pareto`` flag, plots/pareto.png and the
# dashboard (:func:`mark_front`). A multi-objective study: the finished trials no other finished
# trial dominates on all the study's objectives (what Optuna's ``best_trials`` and optuna-dashboard's
# Pareto-front plot show). A single-objective study has a front too, validation accuracy against
# params. plots/pareto.png draws the members against the study's first cost.
COSTS = ("params", "flops", "latency_ms")


def cost_axis(metric_names: Sequence[str] | None) -> str:
    """The cost the front is drawn against: the study's first cost objective, else params."""
    return next((n for n in list(metric_names or [])[1:] if n in COSTS), "params")


def pareto_points(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated when ``x`` is minimised and ``y`` maximised, by ``x``
    (of identical points only the first is kept: one marker per place on the step line)."""
    keep = set(non_dominated(points, (-1.0, 1.0)))
    front: list[int] = []
    for i in sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1])):
        if i in keep and not (front and tuple(points[front[-1]]) == tuple(points[i])):
            front.append(i)
    return front


def front_rows(rows: Sequence[Any], x: str = "params", y: str = "val_acc") -> tuple[list[Any], list[int]]:
    """The finished rows that have both axes, and the indices (into them) of the front's members."""
    done = [r for r in rows if r.state == "COMPLETE" and getattr(r, x) is not None and getattr(r, y) is not None]
    return done, pareto_points([(float(getattr(r, x)), float(getattr(r, y))) for r in done])


def mark_front(rows: Sequence[Row], directions: Sequence[str], x: str = "params") -> list[Row]:
    """``rows`` (same order) with ``pareto`` set for the front's members: in a multi-objective study
    the finished rows no other finished row dominates on all objectives, else the (val_acc, ``x``) front."""
    if len(directions) > 1:
        signs = _signs(directions)
        done = [r for r in rows if _finished(r)]
        keep = {id(done[i]) for i in non_dominated([r.values for r in done], signs)}
        return [dataclasses.replace(r, pareto=id(r) in keep) for r in rows]
    done, front = front_rows(rows, x)
    on = {done[i].member_id for i in front}
    return [dataclasses.replace(r, pareto=r.member_id in on) for r in rows]
