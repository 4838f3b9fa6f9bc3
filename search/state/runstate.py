"""The driver's write-ahead run state (``runs/<name>/run_state.json``) and the run lock.

The driver writes the whole state atomically (temporary file, fsync, rename) *before* it starts a
trial and *before* it records a finished trial in the leaderboard. So after a crash at any point:

* a trial in ``pending`` was started but its result never reached the state: resume re-runs it
  once (same member id, same proposal, ``attempt`` 2) or, if it was already a re-run, records it as
  FAIL — nothing is lost, nothing finished is repeated;
* a result in ``results`` may be missing from the study (crash between the two writes): resume
  records it again, which the leaderboard ignores if it is already there (idempotent by member id);
* the strategy's state (with its rng) and the population are those of the last write, which is
  consistent with ``pending``/``results``, so a proposal is never issued twice or skipped.

:class:`RunLock` holds an exclusive ``flock`` on ``runs/<name>/.lock`` for the driver's lifetime;
the OS releases it when the process dies (even by ``kill -9``), so a second driver is refused
while the first lives and a crashed run can always be resumed.
"""
from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from morphnas.morphism.errors import MorphnasError, storage_error
from morphnas.search.state.fsutil import atomic_write_text, confined
from morphnas.search.state.population import Population
from morphnas.search.state.records import Job, TrialResult

STATE_FILE = "run_state.json"
VERSION = 1


class RunStateError(MorphnasError):
    """The run state is missing, corrupt, or the run is locked by another driver."""


@dataclass
class RunState:
    """The run's state as typed records; JSON only in :meth:`save` / :meth:`load` (same format as before)."""

    status: str = "search"                  # search | final | finished
    next_index: int = 0                     # next member index (m0 = seed)
    started: int = 0                        # children started (what the trial budget counts)
    elapsed: float = 0.0                    # search wall time of earlier sessions, seconds
    sessions: int = 0
    population: Population = field(default_factory=Population)
    strategy: dict[str, Any] | None = None
    pending: dict[str, Job] = field(default_factory=dict)      # member id -> job (started)
    queue: list[Job] = field(default_factory=list)              # jobs to (re)start first
    results: list[TrialResult] = field(default_factory=list)    # finish order
    final: dict[str, Any] | None = None

    def result_of(self, mid: str) -> TrialResult | None:
        """The recorded result of member ``mid`` (None while it has none)."""
        return next((r for r in self.results if r.member_id == mid), None)

    def to_json(self) -> dict[str, Any]:
        return {"format": "morphnas-run-state", "version": VERSION, "status": self.status,
                "next_index": self.next_index, "started": self.started, "elapsed": self.elapsed,
                "sessions": self.sessions, "population": self.population.to_json(), "strategy": self.strategy,
                "pending": {k: j.to_json() for k, j in self.pending.items()},
                "queue": [j.to_json() for j in self.queue], "results": [r.to_json() for r in self.results],
                "final": self.final}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RunState":
        if d.get("format") != "morphnas-run-state" or d.get("version") != VERSION:
            raise RunStateError(f"not a morphnas run state (format {d.get('format')!r}, version {d.get('version')!r})")
        unknown = set(d) - {f.name for f in fields(cls)} - {"format", "version"}
        if unknown:
            raise TypeError(f"unknown field(s) {sorted(unknown)}")
        return cls(status=d.get("status", "search"), next_index=int(d.get("next_index", 0)),
                   started=int(d.get("started", 0)), elapsed=float(d.get("elapsed", 0.0)),
                   sessions=int(d.get("sessions", 0)), population=Population.from_json(d.get("population") or []),
                   strategy=d.get("strategy"),
                   pending={k: Job.from_json(j) for k, j in (d.get("pending") or {}).items()},
                   queue=[Job.from_json(j) for j in d.get("queue") or []],
                   results=[TrialResult.from_json(r) for r in d.get("results") or []], final=d.get("final"))

    def save(self, run_dir: Path) -> None:
        path = Path(run_dir) / STATE_FILE
        try:
            atomic_write_text(path, json.dumps(self.to_json()))
        except OSError as e:     # a full disk or a read-only mount: one line; the file on disk is the last good one
            raise storage_error(e, path, "cannot write the run state") from None

    @classmethod
    def load(cls, run_dir: Path) -> "RunState":
        path = Path(run_dir) / STATE_FILE
        if not path.is_file():
            raise RunStateError(f"{path} does not exist: {run_dir} is not a run started by 'morphnas search' "
                                f"(or it was stopped before its first trial; start it again with morphnas search)")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            check_paths(raw, Path(run_dir))
            return cls.from_json(raw)
        except (ValueError, TypeError, AttributeError, KeyError) as e:   # JSON and Unicode errors are ValueErrors
            raise RunStateError(f"{path} is corrupt ({str(e).splitlines()[0]}); the run cannot be resumed "
                                f"(remove it with: morphnas remove {run_dir} --force)") from None

    @staticmethod
    def exists(run_dir: Path) -> bool:
        return (Path(run_dir) / STATE_FILE).is_file()


def check_paths(raw: dict[str, Any], root: Path) -> None:
    """Every path a state (as read from disk) would make the driver read or write must lie inside
    the run: an edited ``run_state.json`` is refused as corrupt
    (:class:`~morphnas.search.state.fsutil.CorruptRunError`) rather than followed out of the run."""
    root = root.resolve()
    for i, m in enumerate(raw.get("population") or []):
        confined(m.get("path") if isinstance(m, dict) else m, root, f"run_state.json population[{i}].path")
    jobs = [(f"pending[{k!r}]", j) for k, j in (raw.get("pending") or {}).items()] + \
           [(f"queue[{i}]", j) for i, j in enumerate(raw.get("queue") or [])]
    for where, job in jobs:
        if not isinstance(job, dict):
            confined(job, root, f"run_state.json {where}")
            continue
        confined(job.get("member_path"), root, f"run_state.json {where}.member_path")
        if job.get("parent_path") is not None:
            confined(job["parent_path"], root, f"run_state.json {where}.parent_path")
    for i, r in enumerate(raw.get("results") or []):
        if isinstance(r, dict) and r.get("member_path"):
            confined(r["member_path"], root, f"run_state.json results[{i}].member_path")


class RunLock:
    """An exclusive, non-blocking lock on a run directory (context manager)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self._f = None

    def __enter__(self) -> "RunLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = open(self.path, "a+")
        except OSError as e:   # a read-only mount, a folder without write permission, a full disk
            raise RunStateError(f"run {self.path.parent} cannot be written ({e.strerror or e}); a search keeps its "
                                f"state there, so run it where it can write (copy the run to a writable folder "
                                f"and resume that copy)") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "another process"
            f.close()
            raise RunStateError(f"run {self.path.parent} is in use by another driver (pid {owner}); "
                                f"wait for it to finish or stop it first") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._f = f
        return self

    def __exit__(self, *exc) -> None:
        if self._f is not None:
            fcntl.flock(self._f.fileno(), fcntl.LOCK_UN)
            self._f.close()
            self._f = None
