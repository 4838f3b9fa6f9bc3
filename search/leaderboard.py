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
(resume relies on this).
"""
from __future__ import annotations

import datetime
import json
import math
import mimetypes
import uuid
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution)
from optuna.trial import FrozenTrial, TrialState

from morphnas.morphism.errors import MorphnasError

from .records import TrialResult
from .rows import MEMBER_ATTR, Row, _row, ops_summary, rank_rows
from .rundir import RunDir, RunDirError, journal_path, storage_url, study_name

__all__ = ["Leaderboard", "LeaderboardError", "Row", "load_study", "open_storage", "ops_summary",
           "rank_rows", "to_distribution"]

# Keys under which Optuna (trial/study system attrs) and optuna-dashboard (study system attrs, per
# trial) keep artifact metadata.
ARTIFACTS_PREFIX = "artifacts:"
DASHBOARD_PREFIX = "dashboard:artifacts:"


class LeaderboardError(MorphnasError):
    """A study or record that does not fit the leaderboard (wrong objectives, bad parameter)."""


# ----------------------------------------------------------------------------- domains
def to_distribution(name: str, domain: Any) -> BaseDistribution:
    """A fixed Optuna distribution from a plain domain description.

    ``domain`` is an Optuna distribution, a list/tuple of choices (categorical), or a mapping
    ``{"low": a, "high": b, "step": s?, "log": bool?}`` (int if ``low``/``high``/``step`` are ints,
    else float). ``spaces`` describes domains this way because it must not import Optuna.
    """
    if isinstance(domain, BaseDistribution):
        return domain
    if isinstance(domain, (list, tuple)):
        if not domain:
            raise LeaderboardError(f"search param {name!r}: an empty list of choices; give at least one")
        return CategoricalDistribution(tuple(domain))
    if isinstance(domain, Mapping) and "low" in domain and "high" in domain:
        low, high, step, log = domain["low"], domain["high"], domain.get("step"), bool(domain.get("log", False))
        if not low <= high:
            raise LeaderboardError(f"search param {name!r}: `low <= high` must hold, but got (low={low}, high={high})")
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high, step or 1)):
            return IntDistribution(low, high, log=log, step=step or 1)
        return FloatDistribution(float(low), float(high), log=log, step=step)
    raise LeaderboardError(f"search param {name!r}: cannot read domain {domain!r}; give a list of choices "
                           f"or {{low: .., high: ..}}")


def _point_distribution(value: Any) -> BaseDistribution:
    if isinstance(value, int) and not isinstance(value, bool):
        return IntDistribution(value, value)
    if isinstance(value, float) and math.isfinite(value):
        return FloatDistribution(value, value)
    return CategoricalDistribution((value,))


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (Optuna user attrs must be JSON-serialisable)."""
    return json.loads(json.dumps(value, default=str))


# ----------------------------------------------------------------------------- storage
def open_storage(url: str, create: bool = True) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; SQLite waits for locks (the dashboard reads while the driver writes).

    With ``create=False`` a SQLite file that does not exist is an error instead of a new empty
    database (read-only commands must not create studies).
    """
    journal = journal_path(url)
    if journal is not None:
        if not create and not Path(journal).exists():
            raise RunDirError(f"the run has no study yet ({journal} does not exist); "
                              f"it appears once the search records its first trial")
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        try:
            return JournalStorage(JournalFileBackend(journal))
        except OSError as e:
            raise RunDirError(f"cannot open the journal storage {journal}: {e}") from None
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not create and path != ":memory:" and not Path(path).exists():
            raise RunDirError(f"the run has no study yet ({path} does not exist); "
                              f"it appears once the search records its first trial")
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    try:
        return optuna.storages.get_storage(_with_postgres_driver(url))
    except Exception as e:  # optuna raises many types for a malformed URL
        raise RunDirError(f"cannot open Optuna storage {url!r}: {e}".splitlines()[0]) from None


def _with_postgres_driver(url: str) -> str:
    """``postgresql://`` with the PostgreSQL driver that is installed.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, 2.0 to psycopg2; the ``postgres``
    extra installs psycopg2-binary, so a bare URL names it explicitly unless psycopg 3 is present.
    A URL that already names a driver (``postgresql+psycopg://``) is left alone.
    """
    import importlib.util
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
                return "postgresql+psycopg2://" + url[len(bare):]
            return "postgresql://" + url[len(bare):]
    return url


class Leaderboard:
    """The run's Optuna study. Created (or reopened) by the driver; read by the CLI commands.

    ``directions`` are ``"maximize"``/``"minimize"`` per objective and ``objective_names`` their
    names (shown by the dashboard). ``search_space`` maps search-param names to fixed domains
    (see :func:`to_distribution`). ``artifact_dir`` enables artifacts (a
    ``FileSystemArtifactStore``); ``run`` is the run directory that drawings go to.
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
        self.artifact_store = None
        if artifact_dir is not None:
            Path(artifact_dir).mkdir(parents=True, exist_ok=True)
            self.artifact_store = optuna.artifacts.FileSystemArtifactStore(str(artifact_dir))
        self.auto_publish = False
        self._numbers: dict[str, int] = {}
        self._ids: dict[int, int] = {}
        self._refresh()

    @classmethod
    def for_run(cls, run: RunDir, directions: Sequence[str] = ("maximize",),
                objective_names: Sequence[str] | None = None, *, search_space: Mapping[str, Any] | None = None,
                publish: bool = True) -> "Leaderboard":
        """The driver's leaderboard of ``run``: storage URL and study name from its config.yaml,
        artifacts in ``run/artifacts``. With ``publish`` every :meth:`record` also refreshes the
        run's plots and artifacts (see :meth:`publish`)."""
        run.make()
        lb = cls(storage_url(run), study_name(run), directions, objective_names, search_space=search_space,
                 artifact_dir=run.artifacts, run=run)
        lb.auto_publish = publish
        return lb

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
                self._ids[t.number] = t._trial_id

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

        ``attachments`` (files) become the trial's artifacts. With ``auto_publish`` the member's
        architecture drawing is attached too and the run's lineage/Pareto plots are refreshed.
        Artifacts are attached in the same write that creates the trial, because storages
        refuse to change a finished trial.
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
        files = [Path(a) for a in attachments]
        if self.auto_publish and state == TrialState.COMPLETE:
            drawing = self._draw_member(result)
            if drawing is not None:
                files.append(drawing)
        system_attrs = dict(self._store_file(f) for f in files)
        frozen = optuna.trial.create_trial(
            state=state, values=values, params=params, distributions=dists,
            user_attrs=self._user_attrs(result, reason, outside), system_attrs=system_attrs,
            intermediate_values=intermediate)
        done = frozen.datetime_complete or datetime.datetime.now()
        frozen.datetime_start = done - datetime.timedelta(seconds=max(0.0, float(result.wall_time)))
        # What study.add_trial does (create_trial validated it, values were counted above), but
        # keeping the new trial's id: no re-read of every trial per record.
        trial_id = self.storage.create_new_trial(self.study._study_id, template_trial=frozen)
        number = self.storage.get_trial_number_from_id(trial_id)
        self._numbers[result.member_id], self._ids[number] = number, trial_id
        if self.auto_publish:
            try:
                self.publish()
            except Exception as e:  # a plot must never cost a recorded trial; say what went wrong
                warnings.warn(f"leaderboard: could not refresh the run plots after member {result.member_id}: "
                              f"{type(e).__name__}: {e}", stacklevel=2)
        return self._numbers[result.member_id]

    def _draw_member(self, result: TrialResult) -> Path | None:
        from morphnas.morphism.serialize import load_network

        from . import plots
        try:
            net = load_network(self._resolve(result.member_path, result.member_id))
            parent = None
            if result.parent_id is not None and result.parent_id in self._numbers:
                parent_row = _row(self.storage.get_trial(self._ids[self._numbers[result.parent_id]]))
                try:
                    parent = load_network(self.member_dir(parent_row))
                except MorphnasError:
                    parent = None  # still draw the child, only without the highlighted changes
            ops = "+".join(str(a.get("op", "?")) for a in result.actions) or "seed"
            title = (f"{result.member_id} <- {result.parent_id}: {ops}" if result.parent_id
                     else f"{result.member_id}: seed")
            return plots.architecture(net, self.run.plots / f"arch_{result.member_id}.png", base=parent,
                                      title=title if len(title) <= 48 else title[:47] + "…")
        except Exception as e:  # the trial is recorded without its drawing rather than not at all
            warnings.warn(f"leaderboard: no architecture drawing for member {result.member_id}: "
                          f"{type(e).__name__}: {e}", stacklevel=3)
            return None

    def _resolve(self, member_path: str, member_id: str) -> Path:
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
            dist = self.search_space.get(name) or _point_distribution(value)
            try:
                ok = dist._contains(dist.to_internal_repr(value))
            except (ValueError, TypeError):
                ok = False
            if ok:
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

    # ------------------------------------------------------------------------- plots + artifacts
    def member_dir(self, row: Row) -> Path:
        """Where the member's network is saved (a relative ``member_path`` is relative to the run)."""
        return self._resolve(row.member_path, row.member_id)

    def publish(self, upload: bool = True) -> dict[str, Path]:
        """Redraw the lineage tree and Pareto plot into ``run/plots`` and (``upload``) attach them to the study.

        Only the driver uploads: a reader (``morphnas leaderboard --plots``) redraws the files only,
        so the study keeps a single writer.
        """
        from . import plots
        if self.run is None:
            raise LeaderboardError("publish needs the run directory; open the leaderboard with for_run()")
        rows = self.rows()
        out = {"lineage": plots.lineage_tree(rows, self.run.plots / "lineage.png", title=self.study.study_name)}
        names = self.study.metric_names or []
        cost = next((n for n in names[1:] if n in ("params", "flops")), "params")
        out["pareto"] = plots.pareto_front(rows, self.run.plots / "pareto.png", x=cost)
        if upload and self.artifact_store is not None:
            for path in out.values():
                self.upload_study_artifact(path)
        return out

    # ------------------------------------------------------------------------- artifacts
    def upload_artifact(self, member_id: str, path: str | Path) -> str:
        """Attach a file to the member's (finished) trial; the dashboard lists it with the trial.

        A file whose name the trial already has replaces that artifact's content under the same id,
        so repeating the call adds nothing. New files of a finished trial are listed through the
        study's ``dashboard:artifacts:<trial id>:`` attributes, where optuna-dashboard looks too
        (storages refuse to change a finished trial's own attributes).
        """
        if member_id not in self._numbers:
            raise LeaderboardError(f"member {member_id!r} has no trial yet; record it before uploading artifacts")
        names = self.artifacts(member_id)
        path = self._check_file(path)
        if path.name in names:
            return self._overwrite(names[path.name], path)
        trial_id = self._ids[self._numbers[member_id]]
        key, meta = self._store_file(path)
        artifact_id = key[len(ARTIFACTS_PREFIX):]
        self.storage.set_study_system_attr(self.study._study_id, f"{DASHBOARD_PREFIX}{trial_id}:{artifact_id}", meta)
        return artifact_id

    def upload_study_artifact(self, path: str | Path) -> str:
        """Attach a file to the study (lineage tree, Pareto plot); same replace-by-name rule."""
        path = self._check_file(path)
        names = self.artifacts()
        if path.name in names:
            return self._overwrite(names[path.name], path)
        key, meta = self._store_file(path)
        self.storage.set_study_system_attr(self.study._study_id, key, meta)
        return key[len(ARTIFACTS_PREFIX):]

    def artifacts(self, member_id: str | None = None) -> dict[str, str]:
        """Filename -> artifact id of the study's (or a member's trial's) artifacts."""
        study_attrs = self.storage.get_study_system_attrs(self.study._study_id)
        if member_id is None:
            return _artifact_names(study_attrs, ARTIFACTS_PREFIX)
        trial_id = self._ids[self._numbers[member_id]]
        return {**_artifact_names(study_attrs, f"{DASHBOARD_PREFIX}{trial_id}:"),
                **_artifact_names(self.storage.get_trial_system_attrs(trial_id), ARTIFACTS_PREFIX)}

    def _check_file(self, path: str | Path) -> Path:
        if self.artifact_store is None:
            raise LeaderboardError("this leaderboard has no artifact store; open it with artifact_dir= or for_run()")
        path = Path(path)
        if not path.is_file():
            raise LeaderboardError(f"artifact file {str(path)!r} does not exist")
        return path

    def _overwrite(self, artifact_id: str, path: Path) -> str:
        with open(path, "rb") as f:
            self.artifact_store.write(artifact_id, f)
        return artifact_id

    def _store_file(self, path: Path) -> tuple[str, str]:
        """Write ``path`` into the artifact store; return its system-attribute key and meta JSON."""
        path = self._check_file(path)
        artifact_id = str(uuid.uuid4())
        mimetype, encoding = mimetypes.guess_type(path.name)
        self._overwrite(artifact_id, path)
        meta = {"artifact_id": artifact_id, "filename": path.name,
                "mimetype": mimetype or "application/octet-stream", "encoding": encoding}
        return ARTIFACTS_PREFIX + artifact_id, json.dumps(meta)


def _artifact_names(system_attrs: Mapping[str, Any], prefix: str) -> dict[str, str]:
    out = {}
    for key, value in system_attrs.items():
        if key.startswith(prefix):
            meta = json.loads(value) if isinstance(value, str) else value
            if meta:  # a deleted artifact leaves a null entry behind
                out[meta["filename"]] = meta["artifact_id"]
    return out


def load_study(storage: optuna.storages.BaseStorage, name: str, url: str) -> optuna.Study:
    """The study called ``name``; if the storage holds exactly one study under another name, that one."""
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if name not in names:
        if len(names) == 1:
            name = names[0]
        elif not names:
            raise RunDirError(f"{url} holds no study yet; it appears once the search records its first trial")
        else:
            raise RunDirError(f"{url} holds no study named {name!r} (it has {names}); set 'study_name' "
                              f"in the run's config.yaml")
    return optuna.load_study(study_name=name, storage=storage)
