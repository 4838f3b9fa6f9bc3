"""Reading files a user (or an attacker) hands us: only regular files, of bounded size, and YAML
that means one thing.

* :func:`read_regular` refuses what is not a regular file (a FIFO would block forever, a symlink to
  ``/dev/zero`` would never end) and a file bigger than its bound, *before* reading a byte; a
  symlink to a regular file is followed (run folders are moved and linked).
* :func:`load_yaml` is ``yaml.safe_load`` that refuses a mapping with the same key twice (the later
  one would silently win: a second ``budget:`` section), names the line, and turns input nested too
  deep for the parser into one line instead of a ``RecursionError``.

Every refusal is a :class:`UnsafeInput` (a ``ValueError``) with one line naming the file and the fix.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

__all__ = ["MAX_DEPTH", "UnsafeInput", "check_regular", "load_yaml", "read_regular"]

MAX_DEPTH = 64           # nesting of YAML collections; a config is 3 deep, a module file 4


class UnsafeInput(ValueError):
    """A file or text we will not read: not a regular file, too big, ambiguous or too deep."""


def check_regular(path: str | Path, limit: int, what: str = "file") -> int:
    """The size of ``path`` if it is a regular file of at most ``limit`` bytes, else :class:`UnsafeInput`."""
    p = Path(path)
    try:
        st = os.stat(p)          # follows symlinks: what would be read
    except FileNotFoundError:
        raise UnsafeInput(f"{what} {str(p)!r} does not exist") from None
    except OSError as e:         # a symlink loop, a name too long, no permission
        raise UnsafeInput(f"{what} {str(p)!r} cannot be read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or
                stat.S_ISBLK(st.st_mode) else "a directory" if stat.S_ISDIR(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise UnsafeInput(f"{what} {str(p)!r} is {kind}; only regular files are read")
    if st.st_size > limit:
        raise UnsafeInput(f"{what} {str(p)!r} is {st.st_size:,} bytes, more than the {limit:,} allowed; "
                          f"is it the right file?")
    return int(st.st_size)


def read_regular(path: str | Path, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (see :func:`check_regular`)."""
    check_regular(path, limit, what)
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:        # it grew between the check and the read
        raise UnsafeInput(f"{what} {str(path)!r} is more than the {limit:,} bytes allowed")
    return data


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and deep nesting."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise UnsafeInput(f"line {mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise UnsafeInput(f"line {key_node.start_mark.line + 1}: a mapping key must be a plain value") from None
        if key in seen:
            raise UnsafeInput(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in the same mapping "
                              f"(first on line {seen[key]}); keep one")
        seen[key] = key_node.start_mark.line + 1
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, refusing duplicate keys and nesting deeper than :data:`MAX_DEPTH`
    (:class:`UnsafeInput`, whose message starts with the line); a syntax error stays a ``yaml.YAMLError``."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise UnsafeInput(f"nested more than {MAX_DEPTH} levels deep") from None
