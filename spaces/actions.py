"""Actions: one morph to apply (op, site, params, seed) — the unit the action space samples."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Action:
    """One morph: op name, concrete site (None = drawn from ``seed``), op parameters, seed."""

    op: str
    site: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Action":
        return cls(**d)
