"""Safe file-system writes for the commands: confinement to a run, refusal to overwrite, atomic replace.

Why a module of its own: every command that writes (``new``, ``morph``, ``export``, ``describe
--draw``, ``search``, ``resume``) must follow the same three rules, and each rule is easy to get
subtly wrong in one place:

* **confinement** — a path read back from disk (``run_state.json``, the study) must resolve inside
  its run directory (:func:`confined`), else the run is refused as corrupt: an edited state file
  must never make ``resume`` write elsewhere;
* **no writes into a run** — only ``search``/``resume`` write into ``runs/<name>/``; any other output
  inside a run is refused (:func:`check_output`), so ``export -o runs/r/members/m6`` cannot destroy
  a member;
* **no silent overwrite, atomic replace** — an existing output is replaced only with ``--force``,
  and then by writing a temporary sibling and renaming it over (:func:`atomic_dir`,
  :func:`atomic_file`), so an interrupted write never leaves half a network behind.

Every failure is a :class:`FsError`: one line naming the path and the fix, with nothing written.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from morphnas.morphism.errors import MorphnasError

__all__ = ["CorruptRunError", "FsError", "atomic_dir", "atomic_file", "atomic_write_text", "check_output",
           "confined", "enclosing_run", "inside", "is_run_dir", "writable_dir"]

RUN_MARKERS = ("run_state.json", "study.db", "config.yaml")


class FsError(MorphnasError):
    """An output path that cannot or must not be written (the message names it and the fix)."""


class CorruptRunError(MorphnasError):
    """A run whose saved state points outside the run (tampered or corrupt): refused, never followed."""


def inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``path`` (resolved, symlinks followed) is ``root`` or lies below it."""
    p, r = Path(path).resolve(), Path(root).resolve()
    return p == r or r in p.parents


def confined(value: object, root: Path, what: str) -> Path:
    """``value`` (a path read from a run's files, relative to ``root`` or absolute) resolved, if it
    stays inside ``root``; anything else means the run's files were edited or corrupted."""
    if not isinstance(value, str) or not value or "\x00" in value:
        raise CorruptRunError(f"run {root} is corrupt: {what} is {value!r}, not a path inside the run; "
                              f"restore the file or remove the run (morphnas remove {root})")
    p = (root / value).resolve()
    if not inside(p, root):
        raise CorruptRunError(f"run {root} is corrupt: {what} {value!r} points outside the run directory; "
                              f"restore the file or remove the run (morphnas remove {root})")
    return p


def is_run_dir(path: Path) -> bool:
    """A morphnas run directory: holds ``run_state.json``, or both ``config.yaml`` and ``study.db``."""
    return path.is_dir() and ((path / RUN_MARKERS[0]).is_file()
                              or ((path / RUN_MARKERS[1]).exists() and (path / RUN_MARKERS[2]).is_file()))


def enclosing_run(path: str | os.PathLike) -> Path | None:
    """The run directory that ``path`` is (or lies in), if any."""
    p = Path(path).expanduser().resolve()
    for candidate in (p, *p.parents):
        if is_run_dir(candidate):
            return candidate
    return None


def _nearest_existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def writable_dir(path: Path, what: str, create_parents: bool = False) -> None:
    """Refuse ``path`` as a directory to write into: it (or, with ``create_parents``, its nearest
    existing ancestor) must be a directory where a file can really be created (tested with a
    temporary file that is removed at once: permission bits alone lie for root and on /proc)."""
    target = _nearest_existing(path) if create_parents else path
    if not target.exists():
        raise FsError(f"{what} {str(path)!r}: the directory does not exist; create it first or pick another path")
    if not target.is_dir():
        raise FsError(f"{what} {str(path)!r}: {str(target)!r} is a file, not a directory; pick another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".morphnas-probe-", dir=target)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise FsError(f"{what} {str(path)!r}: cannot write into {str(target)!r} ({e.strerror or e}); "
                      f"pick a writable directory") from None


def check_output(path: str | os.PathLike, force: bool, what: str, kind: str = "dir") -> Path:
    """Check an output path before anything is computed or written; returns it (not resolved).

    Refused: a path inside a run directory (only search/resume write there), a missing or
    unwritable parent, an existing target without ``force``, and a target of the wrong kind.
    """
    out = Path(path).expanduser()
    run = enclosing_run(out.parent) or (enclosing_run(out) if out.exists() else None)
    if run is not None:
        raise FsError(f"{what} {str(path)!r} lies inside the run {str(run)!r}, which only morphnas search/resume "
                      f"may write; pick a path outside the run")
    writable_dir(out.parent if str(out.parent) else Path("."), f"{what} {str(path)!r}: parent")
    if out.exists() or out.is_symlink():
        if kind == "dir" and not out.is_dir():
            raise FsError(f"{what} {str(path)!r} is a file; pass a directory with {what}")
        if kind == "file" and out.is_dir():
            raise FsError(f"{what} {str(path)!r} is a directory; pass a file path")
        if not force:
            raise FsError(f"{what} {str(path)!r} already exists; pass --force to replace it or pick another path")
    return out


def _tmp_sibling(target: Path, suffix: str = "") -> Path:
    return target.parent / f".{target.name}.tmp-{os.getpid()}{suffix}"


@contextlib.contextmanager
def atomic_dir(target: Path, what: str = "output") -> Iterator[Path]:
    """Yield a fresh temporary sibling directory; on success it replaces ``target`` by rename (the
    old one is removed only after the new one is in place); on failure it is deleted."""
    tmp = _tmp_sibling(target)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
    except OSError as e:
        raise FsError(f"{what} {str(target)!r}: cannot write next to it ({e.strerror or e}); "
                      f"pick a writable path") from None
    try:
        yield tmp
        old = None
        if target.exists() or target.is_symlink():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    except OSError as e:
        raise FsError(f"{what} {str(target)!r}: write failed ({e.strerror or e}); nothing was replaced") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(target: Path, what: str = "output") -> Iterator[Path]:
    """Yield a temporary sibling path with ``target``'s suffix (writers pick the format from it);
    on success it is renamed over ``target``, on failure removed."""
    tmp = _tmp_sibling(target, target.suffix)
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as e:
        raise FsError(f"{what} {str(target)!r}: write failed ({e.strerror or e}); nothing was replaced") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a synced temporary sibling and a rename."""
    tmp = _tmp_sibling(path)
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
