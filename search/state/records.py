"""Immutable records that cross the driver / worker / leaderboard boundaries.

``Proposal``: what the strategy asks for (a parent and the actions to apply to it).
``TrialResult``: what a finished (or failed) trial produced; the leaderboard stores one Optuna
trial per result, keyed by ``member_id`` so recording is idempotent across resumes.
``Job``: what the driver sends a worker to produce one member (built by
:mod:`morphnas.search.trial.jobs`). A job says everything a worker needs and nothing else: which
member (``member_id``, ``member_path``), how it is made (the seed: ``seed``; a child:
``parent_path`` plus the strategy's ``proposal``), how it is trained (``train``: the
:class:`~morphnas.search.trial.train.TrainSpec` fields, ``train_seed``), and the session's
environment (``run_dir``, ``data``, verification tolerance, threads, GPUs). The run state keeps
pending jobs (so a resumed run re-runs exactly the job that was interrupted), and Tune carries it in
the trial config as JSON (``{"job": job.to_json()}``) because Tune copies and flattens its configs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from morphnas.spaces.actions import Action


@dataclass(frozen=True)
class Proposal:
    parent_id: str
    actions: tuple[Action, ...]
    # Sampler-facing parameters with fixed domains (op name, stage index, relative position...),
    # what the Optuna dashboard's parameter importance is computed on.
    search_params: dict[str, Any] = field(default_factory=dict)
    proposal_id: str = ""
    # A growing lineage (the ``grow`` strategy): alternative action lists the worker scores cheaply
    # and picks one of (``actions`` stays empty; the chosen one becomes the child's records), how it
    # scores them, and how the child trains instead of the fine-tune section (see ``child_job``).
    candidates: tuple[tuple[Action, ...], ...] = ()
    scoring: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"parent_id": self.parent_id, "actions": [a.to_json() for a in self.actions],
                               "search_params": dict(self.search_params), "proposal_id": self.proposal_id}
        if self.candidates:     # written only when used, so the proposals of other strategies keep their form
            out["candidates"] = [[a.to_json() for a in c] for c in self.candidates]
        if self.scoring:
            out["scoring"] = dict(self.scoring)
        if self.train:
            out["train"] = dict(self.train)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Proposal":
        return cls(d["parent_id"], tuple(Action.from_json(a) for a in d["actions"]),
                   dict(d.get("search_params", {})), d.get("proposal_id", ""),
                   tuple(tuple(Action.from_json(a) for a in c) for c in d.get("candidates", ())),
                   dict(d.get("scoring", {})), dict(d.get("train", {})))


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
    latency_ms: float | None = None              # median forward pass on the worker (search/trial/latency.py)
    train_flops: int = 0                         # training multiply-adds the trial spent (incl. scoring)
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
    precision: str = "auto"                  # resources.precision
    channels_last: Any = "auto"              # resources.channels_last
    compile: Any = "auto"                    # finetune.compile
    distill: dict[str, Any] = field(default_factory=dict)   # finetune.distill fields (empty: the defaults)
    carry_optimizer: bool = False            # child: start from the parent's optimizer state, mapped
    latency: dict[str, Any] = field(default_factory=dict)   # LatencyConfig fields + max_ms (empty: not measured)
    task: dict[str, Any] = field(default_factory=dict)      # TaskConfig fields (empty: classification)
    # the user's code the worker imports: {"trainer": path, "trainer_options": {...}, "ops": [paths]}
    plugins: dict[str, Any] = field(default_factory=dict)

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
