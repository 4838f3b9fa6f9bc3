"""The leaderboard: one Optuna trial per network (member) of a run, written by the driver only.

Trials are created whole from ``optuna.trial.create_trial(...)`` (what ``study.add_trial`` does)
rather than through ``ask``/``tell``: Optuna refuses categorical domains that change between trials in
``suggest_*`` and refuses intermediate values in multi-objective studies, while a created trial
accepts any distribution and any number of objectives (docs/design.md, "Numerics"). A created trial is one
storage transaction, so a crash never leaves half a trial behind.

What each trial holds (see :meth:`Leaderboard.record`):

* params: the sampler-facing action parameters (``TrialResult.search_params``) with their
  distributions — fixed domains declared through ``search_space`` so the dashboard's parameter
  importance can compare trials; a parameter without a declared domain gets a one-point domain
  (it is recorded, but importance ignores it); a value outside its domain goes to the user attr
  ``params_outside_domain`` (with a warning) rather than costing the member its trial;
* user attrs: member id, parent id, lineage depth, ops summary, action records, params,
  params_mb, FLOPs, preservation error, epochs, wall time, member path, val acc (last epoch) and
  its per-epoch curve, fail reason, ``extra``;
* intermediate values: val acc per epoch (single-objective studies only);
* values: the objective(s); non-finite objectives make the trial FAIL with that reason.

Recording is idempotent by member id: recording a member twice returns the first trial's number
(resume relies on this). Drawing is not done here: :mod:`.publish` draws a member and hands the
drawing to :meth:`Leaderboard.record` as an attachment, then refreshes the run plots. Storages are
opened by :mod:`.storage`, files attached by :mod:`.artifacts`; only Optuna's public API is used.
"""
from __future__ import annotations

import datetime
import json
import math
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from .artifacts import Artifacts
from .domains import contains, point_distribution, to_distribution
from .errors import LeaderboardError
from .records import TrialResult
from .rows import MEMBER_ATTR, Row, _row, ops_summary, rank_rows
from .rundir import RunDir, storage_url, study_name
from .storage import load_study, open_storage

__all__ = ["Leaderboard", "LeaderboardError", "Row", "load_study", "open_storage", "ops_summary",
           "rank_rows", "to_distribution"]


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (Optuna user attrs must be JSON-serialisable)."""
    return json.loads(json.dumps(value, default=str))


class Leaderboard:
    """The run's Optuna study. Created (or reopened) by the driver; read by the CLI commands.

    ``directions`` are ``"maximize"``/``"minimize"`` per objective and ``objective_names`` their
    names (shown by the dashboard). ``search_space`` maps search-param names to fixed domains
    (see :func:`to_distribution`). ``artifact_dir`` enables artifacts (see :mod:`.artifacts`);
    ``run`` is the run directory (relative member paths are relative to it).
    """

    def __init__(self, storage_url: str, study_name: str, directions: Sequence[str] = ("maximize",),
                 objective_names: Sequence[str] | None = None, *, search_space: Mapping[str, Any] | None = None,
                 artifact_dir: str | Path | None = None, run: RunDir | None = None, create: bool = True):
        self.storage = open_storage(storage_url, create=create)
        self.storage_url = storage_url
        self.run = run
        directions = [str(d).lower() for d in directions]  # Optuna accepts either case
        for d in directions:
            if d not in ("maximize", "minimize"):
                raise LeaderboardError(f"objective direction must be 'maximize' or 'minimize', got {d!r}")
        if not create:  # reading an existing run: its study decides directions and names
            self.study = load_study(self.storage, study_name, storage_url)
            objective_names = None
        else:
            self.study = optuna.create_study(storage=self.storage, study_name=study_name,
                                             directions=directions, load_if_exists=True)
            have = [d.name.lower() for d in self.study.directions]
            if have != directions:
                raise LeaderboardError(
                    f"study {study_name!r} in {storage_url} has directions {have}, the run asks for {directions}; "
                    f"use a new run name or the same objectives")
        if objective_names is not None:
            if len(objective_names) != len(self.study.directions):
                raise LeaderboardError(f"{len(objective_names)} objective names {list(objective_names)} for "
                                       f"{len(self.study.directions)} objective(s); give one name per objective")
            if self.study.metric_names != list(objective_names):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    self.study.set_metric_names(list(objective_names))
        self.search_space = {k: to_distribution(k, v) for k, v in (search_space or {}).items()}
        self.study_id = self.storage.get_study_id_from_name(self.study.study_name)
        self.files = Artifacts(self.storage, self.study_id, artifact_dir) if artifact_dir is not None else None
        self._numbers: dict[str, int] = {}
        self._ids: dict[int, int] = {}       # trial number -> storage trial id, filled as needed
        self._refresh()

    @classmethod
    def for_run(cls, run: RunDir, directions: Sequence[str] = ("maximize",),
                objective_names: Sequence[str] | None = None, *, search_space: Mapping[str, Any] | None = None
                ) -> "Leaderboard":
        """The driver's leaderboard of ``run``: storage URL and study name from its config.yaml,
        artifacts in ``run/artifacts`` (drawings: :class:`~.publish.Publisher`)."""
        run.make()
        return cls(storage_url(run), study_name(run), directions, objective_names, search_space=search_space,
                   artifact_dir=run.artifacts, run=run)

    @classmethod
    def open(cls, run: RunDir) -> "Leaderboard":
        """Read an existing run's leaderboard (no study, file or folder is created)."""
        return cls(storage_url(run), study_name(run), artifact_dir=run.artifacts if run.artifacts.is_dir() else None,
                   run=run, create=False)

    # ------------------------------------------------------------------------- reading
    @property
    def directions(self) -> list[str]:
        return [d.name.lower() for d in self.study.directions]

    def _refresh(self) -> None:
        for t in self.study.get_trials(deepcopy=False):
            mid = t.user_attrs.get(MEMBER_ATTR)
            if mid is not None and mid not in self._numbers:
                self._numbers[str(mid)] = t.number

    def trial_id(self, member_id: str) -> int:
        """The storage's id of the member's trial (what artifact metadata is keyed by)."""
        if member_id not in self._numbers:
            raise LeaderboardError(f"member {member_id!r} has no trial yet; record it first")
        number = self._numbers[member_id]
        if number not in self._ids:
            self._ids[number] = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        return self._ids[number]

    def row_of(self, member_id: str) -> Row:
        """The member's row, read from its trial alone (no scan of the study)."""
        return _row(self.storage.get_trial(self.trial_id(member_id)))

    def recorded(self) -> dict[str, int]:
        """Member id -> trial number of every recorded member."""
        return dict(self._numbers)

    def trial(self, number: int) -> FrozenTrial:
        trials = self.study.get_trials(deepcopy=False)
        if not 0 <= number < len(trials):
            raise LeaderboardError(f"trial {number} does not exist; the study has trials 0..{len(trials) - 1}")
        return trials[number]

    def rows(self) -> list[Row]:
        """Every trial as a :class:`Row`, ranked (see :func:`rank_rows`)."""
        return rank_rows([_row(t) for t in self.study.get_trials(deepcopy=False)], self.directions)

    def best_row(self) -> Row:
        ranked = [r for r in self.rows() if r.rank is not None]
        if not ranked:
            raise LeaderboardError(f"study {self.study.study_name!r} has no finished trial yet")
        return ranked[0]

    # ------------------------------------------------------------------------- writing
    def record(self, result: TrialResult, attachments: Sequence[str | Path] = ()) -> int:
        """Add ``result`` as one finished trial and return its number; a recorded member is not added again.

        ``attachments`` (files) become the trial's artifacts, attached in the same write that
        creates the trial, because storages refuse to change a finished trial.
        """
        if result.member_id in self._numbers:
            return self._numbers[result.member_id]
        if result.state not in ("COMPLETE", "FAIL"):
            raise LeaderboardError(f"member {result.member_id}: state must be 'COMPLETE' or 'FAIL', "
                                   f"got {result.state!r}")
        state, values, reason = TrialState.FAIL, None, result.fail_reason
        if result.state == "COMPLETE":
            if len(result.values) != len(self.study.directions):
                raise LeaderboardError(
                    f"member {result.member_id}: {len(result.values)} objective value(s) {list(result.values)} "
                    f"for a study with {len(self.study.directions)} objective(s) {self.directions}")
            if all(math.isfinite(v) for v in result.values):
                state, values = TrialState.COMPLETE, [float(v) for v in result.values]
            else:
                reason = f"objective value(s) not finite: {list(result.values)}"
        params, dists, outside = self._params(result)
        intermediate = None
        if len(self.study.directions) == 1 and result.val_acc_history:
            intermediate = {i + 1: float(v) for i, v in enumerate(result.val_acc_history)}
        if attachments and self.files is None:
            raise LeaderboardError("this leaderboard has no artifact store; open it with artifact_dir= or for_run()")
        system_attrs = dict(self.files.new_trial_attr(f) for f in attachments) if self.files is not None else {}
        frozen = optuna.trial.create_trial(
            state=state, values=values, params=params, distributions=dists,
            user_attrs=self._user_attrs(result, reason, outside), system_attrs=system_attrs,
            intermediate_values=intermediate)
        done = frozen.datetime_complete or datetime.datetime.now()
        frozen.datetime_start = done - datetime.timedelta(seconds=max(0.0, float(result.wall_time)))
        # What study.add_trial does (create_trial validated it, values were counted above), but
        # keeping the new trial's id: no re-read of every trial per record.
        trial_id = self.storage.create_new_trial(self.study_id, template_trial=frozen)
        number = self.storage.get_trial_number_from_id(trial_id)
        self._numbers[result.member_id], self._ids[number] = number, trial_id
        return number

    def resolve(self, member_path: str, member_id: str) -> Path:
        """A member's directory from its recorded ``member_path`` (relative: to the run directory)."""
        if not member_path:
            if self.run is None:
                raise LeaderboardError(f"member {member_id} has no member_path")
            return self.run.member(member_id)
        p = Path(member_path)
        return self.run.root / p if (not p.is_absolute() and self.run is not None) else p

    def _params(self, result: TrialResult) -> tuple[dict[str, Any], dict[str, BaseDistribution], dict[str, Any]]:
        """Params with their distributions, and the values that fit no domain (kept as a user attr).

        A value outside its declared domain is a bug in the action space, but refusing the record
        would lose the member from the study; it is recorded without that param, with a warning.
        """
        params, dists, outside = {}, {}, {}
        for name, value in sorted(result.search_params.items()):
            dist = self.search_space.get(name) or point_distribution(value)
            if contains(dist, value):
                params[name], dists[name] = value, dist
            else:
                outside[name] = value
                warnings.warn(f"leaderboard: member {result.member_id}: search param {name}={value!r} is outside "
                              f"its domain {dist}; recorded as user attr 'params_outside_domain' (widen the "
                              f"domain in the action space)", stacklevel=3)
        return params, dists, outside

    def _user_attrs(self, r: TrialResult, reason: str, outside: dict[str, Any]) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            MEMBER_ATTR: r.member_id, "parent_id": r.parent_id, "depth": r.depth,
            "ops": ops_summary(r.actions), "actions": list(r.actions), "params": r.params,
            "params_mb": r.params_mb, "flops": r.flops, "preservation_error": r.preservation_error,
            "epochs": r.epochs, "wall_time": r.wall_time, "member_path": r.member_path,
            "val_acc": r.val_acc_history[-1] if r.val_acc_history else None,
            "val_acc_history": list(r.val_acc_history),
        }
        if reason:
            attrs["fail_reason"] = reason
        if r.extra:
            attrs["extra"] = r.extra
        if outside:
            attrs["params_outside_domain"] = outside
        return _jsonable(attrs)

    # ------------------------------------------------------------------------- artifacts
    def member_dir(self, row: Row) -> Path:
        """Where the member's network is saved (a relative ``member_path`` is relative to the run)."""
        return self.resolve(row.member_path, row.member_id)

    def upload_artifact(self, member_id: str, path: str | Path) -> str:
        """Attach a file to the member's (finished) trial; a file of the same name is replaced."""
        if member_id not in self._numbers:
            raise LeaderboardError(f"member {member_id!r} has no trial yet; record it before uploading artifacts")
        return self._files().upload_to_trial(self.trial_id(member_id), path)

    def upload_study_artifact(self, path: str | Path) -> str:
        """Attach a file to the study (lineage tree, Pareto plot); same replace-by-name rule."""
        return self._files().upload_to_study(path)

    def artifacts(self, member_id: str | None = None) -> dict[str, str]:
        """Filename -> artifact id of the study's (or a member's trial's) artifacts."""
        return self._files().names(None if member_id is None else self.trial_id(member_id))

    def _files(self) -> Artifacts:
        if self.files is None:
            raise LeaderboardError("this leaderboard has no artifact store; open it with artifact_dir= or for_run()")
        return self.files
