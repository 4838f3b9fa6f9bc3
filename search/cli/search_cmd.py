"""``morphnas search CONFIG [--set KEY=VALUE ...] [--verbose]``: start a new run in ``runs/<name>/``.

Everything that can be checked before the run exists is (:mod:`morphnas.search.run.preflight`), so a bad
config leaves nothing on disk; ``--verbose`` keeps Ray's and Optuna's own log lines.
"""
from __future__ import annotations

import argparse

from morphnas.search.cli.registry import register_command
from morphnas.search.config import load_config


@register_command("search", position=50)
def add_parser(sub) -> None:
    p = sub.add_parser("search", help="start a search run from a YAML config",
                       description="Train the seed, grow children by function-preserving morphs on Ray Tune, "
                                   "record them in the run's Optuna study, and export the best network.")
    p.add_argument("config", help="YAML config file (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set budget.trials=5 (repeatable)")
    p.add_argument("--verbose", action="store_true", help="show Ray's and Optuna's own log messages")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from morphnas.search.run.driver import Driver  # lazy: Ray and Optuna, only when a search runs
    from morphnas.search.run.preflight import preflight  # lazy: see Driver
    cfg = load_config(args.config, args.overrides)
    preflight(cfg)
    return Driver(cfg, verbose=args.verbose).run(resume=False)
