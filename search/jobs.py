"""The job a driver sends to a Ray worker: one typed, frozen record that round-trips through JSON.

A job says everything a worker needs to produce one member, and nothing else: which member
(``member_id``, ``member_path``), how it is made (the seed: ``seed``; a child: ``parent_path`` plus
the strategy's ``proposal``), how it is trained (``train``: the :class:`~.train.TrainSpec` fields,
``train_seed``), and the session's environment (``run_dir``, ``data``, verification tolerance,
threads, GPUs). The driver keeps pending jobs in ``run_state.json`` as JSON (so a resumed run
re-runs exactly the job that was interrupted), and Tune carries it in the trial config as JSON
(``{"job": job.to_json()}``) because Tune copies and flattens its configs.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from .records import Proposal

HOLD = "hold"          # the Tune trial config key of a hold (see :func:`.runner.hold`): no job, no member
WAKE_FILE = ".wake"    # in the run directory: the driver's wake counter that ends holds


@dataclass(frozen=True)
class SeedSource:
    """Where the seed comes from: a network spec to build, or an already trained checkpoint."""

    network: str
    checkpoint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"network": self.network, "checkpoint": self.checkpoint}


@dataclass(frozen=True)
class Job:
    kind: Literal["seed", "child"]
    member_id: str
    member_path: str                         # relative to run_dir
    parent_id: str | None = None
    depth: int = 0
    born: int = 0                            # proposal order (member index)
    attempt: int = 1                         # 2 for the one re-run of a job a stopped driver left running
    parent_path: str | None = None           # child: the parent's saved network (absolute)
    proposal: Proposal | None = None         # child: the actions to apply to the parent
    seed: SeedSource | None = None           # seed: what to build or load
    net_seed: int = 0                        # seed: initialisation seed of a built network
    train: dict[str, Any] = field(default_factory=dict)   # TrainSpec fields
    train_seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)   # recorded with the result (rerun reason, node...)
    # The session's environment, filled in when the job is launched (it may differ between sessions).
    run_dir: str = ""
    data: dict[str, Any] = field(default_factory=dict)    # DataConfig fields, root absolute
    data_seed: int = 0
    tolerance: float = 1e-4
    verify_dtype: str = "float64"
    threads: int = 1
    gpus: float = 0.0
    amp: bool = False
    distill: dict[str, Any] = field(default_factory=dict)   # finetune.distill fields (empty: the defaults)
    latency: dict[str, Any] = field(default_factory=dict)   # LatencyConfig fields + max_ms (empty: not measured)

    @property
    def proposal_id(self) -> str:
        return self.proposal.proposal_id if self.proposal is not None else ""

    @property
    def search_params(self) -> dict[str, Any]:
        return dict(self.proposal.search_params) if self.proposal is not None else {}

    def action_dicts(self) -> tuple[dict[str, Any], ...]:
        """The proposal's actions as JSON (they stand in for the records of a child that failed)."""
        return tuple(a.to_json() for a in self.proposal.actions) if self.proposal is not None else ()

    def replace(self, **changes: Any) -> "Job":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in ("proposal", "seed"):
                if v is None:
                    continue
                v = v.to_json()
            elif isinstance(v, dict):
                v = dict(v)
            out[f.name] = v
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Job":
        kw = dict(d)
        if kw.get("proposal") is not None:
            kw["proposal"] = Proposal.from_json(kw["proposal"])
        if kw.get("seed") is not None:
            kw["seed"] = SeedSource(**kw["seed"])
        return cls(**kw)


def as_job(job: "Job | Mapping[str, Any]") -> Job:
    """A :class:`Job` from a job or its JSON (Tune hands the worker the JSON)."""
    return job if isinstance(job, Job) else Job.from_json(job)


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
