"""Immutable records that cross the driver / worker / leaderboard boundaries.

``Proposal``: what the strategy asks for (a parent and the actions to apply to it).
``TrialResult``: what a finished (or failed) trial produced; the leaderboard stores one Optuna
trial per result, keyed by ``member_id`` so recording is idempotent across resumes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from morphnas.spaces.actions import Action


@dataclass(frozen=True)
class Proposal:
    parent_id: str
    actions: tuple[Action, ...]
    # Sampler-facing parameters with fixed domains (op name, stage index, relative position...),
    # what the Optuna dashboard's parameter importance is computed on.
    search_params: dict[str, Any] = field(default_factory=dict)
    proposal_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"parent_id": self.parent_id, "actions": [a.to_json() for a in self.actions],
                "search_params": dict(self.search_params), "proposal_id": self.proposal_id}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Proposal":
        return cls(d["parent_id"], tuple(Action.from_json(a) for a in d["actions"]),
                   dict(d.get("search_params", {})), d.get("proposal_id", ""))


@dataclass(frozen=True)
class TrialResult:
    """One network's trial. ``state`` is ``"COMPLETE"`` or ``"FAIL"`` (then ``fail_reason`` says why)."""

    member_id: str
    parent_id: str | None
    depth: int                                   # lineage depth: seed = 0
    state: str
    values: tuple[float, ...] = ()               # objective(s), e.g. (val_acc,) or (val_acc, params)
    val_acc_history: tuple[float, ...] = ()      # per epoch
    actions: tuple[dict[str, Any], ...] = ()     # MorphRecord.to_json() of each applied op
    search_params: dict[str, Any] = field(default_factory=dict)
    params: int = 0
    params_mb: float = 0.0
    flops: int = 0
    latency_ms: float | None = None              # median forward pass on the worker (search/latency.py)
    preservation_error: float | None = None
    epochs: int = 0
    wall_time: float = 0.0
    member_path: str = ""
    fail_reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TrialResult":
        d = dict(d)
        for k in ("values", "val_acc_history", "actions"):
            d[k] = tuple(d.get(k, ()))
        return cls(**d)
