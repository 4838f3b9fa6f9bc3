"""Everything ``morphnas search`` can check before a run directory exists.

Why: a check that fails after ``runs/<name>/`` is created leaves a folder behind; the corrected
config is then refused as "already exists" and ``resume`` replays the bad one. So the ``search``
command calls :func:`preflight` first, and every error here leaves no trace on disk. It checks, in
order of cost: the run's name and place (inside ``runs_dir``, not taken, ``runs_dir`` writable),
the Optuna storage (opened read-only: nothing is created), the action space (op names and
parameters), the experiment trackers, the data (loaded once, as the driver does before Ray: a
user's factory is called here), the seed (built once on the CPU for the data's shape, or its
checkpoint loaded), and the user's code: each own op through the conformance checks on the seed,
the trainer for one step and an evaluation. What can only fail once trials run (a
seed that diverges) leaves a run that ``morphnas resume RUN --set key=value`` finishes or
``morphnas remove RUN`` deletes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import sqlalchemy
import torch

from morphnas.morphism.errors import MorphnasError
from morphnas.morphism.graph import Network
from morphnas.morphism.ops import check_conformance, load_op
from morphnas.search.config import Config, DataConfig
from morphnas.search.data.core import Data, load_data
from morphnas.search.data.registry import DataError
from morphnas.search.errors import ConfigError
from morphnas.search.state.fsutil import FsError, inside, is_run_dir, writable_dir
from morphnas.search.state.rundir import JOURNAL_PREFIX, RunDir, journal_path, resolve_storage_url
from morphnas.search.study.storage import with_postgres_driver
from morphnas.search.trial.jobs import data_fields, plugin_fields, seed_job
from morphnas.search.trial.train import TrainSpec, train
from morphnas.search.trial.worker import build_seed, trainer_for
from morphnas.search.tune.session import check_callbacks
from morphnas.spaces.actions import ActionSpace
from morphnas.spaces.errors import NoValidAction

__all__ = ["check_run_place", "check_storage", "preflight"]

SQLITE_MAGIC = b"SQLite format 3\x00"


def preflight(cfg: Config) -> None:
    """Raise a one-line :class:`MorphnasError` for anything that would fail the run's start."""
    run = check_run_place(cfg)
    check_storage(cfg.storage, run)
    check_meaning(cfg)
    space = ActionSpace.from_dict(cfg.actions)
    check_callbacks(cfg)
    data, seed = check_seed(cfg)
    check_user_code(cfg, data, seed)
    check_children_possible(cfg, space, seed)


def check_meaning(cfg: Config) -> None:
    """Settings that are valid one by one but make a search that means nothing."""
    if cfg.budget.trials != 0 and cfg.finetune.epochs == 0:
        raise ConfigError("config 'finetune.epochs': 0 would record every child untrained (its parent's accuracy "
                          "again) and the search could not tell them apart; set finetune.epochs >= 1")


def check_children_possible(cfg: Config, space: ActionSpace, seed: Network) -> None:
    """At least one child can be made from the seed: an op with a site that ``actions.where`` and
    ``actions.constraints`` allow (else the search would run and make nothing)."""
    if cfg.budget.trials == 0:
        return
    try:
        space.sample_proposal(seed, np.random.default_rng(cfg.random_seed))
    except NoValidAction as e:
        raise ConfigError(f"config 'actions': no child can be made from the seed ({e}); check actions.ops, "
                          f"their 'where' (stages, blocks, sites) and actions.constraints against "
                          f"`morphnas describe {cfg.seed.network or cfg.seed.checkpoint}`") from None


def check_run_place(cfg: Config) -> RunDir:
    """``runs_dir/name`` is a fresh directory inside ``runs_dir``, and ``runs_dir`` can be written."""
    runs_dir = Path(cfg.runs_dir).expanduser()
    if runs_dir.exists() and not runs_dir.is_dir():
        raise ConfigError(f"config 'runs_dir': {cfg.runs_dir!r} is a file, not a directory; "
                          f"set runs_dir to a directory (e.g. runs)")
    try:
        writable_dir(runs_dir, "config 'runs_dir':", create_parents=True)
    except FsError as e:
        raise ConfigError(str(e)) from None
    target = runs_dir / cfg.name
    if cfg.name in (".", "..") or "/" in cfg.name or "\\" in cfg.name or not inside(target, runs_dir) \
            or target.resolve().parent != runs_dir.resolve():
        raise ConfigError(f"config 'name': {cfg.name!r} does not name a directory inside runs_dir "
                          f"{cfg.runs_dir!r}; use a plain name such as 'myrun'")
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise ConfigError(f"config 'name': {str(target)!r} exists and is a file, not a run; "
                              f"pick another name (--set name=...)")
        if is_run_dir(target):
            raise ConfigError(f"run {target} already exists; continue it with 'morphnas resume {target}', remove it "
                              f"with 'morphnas remove {target}', or pick another name (--set name=...)")
        if any(p.name != ".lock" for p in target.iterdir()):
            raise ConfigError(f"config 'name': {str(target)!r} is a directory that is not a morphnas run; "
                              f"pick another name (--set name=...)")
    return RunDir.at(target)


def check_storage(url: str | None, run: RunDir) -> None:
    """The storage can be opened without creating anything: a SQLite or journal file in a writable
    folder (an existing SQLite file must really be one), or a database server that accepts a
    connection."""
    resolved = resolve_storage_url(url, run)
    if resolved.rstrip("/") in ("sqlite:", "sqlite:/", "sqlite://") or resolved.startswith("sqlite://?"):
        raise ConfigError(f"config 'storage': {url!r} is an in-memory SQLite database, lost when the driver exits "
                          f"(no leaderboard, no resume); drop 'storage' (a study.db in the run) or name a file: "
                          f"sqlite:///path/study.db")
    journal = journal_path(resolved)
    if journal is not None or resolved.startswith("sqlite:///"):
        path = Path(journal if journal is not None else resolved[len("sqlite:///"):])
        if str(path) == ":memory:":
            raise ConfigError("config 'storage': sqlite:///:memory: would lose the study when the driver exits; "
                              "drop 'storage' (a study.db in the run) or name a file")
        try:   # only the run's own folder is created by the driver; any other must exist
            writable_dir(path.parent, "config 'storage': folder", create_parents=inside(path.parent, run.root))
        except FsError as e:
            raise ConfigError(str(e)) from None
        if path.is_dir():
            raise ConfigError(f"config 'storage': {str(path)!r} is a directory; name a file")
        if journal is None and path.exists():
            with open(path, "rb") as f:
                head = f.read(len(SQLITE_MAGIC))
            if head and head != SQLITE_MAGIC:
                raise ConfigError(f"config 'storage': {str(path)!r} is not a SQLite database; "
                                  f"name a new file or an Optuna study.db")
        return
    if resolved.startswith(JOURNAL_PREFIX):
        return
    try:
        engine = sqlalchemy.create_engine(with_postgres_driver(resolved))
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except Exception as e:   # sqlalchemy and the DB drivers raise many types for a bad URL or server
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"config 'storage': cannot open {url!r} ({first}); check the URL and that the "
                          f"database server is reachable") from None


def check_seed(cfg: Config) -> tuple[Data, Network]:
    """Load the data (as the driver does before Ray) and build the seed once for its shape."""
    try:
        data = load_data(DataConfig(**data_fields(cfg)), seed=cfg.random_seed, task=cfg.task.type)
    except DataError as e:
        raise ConfigError(str(e)) from None
    job = seed_job(cfg)
    try:
        with torch.device("cpu"):
            return data, build_seed(job, data)
    except MorphnasError as e:
        raise ConfigError(f"config 'seed': {e}") from None


def check_user_code(cfg: Config, data: Data, seed: Network) -> None:
    """The run's own ops pass the conformance checks on the seed, and its trainer trains the seed
    for one step and evaluates it (what it raises or returns wrongly is one line, before any run)."""
    plugins = plugin_fields(cfg)
    for path in plugins.get("ops", ()):
        try:
            check_conformance(load_op(path), seed.to(torch.float64))
        except MorphnasError as e:
            raise ConfigError(f"config 'actions.ops': {path!r}: {e}") from None
    if not plugins.get("trainer"):
        return
    try:
        trainer = trainer_for(plugins)
        spec = TrainSpec(**{**seed_job(cfg).train, "epochs": 1, "max_steps": 1})
        train(seed, data, spec, trainer=trainer, task=cfg.task.resolved())
    except MorphnasError as e:
        raise ConfigError(f"config 'trainer': {e}") from None
