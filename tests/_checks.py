"""Checks the bad-input and run-safety tests share: one line on stderr, nothing on disk changed."""
from __future__ import annotations

import os
from pathlib import Path


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every path below ``root`` with its bytes (files) or link target / "dir"."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            elif not p.is_file():      # a FIFO or device a test planted: never opened (it would block)
                out[rel] = "special"
            else:
                out[rel] = p.read_bytes()
    return out


def assert_one_line(rc: int, err: str, *fragments: str) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
