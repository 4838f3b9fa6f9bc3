"""``morphnas remove RUN [--force]``: delete a run directory, the one documented way to undo a start.

A run that failed before anything finished (a seed that diverged, a config mistake only the trials
could reveal) is removed at once; one with a finished member needs ``--force``, because its trained
networks are lost with it. The run's lock is taken first, so a running driver is never pulled out
from under; only a directory that is a morphnas run is ever deleted.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from morphnas.morphism.errors import MorphnasError
from morphnas.search.cli.registry import CLIError, register_command
from morphnas.search.state.fsutil import is_run_dir
from morphnas.search.state.runstate import RunLock, RunState


@register_command("remove", position=65)
def add_parser(sub) -> None:
    p = sub.add_parser("remove", help="delete a run directory (refuses if a member finished, unless --force)",
                       description="Delete runs/<name>/ so the name can be used again. Refused while a driver "
                                   "runs it, and without --force when any member finished.")
    p.add_argument("run_dir", metavar="RUN", help="the run directory (runs/<name>) or its name")
    p.add_argument("--force", action="store_true", help="remove even if members finished (their networks are lost)")
    p.set_defaults(run=run)


def finished_members(root: Path) -> list[str] | None:
    """Ids of the finished members according to the run state (``None``: the state is unreadable)."""
    if not RunState.exists(root):
        return sorted(p.name for p in (root / "members").iterdir()) if (root / "members").is_dir() else []
    try:
        state = RunState.load(root)
    except MorphnasError:
        return None
    return [r.member_id for r in state.results if r.state == "COMPLETE"]


def run(args: argparse.Namespace) -> int:

    p = Path(args.run_dir).expanduser()
    if not p.exists() and not p.is_absolute() and (Path("runs") / p).exists():
        p = Path("runs") / p
    if p.is_symlink() or not p.is_dir() or not is_run_dir(p) or p.resolve() == Path.cwd().resolve():
        raise CLIError(f"{args.run_dir!r} is not a morphnas run directory (no run_state.json, or config.yaml + "
                       f"study.db); nothing removed")
    root = p.resolve()
    done = finished_members(root)
    if not args.force:
        if done is None:
            raise CLIError(f"run {root}: its run_state.json is unreadable, so what finished is unknown; "
                           f"pass --force to remove it anyway")
        if done:
            raise CLIError(f"run {root} has finished member(s) {', '.join(done[:8])}; pass --force to remove "
                           f"them too, or finish it with: morphnas resume {root}")
    with RunLock(root):
        pass                       # refuses while a driver holds the run
    shutil.rmtree(root)
    print(f"removed {root}")
    return 0
