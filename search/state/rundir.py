"""The layout of a run directory ``runs/<name>/`` and how to find a run's Optuna storage.

Every command that reads or writes a run goes through :class:`RunDir`, so the layout is defined
once (docs/design.md, "Run directory")::

    runs/<name>/config.yaml      the resolved config (``storage:`` may name any Optuna storage URL,
                                 e.g. postgresql://..., or journal:///path.log for a journal file)
    runs/<name>/study.db         the Optuna study (SQLite) unless ``storage:`` says otherwise
    runs/<name>/members/<id>/    spec + weights of every network (``save_network`` layout)
    runs/<name>/best/            the exported best network
    runs/<name>/plots/           lineage tree, Pareto front, one architecture drawing per member
    runs/<name>/artifacts/       Optuna artifact store (what optuna-dashboard shows)
    runs/<name>/ray/             the Ray Tune experiment

The search driver (which writes runs) and the read-only commands (leaderboard, dashboard,
export) both call :func:`storage_url` and :func:`study_name`, so they always agree.
"""
from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from morphnas.morphism.errors import MorphnasError
from morphnas.morphism.safe_io import load_yaml, read_regular

CONFIG_FILE = "config.yaml"
STUDY_DB = "study.db"


class RunDirError(MorphnasError):
    """A run directory (or its config) is missing or unreadable; the message says which and how to fix it."""


@dataclass(frozen=True)
class RunDir:
    """Paths of one run. ``root`` is absolute; nothing is created until :meth:`make` is called."""

    root: Path

    @classmethod
    def at(cls, path: str | Path) -> "RunDir":
        return cls(Path(path).expanduser().resolve())

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def study_db(self) -> Path:
        return self.root / STUDY_DB

    @property
    def members(self) -> Path:
        return self.root / "members"

    def member(self, member_id: str) -> Path:
        return self.members / str(member_id)

    @property
    def best(self) -> Path:
        return self.root / "best"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def ray(self) -> Path:
        return self.root / "ray"

    def make(self) -> "RunDir":
        """Create the directories a run writes into (idempotent)."""
        for p in (self.root, self.members, self.plots, self.artifacts):
            p.mkdir(parents=True, exist_ok=True)
        return self

    def config(self) -> dict[str, Any]:
        """The saved config as a dict (``{}`` when the run has no config file)."""
        if not self.config_path.exists():
            return {}
        try:
            data = load_yaml(read_regular(self.config_path, 1 << 20, "run config").decode("utf-8"))
        except (OSError, yaml.YAMLError, ValueError) as e:   # ValueError: a binary file, a FIFO, a duplicate key
            raise RunDirError(f"cannot read {self.config_path}: {e}".splitlines()[0]
                              + "; restore the run's config.yaml") from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise RunDirError(f"{self.config_path} must hold a mapping, got {type(data).__name__}")
        return data


def default_storage_url(run: RunDir) -> str:
    return f"sqlite:///{run.study_db}"


_SQLITE_REL = re.compile(r"^sqlite:///(?!/)(.+)$")
# Optuna's journal file storage (an append-only log; works on NFS where SQLite locking does not):
# ``journal:///abs/path/study.log`` or, relative to the run directory, ``journal://study.log``.
JOURNAL_PREFIX = "journal://"


def journal_path(url: str) -> str | None:
    """The log file of a ``journal://`` storage URL (``None`` for any other URL)."""
    if not url.startswith(JOURNAL_PREFIX):
        return None
    path = url[len(JOURNAL_PREFIX):]
    if not path or path == "/":
        raise RunDirError(f"storage {url!r}: name the journal file, e.g. journal:///shared/runs/study.log "
                          f"(absolute) or journal://study.log (in the run directory)")
    return path


def resolve_storage_url(url: str | None, run: RunDir) -> str:
    """``url`` with a relative SQLite or journal path made absolute against the run directory.

    A relative ``sqlite:///x.db`` would otherwise depend on the working directory of whichever
    command opens it (driver, dashboard, export); anchoring it to the run makes them agree.
    """
    if not url:
        return default_storage_url(run)
    m = _SQLITE_REL.match(url)
    if m and m.group(1) != ":memory:":
        return f"sqlite:///{(run.root / m.group(1)).resolve()}"
    path = journal_path(url)
    if path is not None and not path.startswith("/"):
        return f"{JOURNAL_PREFIX}{(run.root / path).resolve()}"
    return url


def storage_url(run: RunDir) -> str:
    """The run's Optuna storage URL: ``storage:`` of its config.yaml, else ``sqlite:///<run>/study.db``."""
    value = run.config().get("storage")
    if value is not None and not isinstance(value, str):
        raise RunDirError(f"{run.config_path}: 'storage' must be an Optuna storage URL string, got {value!r}")
    return resolve_storage_url(value, run)


def study_name(run: RunDir) -> str:
    """The Optuna study name of a run: config ``study_name``, else config ``name``, else the folder name."""
    cfg = run.config()
    for key in ("study_name", "name"):
        if isinstance(cfg.get(key), str) and cfg[key]:
            return cfg[key]
    return run.name


def open_run(path: str | Path, runs_root: str | Path = "runs") -> RunDir:
    """The existing run at ``path`` (or ``runs/<path>``), raising :class:`RunDirError` if it is not one.

    A run is a directory holding ``config.yaml`` or ``study.db``; this is the check every
    read-only command (leaderboard, dashboard, export) makes before touching a storage.
    """
    p = Path(path).expanduser()
    if not p.exists() and not p.is_absolute() and (Path(runs_root) / p).exists():
        p = Path(runs_root) / p
    if not p.exists():
        raise RunDirError(f"run directory {str(path)!r} does not exist; pass the folder a search wrote "
                          f"(e.g. runs/<name>)")
    if not p.is_dir():
        raise RunDirError(f"{str(path)!r} is a file, not a run directory; pass the folder a search wrote "
                          f"(e.g. runs/<name>)")
    run = RunDir.at(p)
    if not run.config_path.exists() and not run.study_db.exists():
        raise RunDirError(f"{str(path)!r} is not a morphnas run directory (it has neither {CONFIG_FILE} "
                          f"nor {STUDY_DB}); pass the folder a search wrote (e.g. runs/<name>)")
    url = storage_url(run)
    if url.startswith("sqlite:///"):
        check_study_file(Path(url[len("sqlite:///"):]))
    return run


def _tables(path: Path) -> set[str]:
    """The table names of an existing SQLite file. Opened read-write (``mode=rw`` never creates a
    file or a table) so that SQLite can roll back the hot journal a driver killed mid-write leaves
    (a read-only connection fails on it with "attempt to write a readonly database"); read-only
    where the file cannot be written."""
    for mode in ("rw", "ro"):
        try:
            con = sqlite3.connect(f"file:{path}?mode={mode}", uri=True)
            try:
                return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            finally:
                con.close()
        except sqlite3.OperationalError:
            if mode == "ro":
                raise
    return set()


def check_study_file(path: Path) -> None:
    """A SQLite study file that exists must be an Optuna database: opened read-only here, because
    Optuna itself would add its tables to a foreign database and bury a corrupt one under a long
    SQLAlchemy traceback."""
    if not path.exists():
        return              # no study yet: the readers say so themselves
    if path.is_dir():
        raise RunDirError(f"study {path} is a directory, not an Optuna SQLite database; restore the run's study.db")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
        if head and head != b"SQLite format 3\x00":
            raise RunDirError(f"study {path} is not a SQLite database (corrupt or foreign file); restore the "
                              f"run's study.db or remove the run (morphnas remove {path.parent} --force)")
        tables = _tables(path)
    except (OSError, sqlite3.Error) as e:
        raise RunDirError(f"study {path} cannot be read ({e}); restore the run's study.db") from None
    if tables and not {"studies", "trials"} <= tables:
        raise RunDirError(f"study {path} is a SQLite database but not an Optuna study (tables: "
                          f"{', '.join(sorted(tables)[:5])}); restore the run's study.db")
