"""Building the jobs a driver sends to Ray workers: the seed's, a child's, the session's environment.

A :class:`~morphnas.search.state.records.Job` is a frozen record that round-trips through JSON;
these free functions make one from the run's config (and, for a child, the population and the
strategy's proposal), so the driver, preflight and ``resume --set`` build the same jobs.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from morphnas.search.config import Config
from morphnas.search.state.population import Population, member_id
from morphnas.search.state.records import Job, Proposal, SeedSource, TrialResult, as_job

__all__ = ["Job", "SeedSource", "as_job", "child_job", "cycle_bounds", "data_fields", "environment", "fail_result",
           "plugin_fields", "rerun", "seed_cycle", "seed_job", "train_fields"]


# ------------------------------------------------------------------------------ building jobs
def seed_job(cfg: Config) -> Job:
    """The job of member ``m0``: build (or load) the seed and train it as ``cfg.seed`` says."""
    s = cfg.seed
    return Job(kind="seed", member_id=member_id(0), parent_id=None, depth=0, born=0, attempt=1,
               member_path=f"members/{member_id(0)}", net_seed=cfg.random_seed,
               seed=SeedSource(network=_abs_if_path(s.network),
                               checkpoint=str(Path(s.checkpoint).expanduser().resolve()) if s.checkpoint else None),
               train=train_fields(s, s.lr, s.batch_size or cfg.data.batch_size),
               train_seed=cfg.random_seed)


def child_job(cfg: Config, root: Path, population: Population, prop: Proposal, index: int) -> Job:
    """The job of the child with member index ``index``: the proposal applied to its parent, then
    fine-tuned as ``cfg.finetune`` says (its training seed depends on the run's seed and the index)."""
    f = cfg.finetune
    parent = population.get(prop.parent_id)
    mid = member_id(index)
    carry = False
    if "seed_cycle" in prop.train:
        # A growing lineage continues the seed's own schedule: cycle k after the seed's last one.
        s = cfg.seed
        offset, epochs = seed_cycle(s, int(prop.train["seed_cycle"]))
        train = {**train_fields(s, s.lr, s.batch_size or cfg.data.batch_size), "epochs": epochs,
                 "epoch_offset": offset}
        carry = True
    else:
        train = train_fields(f, cfg.finetune_lr, f.batch_size or cfg.data.batch_size)
    return Job(kind="child", member_id=mid, parent_id=parent.id, depth=parent.depth + 1, born=index, attempt=1,
               member_path=f"members/{mid}", parent_path=str(Path(root) / parent.path), proposal=prop,
               train=train, train_seed=cfg.random_seed * 100_003 + index, carry_optimizer=carry)


def cycle_bounds(section: Any, upto: int) -> list[int]:
    """The epochs at which the SGDR cycles of ``section`` (seed or fine-tune) start, up to ``upto``."""
    first = section.restart_epochs or section.epochs
    bounds, length = [0], first
    while bounds[-1] < upto:
        bounds.append(bounds[-1] + length)
        length *= section.restart_mult
    return bounds


def seed_cycle(seed: Any, k: int) -> tuple[int, int]:
    """(epoch offset, epochs) of the ``k``-th cycle (1-based) after the seed's training: the seed
    ends at a cycle boundary (the config checks it), and cycle lengths follow its SGDR schedule."""
    if k < 1:
        raise ValueError(f"seed_cycle: k must be >= 1, got {k}")
    bounds = cycle_bounds(seed, seed.epochs)
    start = bounds.index(seed.epochs)
    while len(bounds) < start + k + 2:
        bounds = cycle_bounds(seed, bounds[-1] + 1)
    return bounds[start + k - 1], bounds[start + k] - bounds[start + k - 1]


def data_fields(cfg: Config) -> dict[str, Any]:
    """The ``data:`` section as job fields, with its root made absolute (trials run elsewhere)."""
    out = {**dataclasses.asdict(cfg.data), "root": str(Path(cfg.data.root).expanduser().resolve())}
    if cfg.data.path:
        out["path"] = str(Path(cfg.data.path).expanduser().resolve())
    return out


def environment(cfg: Config, root: Path, gpus: float, max_latency_ms: float | None) -> dict[str, Any]:
    """The session's part of every job, refreshed at launch (resources may change between sessions).
    Paths are absolute: Ray runs each trial in its own working directory (and maybe on another node
    of a cluster sharing the file system)."""
    return {"run_dir": str(root), "data": data_fields(cfg), "data_seed": cfg.random_seed,
            "tolerance": cfg.verify.tolerance, "verify_dtype": cfg.verify.dtype,
            "threads": cfg.resources.cpus_per_trial, "gpus": gpus, "amp": cfg.resources.amp,
            "precision": cfg.resources.precision, "channels_last": cfg.resources.channels_last,
            "compile": cfg.finetune.compile,
            "distill": dataclasses.asdict(cfg.finetune.distill),
            "latency": {**dataclasses.asdict(cfg.latency), "max_ms": max_latency_ms},
            "task": dataclasses.asdict(cfg.task), "plugins": plugin_fields(cfg)}


def plugin_fields(cfg: Config) -> dict[str, Any]:
    """The user code a worker imports for this run (empty when the run uses none)."""
    out: dict[str, Any] = {}
    if cfg.trainer:
        out.update(trainer=cfg.trainer, trainer_options=dict(cfg.trainer_options))
    ops = [k for k in (cfg.actions.get("ops") or ()) if isinstance(k, str) and ":" in k]   # a mapping or a list
    if ops:
        out["ops"] = ops
    return out


def fail_result(job: Job, reason: str) -> TrialResult:
    """The FAIL record of a job that produced no result of its own (the proposal's actions stand in)."""
    extra = {"proposal_id": job.proposal_id, "attempt": job.attempt, **job.extra}
    return TrialResult(member_id=job.member_id, parent_id=job.parent_id, depth=job.depth,
                       state="FAIL", search_params=job.search_params, actions=job.action_dicts(),
                       member_path=job.member_path, fail_reason=reason, extra=extra)


def rerun(job: Job) -> Job:
    """The second attempt of a job a stopped driver left running."""
    return job.replace(attempt=job.attempt + 1,
                       extra={**job.extra, "rerun": True,
                              "rerun_reason": "its first attempt was running when the driver stopped"})


def train_fields(section: Any, lr: float, batch_size: int) -> dict[str, Any]:
    """The TrainSpec fields of a seed or fine-tune section. The warm-restart knobs go only with
    ``sgdr`` (the only schedule that reads them), so other runs keep their exact job."""
    out = {"epochs": section.epochs, "lr": lr, "momentum": section.momentum, "weight_decay": section.weight_decay,
           "schedule": section.schedule, "batch_size": batch_size}
    if section.schedule == "sgdr":
        out.update(restart_epochs=section.restart_epochs, restart_mult=section.restart_mult)
    if section.optimizer != "sgd":   # likewise: SGD runs keep their exact job
        out["optimizer"] = section.optimizer
    return out


def _abs_if_path(spec: str) -> str:
    p = Path(spec).expanduser()
    return str(p.resolve()) if p.exists() else spec
