"""``morphnas resume RUN``: continue a run stopped by Ctrl-C, kill -9, a crashed worker or a reboot.

The run's own ``config.yaml`` (resolved when it started) is the configuration; the run state
says what finished, what was running (re-run once) and where the strategy was.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .registry import register_command


@register_command("resume", position=60)
def add_parser(sub) -> None:
    p = sub.add_parser("resume", help="continue an interrupted search run",
                       description="Continue a search run from its write-ahead state: no finished trial is lost "
                                   "or repeated, trials that were running are re-run once.")
    p.add_argument("run_dir", metavar="RUN", help="the run directory (runs/<name>) or its name")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from morphnas.search.config import load_config
    from morphnas.search.loop import Driver
    from morphnas.search.rundir import RunDir, open_run
    run_dir: RunDir = open_run(args.run_dir)
    cfg = load_config(run_dir.config_path)
    # The run directory may have moved since it started: trust where it is now.
    if Path(cfg.runs_dir).resolve() / cfg.name != run_dir.root:
        cfg = cfg.replace(runs_dir=str(run_dir.root.parent), name=run_dir.root.name)
    return Driver(cfg, run_dir).run(resume=True)
