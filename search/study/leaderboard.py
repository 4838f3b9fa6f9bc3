"""The leaderboard: one Optuna trial per network (member) of a run, written by the driver only.

Trials are created whole from ``optuna.trial.create_trial(...)`` (what ``study.add_trial`` does)
rather than through ``ask``/``tell``: Optuna refuses categorical domains that change between trials in
``suggest_*`` and refuses intermediate values in multi-objective studies, while a created trial
accepts any distribution and any number of objectives (docs/design.md, "Numerics"). A created trial is one
storage transaction, so a crash never leaves half a trial behind.

What each trial holds (see :meth:`Leaderboard.record`):

* params: ``first_op``, ``num_morphs`` and ``lineage_depth``, which every trial has (the seed too),
  so parameter importance and the slice plot compare all trials; and the sampler-facing action parameters (``TrialResult.search_params``) with their
  distributions — fixed domains declared through ``search_space`` so the dashboard's parameter
  importance can compare trials; a parameter without a declared domain gets a one-point domain
  (it is recorded, but importance ignores it); a value outside its domain goes to the user attr
  ``params_outside_domain`` (with a warning) rather than costing the member its trial;
* user attrs, kept short (they fill one box of the trial's page): member id, parent id, lineage
  depth, ops summary, params, params_mb, FLOPs (null for a failed member: its size is unknown),
  preservation error, epochs, wall time, member path, val acc (last epoch) and its per-epoch
  curve, fail reason. The raw action records and the driver's ``extra`` notes are system attrs
  (read back by :func:`~.rows.row_of`) and an attached ``record_<member>.json``;
* a note (``optuna_dashboard.save_note``) shown first on the trial's page: member, parent, ops at
  their sites, params, FLOPs, preservation error, val acc and the architecture drawing
  (:mod:`.trial_note`);
* intermediate values: val acc per epoch (single-objective studies only);
* values: the objective(s); non-finite objectives make the trial FAIL with that reason.

Trial numbers are stable: the driver opens a member's trial (RUNNING) when it launches the
member (:meth:`Leaderboard.open_trial`), in launch order, so member ``m<i>`` is trial ``i`` of a
fresh study whatever order trials finish in, and resume re-runs keep their trial. ``record`` then
fills and finishes that trial, setting its state last, so an interrupted record is completed by
the next one. Recording is idempotent by member id: recording a member twice returns the first
trial's number (resume relies on this). Drawing is not done here: :mod:`.publish` draws a member and hands the
drawing to :meth:`Leaderboard.record` as an attachment, then refreshes the run plots. Storages are
opened by :mod:`.storage`, files attached by :mod:`.artifacts`; only Optuna's public API is used.
"""
from __future__ import annotations

import datetime
import json
import math
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from morphnas.morphism.errors import did_you_mean
from morphnas.morphism.ops.base import default_registry
from morphnas.search.errors import LeaderboardError
from morphnas.search.state.records import TrialResult
from morphnas.search.state.rundir import RunDir, storage_url, study_name
from morphnas.search.study.artifacts import Artifacts
from morphnas.search.study.domains import contains, point_distribution, to_distribution
from morphnas.search.study.rows import (
    ACTIONS_ATTR,
    EXTRA_ATTR,
    MEMBER_ATTR,
    Row,
    cost_axis,
    mark_front,
    ops_summary,
    rank_rows,
    row_of,
)
from morphnas.search.study.storage import load_study, open_storage, quiet_optuna
from morphnas.search.study.trial_note import arch_params, note_markdown, raw_record

__all__ = ["Leaderboard", "LeaderboardError", "Row", "find_member", "load_study", "open_storage", "ops_summary",
           "rank_rows", "to_distribution"]


def arch_domains() -> dict[str, BaseDistribution]:
    """Fixed domains of :func:`~.trial_note.arch_params` (the same in every run and session)."""

    return {"first_op": CategoricalDistribution(("seed", *sorted(default_registry().names()))),
            "num_morphs": IntDistribution(0, 64), "lineage_depth": IntDistribution(0, 100_000)}


def find_member(run: RunDir, member_id: str) -> Row:
    """The row of member ``member_id`` of ``run`` (what ``--member m6`` names: stable across resumes)."""
    lb = Leaderboard.open(run)
    if member_id not in lb._numbers:
        known = sorted(lb._numbers, key=lambda m: lb._numbers[m])
        raise LeaderboardError(f"--member {member_id!r}: the run has no such member"
                               f"{did_you_mean(member_id, known)}")
    return lb.row_of(member_id)


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
                 artifact_dir: str | Path | None = None, run: RunDir | None = None, create: bool = True,
                 score_sign: float = 1.0):
        quiet_optuna()
        # The search maximises a score; the study keeps the first objective in the metric's own units
        # (a regression's val_rmse is minimised): value = score_sign * score (search/data/task.py).
        self.score_sign = float(score_sign)
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
        self._numbers: dict[str, int] = {}   # member id -> trial number (open or finished)
        self._open: set[str] = set()         # members whose trial is open (RUNNING)
        self._ids: dict[int, int] = {}       # trial number -> storage trial id, filled as needed
        self._arch = arch_domains()
        self._refresh()

    @classmethod
    def for_run(cls, run: RunDir, directions: Sequence[str] = ("maximize",),
                objective_names: Sequence[str] | None = None, *, search_space: Mapping[str, Any] | None = None,
                score_sign: float = 1.0) -> "Leaderboard":
        """The driver's leaderboard of ``run``: storage URL and study name from its config.yaml,
        artifacts in ``run/artifacts`` (drawings: :class:`~.publish.Publisher`)."""
        run.make()
        return cls(storage_url(run), study_name(run), directions, objective_names, search_space=search_space,
                   artifact_dir=run.artifacts, run=run, score_sign=score_sign)

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
                if t.state == TrialState.RUNNING:
                    self._open.add(str(mid))

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
        return row_of(self.storage.get_trial(self.trial_id(member_id)))

    def recorded(self) -> dict[str, int]:
        """Member id -> trial number of every recorded (finished) member."""
        return {m: n for m, n in self._numbers.items() if m not in self._open}

    def trial(self, number: int) -> FrozenTrial:
        trials = self.study.get_trials(deepcopy=False)
        if not 0 <= number < len(trials):
            raise LeaderboardError(f"trial {number} does not exist; the study has trials 0..{len(trials) - 1}")
        return trials[number]

    def rows(self, running: bool = False) -> list[Row]:
        """Every finished trial (``running``: open ones too) as a :class:`Row`, ranked (see
        :func:`rank_rows`); ``pareto`` marks the front's members (:func:`mark_front`)."""
        trials = self.study.get_trials(deepcopy=False)
        rows = [row_of(t) for t in trials if running or t.state != TrialState.RUNNING]
        return mark_front(rank_rows(rows, self.directions), self.directions, cost_axis(self.study.metric_names))

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
        if result.member_id in self._numbers and result.member_id not in self._open:
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
                values[0] *= self.score_sign
            else:
                reason = f"objective value(s) not finite: {list(result.values)}"
        params, dists, outside = self._params(result)
        intermediate = None
        if len(self.study.directions) == 1 and result.val_acc_history:
            intermediate = {i + 1: self.score_sign * float(v) for i, v in enumerate(result.val_acc_history)}
        if attachments and self.files is None:
            raise LeaderboardError("this leaderboard has no artifact store; open it with artifact_dir= or for_run()")
        with tempfile.TemporaryDirectory(prefix="morphnas-record-") as tmp:
            raw = Path(tmp) / f"record_{result.member_id}.json"
            raw.write_text(raw_record(result))
            files = [*attachments, raw] if self.files is not None else []
            metas = [self.files.new_trial_attr(f) for f in files] if self.files is not None else []
        system_attrs = {**dict(metas), ACTIONS_ATTR: _jsonable(list(result.actions)),
                        EXTRA_ATTR: _jsonable(dict(result.extra))}
        user_attrs = self._user_attrs(result, reason, outside)
        if result.member_id in self._open:
            trial_id = self.trial_id(result.member_id)
            number = self._numbers[result.member_id]
            for k, v in {**user_attrs, **system_attrs}.items():
                (self.storage.set_trial_system_attr if k in system_attrs else self.storage.set_trial_user_attr)(
                    trial_id, k, v)
            for step, v in (intermediate or {}).items():
                self.storage.set_trial_intermediate_value(trial_id, step, v)
            # the state last: a record interrupted before this line is redone by the next one
            self.storage.set_trial_state_values(trial_id, state, values)
            self._open.discard(result.member_id)
        else:
            frozen = optuna.trial.create_trial(
                state=state, values=values, params=params, distributions=dists,
                user_attrs=user_attrs, system_attrs=system_attrs, intermediate_values=intermediate)
            done = frozen.datetime_complete or datetime.datetime.now()
            frozen.datetime_start = done - datetime.timedelta(seconds=max(0.0, float(result.wall_time)))
            # What study.add_trial does (create_trial validated it, values were counted above), but
            # keeping the new trial's id: no re-read of every trial per record.
            trial_id = self.storage.create_new_trial(self.study_id, template_trial=frozen)
            number = self.storage.get_trial_number_from_id(trial_id)
            self._numbers[result.member_id], self._ids[number] = number, trial_id
        self._save_note(result, number, trial_id, metas, values)
        return number

    def open_trial(self, job: Any) -> int | None:
        """Open (RUNNING) the trial of a member being launched, so its number is fixed now, in launch
        order; ``job`` has ``member_id``, ``parent_id``, ``depth``, ``member_path``, ``search_params``
        and ``action_dicts()`` (a :class:`~morphnas.search.state.records.Job`). A member with a trial keeps it (a re-run).

        Returns the trial number, or ``None`` with a warning if the study cannot be written: the
        member is then recorded whole when it finishes, as a study problem must not stop a search.
        """
        mid = str(job.member_id)
        if mid in self._numbers:
            return self._numbers[mid]
        try:
            actions = list(job.action_dicts())
            result = TrialResult(member_id=mid, parent_id=job.parent_id, depth=int(job.depth), state="FAIL",
                                 actions=tuple(actions), search_params=dict(job.search_params or {}),
                                 member_path=str(job.member_path or ""))
            params, dists, outside = self._params(result)
            attrs = {MEMBER_ATTR: mid, "parent_id": result.parent_id, "depth": result.depth,
                     "ops": ops_summary(actions), "member_path": result.member_path}
            if outside:
                attrs["params_outside_domain"] = outside
            frozen = optuna.trial.create_trial(state=TrialState.RUNNING, params=params, distributions=dists,
                                               user_attrs=_jsonable(attrs))
            frozen.datetime_start = datetime.datetime.now()
            trial_id = self.storage.create_new_trial(self.study_id, template_trial=frozen)
        except Exception as e:  # noqa: BLE001 - the member is recorded whole when it finishes
            warnings.warn(f"leaderboard: could not open the trial of member {mid} ({type(e).__name__}: {e}); "
                          f"it is recorded when it finishes", stacklevel=2)
            return None
        number = self.storage.get_trial_number_from_id(trial_id)
        self._numbers[mid], self._ids[number] = number, trial_id
        self._open.add(mid)
        return number

    def _save_note(self, r: TrialResult, number: int, trial_id: int, metas: Sequence[tuple[str, str]],
                   values: Sequence[float] | None) -> None:
        """The markdown note optuna-dashboard shows first on the trial's page (:mod:`.trial_note`)."""
        image = None
        for _key, meta in metas:
            m = json.loads(meta)
            if str(m.get("mimetype", "")).startswith("image/"):
                image = f"/artifacts/{self.study_id}/{trial_id}/{m['artifact_id']}"
                break
        body = note_markdown(r, number, image, values, self.study.metric_names)
        try:
            from optuna_dashboard import save_note  # lazy: optuna-dashboard, only for a member's note
            save_note(optuna.trial.Trial(self.study, trial_id), body)
        except Exception as e:  # noqa: BLE001 - a note is a convenience: never lose the trial over it
            warnings.warn(f"leaderboard: no dashboard note for member {r.member_id} ({type(e).__name__}: {e})",
                          stacklevel=3)

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
        fixed = arch_params(result.actions, result.depth)
        for name, value in sorted({**result.search_params, **fixed}.items()):
            dist = (self._arch[name] if name in fixed else self.search_space.get(name)) or point_distribution(value)
            if contains(dist, value):
                params[name], dists[name] = value, dist
            else:
                outside[name] = value
                warnings.warn(f"leaderboard: member {result.member_id}: search param {name}={value!r} is outside "
                              f"its domain {dist}; recorded as user attr 'params_outside_domain' (widen the "
                              f"domain in the action space)", stacklevel=3)
        return params, dists, outside

    def _user_attrs(self, r: TrialResult, reason: str, outside: dict[str, Any]) -> dict[str, Any]:
        unknown = r.state != "COMPLETE" and not r.params      # a failed member's size is unknown, not 0
        attrs: dict[str, Any] = {
            MEMBER_ATTR: r.member_id, "parent_id": r.parent_id, "depth": r.depth,
            "ops": ops_summary(r.actions), "params": None if unknown else r.params,
            "params_mb": None if unknown else r.params_mb, "flops": None if unknown else r.flops,
            "preservation_error": r.preservation_error,
            "epochs": r.epochs, "wall_time": round(float(r.wall_time), 2), "member_path": r.member_path,
            "val_acc": r.val_acc_history[-1] if r.val_acc_history else None,
            "val_acc_history": list(r.val_acc_history),
        }
        name = self.study.metric_names[0] if self.study.metric_names else "val_acc"
        if name != "val_acc":    # another metric: shown by its name, in its units; the score kept as "score"
            attrs["score"] = attrs.pop("val_acc")
            attrs["score_history"] = attrs.pop("val_acc_history")
            attrs[name] = self.score_sign * attrs["score"] if attrs["score"] is not None else None
            attrs[f"{name}_history"] = [self.score_sign * v for v in r.val_acc_history]
        if r.latency_ms is not None:
            attrs["latency_ms"] = float(r.latency_ms)
        if r.train_flops:
            attrs["train_flops"] = int(r.train_flops)    # what the trial spent (budget.flops counts it)
        if reason:
            attrs["fail_reason"] = reason
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
