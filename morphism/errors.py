"""The typed exception hierarchy of the engine.

Every error a user can cause derives from :class:`MorphnasError`; the CLI turns those into one-line
messages and a non-zero exit, anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import difflib
import errno
import os
from pathlib import Path
from typing import Iterable


class MorphnasError(Exception):
    """Base of every error caused by input (specs, files, sites, parameters)."""


class SpecError(MorphnasError):
    """A layer or network description is invalid (unknown kind, bad field value)."""


class KindRegistrationError(SpecError):
    """A layer kind is declared wrongly: a kind name used twice, no runtime module or drawing label, a
    runtime exports cannot ship, an import rule another kind already has, a kind file that registers
    nothing. The message names the file."""


class LintError(MorphnasError):
    """A network breaks an IR invariant. ``problems`` lists every one found, each naming its place."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        head = f"{len(self.problems)} problem(s) in the network: "
        super().__init__(head + "; ".join(self.problems))


class NotApplicable(MorphnasError):
    """A morph op cannot be applied at the given site; the message says why."""


class LoadError(MorphnasError):
    """A saved network (spec or weights) is missing, corrupt, truncated or does not match."""


class ImportUnsupported(MorphnasError):
    """A traced ``nn.Module`` uses operations the importer does not know.

    ``ops`` lists every one found, in graph order; the message names only the first (with where it
    is), so it stays one short line however many follow from it."""

    def __init__(self, ops: list[str]):
        self.ops = list(dict.fromkeys(ops))
        first = self.ops[0] if self.ops else "an unknown operation"
        if len(first) > 170:
            first = first[:167] + "..."
        more = f" (+{len(self.ops) - 1} more)" if len(self.ops) > 1 else ""
        super().__init__(f"cannot import the model: {first} is not supported{more}; rewrite that part with "
                         "supported layers or import the model without it")


class StorageError(MorphnasError):
    """A file could not be written (a full disk, a read-only mount); the message names the place and
    the fix. :class:`StorageFull` is the full disk: a run stops on it rather than fail a member."""


class StorageFull(StorageError):
    """No space left on the filesystem that was being written."""


def storage_error(e: OSError, path: str | os.PathLike, doing: str) -> StorageError:
    """An ``OSError`` of writing ``path`` as one line a user acts on: a full disk names the
    filesystem's free space and the fix; a read-only or forbidden place says where to write."""
    where = Path(path)
    if e.errno == errno.ENOSPC:
        probe = next((p for p in (where, *where.parents) if p.exists()), where)
        try:
            st = os.statvfs(probe)
            free = f"{st.f_bavail * st.f_frsize / 2**20:.1f} MiB free of {st.f_blocks * st.f_frsize / 2**20:.1f} MiB"
        except OSError:
            free = "free space unknown"
        return StorageFull(f"{doing} {str(where)!r}: no space left on the filesystem holding it ({free}); free "
                           f"space there (or move the run), then morphnas resume re-runs what was interrupted")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StorageError(f"{doing} {str(where)!r}: {e.strerror}; write where this process can write")
    return StorageError(f"{doing} {str(where)!r}: {e.strerror or e}")


class PreservationError(MorphnasError):
    """A morphed network does not compute its parent's function within the tolerance."""


def close_matches(value: object, choices: "Iterable[object]", n: int = 1) -> list[str]:
    """Up to ``n`` names among ``choices`` that look like ``value`` (a typo), best first."""
    return difflib.get_close_matches(str(value), [str(c) for c in choices], n=n)


def did_you_mean(value: object, choices: "Iterable[object]", *, n: int = 1, known: str | None = "known") -> str:
    """The tail of a "no such name" message, to append after the sentence that names ``value``.

    ``"; did you mean 'x'?"`` (or ``"; did you mean a, b?"`` when ``n > 1``) when something is
    close; otherwise ``"; <known>: a, b, c"`` listing every choice, or ``""`` when ``known`` is None.
    The one place every "did you mean" hint of morphnas is written.
    """
    names = [str(c) for c in choices]
    close = close_matches(value, names, n=n)
    if close:
        return f"; did you mean {close[0]!r}?" if n == 1 else f"; did you mean {', '.join(close)}?"
    if known is None or not names:
        return ""
    return f"; {known}: {', '.join(sorted(names))}"
