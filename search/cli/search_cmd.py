"""``morphnas search CONFIG [--set KEY=VALUE ...]``: start a new run in ``runs/<name>/``."""
from __future__ import annotations

import argparse

from .registry import register_command


@register_command("search", position=50)
def add_parser(sub) -> None:
    p = sub.add_parser("search", help="start a search run from a YAML config",
                       description="Train the seed, grow children by function-preserving morphs on Ray Tune, "
                                   "record them in the run's Optuna study, and export the best network.")
    p.add_argument("config", help="YAML config file (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set budget.trials=5 (repeatable)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from morphnas.search.config import load_config
    from morphnas.search.loop import Driver
    cfg = load_config(args.config, args.overrides)
    return Driver(cfg).run(resume=False)
