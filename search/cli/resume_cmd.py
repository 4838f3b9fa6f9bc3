"""``morphnas resume RUN [--set KEY=VALUE ...] [--verbose]``: continue a run stopped by Ctrl-C, kill -9,
a crashed worker, a reboot, or a failure that a config change fixes.

The rules of what ``--set`` may change live in :mod:`morphnas.search.run.resume`.
"""
from __future__ import annotations

import argparse

from morphnas.search.api import resume
from morphnas.search.cli.registry import register_command
from morphnas.search.run.resume import BEFORE_SEED, RESUMABLE


@register_command("resume", position=60)
def add_parser(sub) -> None:
    p = sub.add_parser("resume", help="continue an interrupted search run",
                       description="Continue a search run from its write-ahead state: no finished trial is lost "
                                   "or repeated, trials that were running are re-run once.")
    p.add_argument("run_dir", metavar="RUN", help="the run directory (runs/<name>) or its name")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change a key that does not change what finished members mean, e.g. --set final.lr=0.001 "
                        f"(allowed: {', '.join(k + ('*' if k.endswith('.') else '') for k in RESUMABLE + BEFORE_SEED)})")
    p.add_argument("--verbose", action="store_true", help="show Ray's and Optuna's own log messages")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return resume(args.run_dir, overrides=args.overrides, verbose=args.verbose).exit_code
