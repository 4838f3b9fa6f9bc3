"""Opening the Optuna storage of a run (SQLite, journal file, or any storage URL) and its study.

Kept apart from the leaderboard because every reader (CLI table, dashboard, export) opens storages,
and none of them records trials.
"""
from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

from morphnas.search.state.rundir import RunDirError, journal_path

__all__ = ["load_study", "open_storage", "quiet_optuna", "study_file", "verbose_wanted"]

VERBOSE_ENV = "MORPHNAS_VERBOSE"


def verbose_wanted() -> bool:
    """Whether the environment asks for library noise back (``MORPHNAS_VERBOSE=1``; ``--verbose`` does it per command)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def quiet_optuna(verbose: bool | None = None) -> None:
    """Silence what alarms users without telling them anything: Optuna's ``[I ...]`` INFO lines
    ("A new study created in RDB ...") and its importance/experimental ``UserWarning``s, which
    optuna-dashboard triggers on every importance request. ``verbose`` (default: the
    ``MORPHNAS_VERBOSE`` environment variable) keeps them."""
    verbose = verbose_wanted() if verbose is None else verbose
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    if not verbose:
        for module in (r"optuna(\..*)?", r"optuna_dashboard(\..*)?"):
            warnings.filterwarnings("ignore", category=UserWarning, module=module)


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
        return optuna.storages.get_storage(with_postgres_driver(url))
    except Exception as e:  # optuna raises many types for a malformed URL
        raise RunDirError(f"cannot open Optuna storage {url!r}: {e}".splitlines()[0]) from None


def study_file(url: str) -> Path | None:
    """The file a storage URL keeps its study in (SQLite or a journal file); ``None`` for a server."""
    journal = journal_path(url)
    if journal is not None:
        return Path(journal)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url[len("sqlite:///"):])
    return None


def with_postgres_driver(url: str) -> str:
    """``postgresql://`` with the PostgreSQL driver that is installed.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, 2.0 to psycopg2; the ``postgres``
    extra installs psycopg2-binary, so a bare URL names it explicitly unless psycopg 3 is present.
    A URL that already names a driver (``postgresql+psycopg://``) is left alone.
    """
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
                return "postgresql+psycopg2://" + url[len(bare):]
            return "postgresql://" + url[len(bare):]
    return url


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
