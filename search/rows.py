"""Leaderboard rows: one line per trial, read back from Optuna, and their ranking.

Kept apart from :mod:`.leaderboard` (which writes trials) because the CLI table, the plots and
export all read rows and none of them needs to know how trials are written.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from optuna.trial import FrozenTrial

MEMBER_ATTR = "member_id"


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
    val_acc: float | None
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

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "trial": self.trial, "member": self.member_id, "parent": self.parent_id,
                "depth": self.depth, "state": self.state,
                "values": list(self.values) if self.values is not None else None, "ops": self.ops,
                "val_acc": self.val_acc, "params": self.params, "params_mb": self.params_mb,
                "flops": self.flops, "preservation_error": self.preservation_error,
                "member_path": self.member_path, "fail_reason": self.fail_reason, "pareto": self.pareto,
                "extra": self.extra}


def _row(t: FrozenTrial) -> Row:
    u = t.user_attrs
    actions = u.get("actions") or []
    return Row(trial=t.number, member_id=str(u.get(MEMBER_ATTR, f"trial{t.number}")), parent_id=u.get("parent_id"),
               depth=int(u.get("depth", 0)), state=t.state.name,
               values=tuple(t.values) if t.values is not None else None, ops=u.get("ops", ""),
               val_acc=u.get("val_acc"), params=u.get("params"), params_mb=u.get("params_mb"),
               flops=u.get("flops"), preservation_error=u.get("preservation_error"),
               member_path=u.get("member_path", ""), fail_reason=u.get("fail_reason", ""),
               ops_list=tuple(str(a.get("op", "?")) for a in actions), extra=u.get("extra") or {})


def _dominates(a: Sequence[float], b: Sequence[float], signs: Sequence[float]) -> bool:
    better_or_equal = all(s * x >= s * y for x, y, s in zip(a, b, signs))
    return better_or_equal and any(s * x > s * y for x, y, s in zip(a, b, signs))


def rank_rows(rows: Sequence[Row], directions: Sequence[str]) -> list[Row]:
    """Finished rows ranked by the first objective (ties: lower trial number first), then the rest.

    ``pareto`` marks rows no other finished row dominates (all objectives, multi-objective only).
    """
    signs = [1.0 if d.lower().endswith("maximize") else -1.0 for d in directions]
    done = sorted((r for r in rows if r.state == "COMPLETE" and r.values is not None),
                  key=lambda r: (-signs[0] * r.values[0], r.trial))
    rest = sorted((r for r in rows if not (r.state == "COMPLETE" and r.values is not None)), key=lambda r: r.trial)
    out = []
    for i, r in enumerate(done):
        pareto = len(signs) > 1 and not any(_dominates(o.values, r.values, signs) for o in done if o is not r)
        out.append(dataclasses.replace(r, rank=i + 1, pareto=pareto))
    return out + rest
