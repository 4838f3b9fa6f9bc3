"""The ``morphnas`` command line: one module per command under ``search/cli/``.

Each command module defines ``add_parser(subparsers)`` (registering its arguments and
``set_defaults(run=...)``). User mistakes raise :class:`MorphnasError` (or ``CLIError``) and end as
one line on stderr with exit code 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from morphnas.morphism.errors import MorphnasError

# Command modules in the order ``morphnas --help`` lists them; missing ones are not yet built.
COMMANDS = ("describe", "new", "morph", "verify", "search", "resume", "leaderboard", "dashboard", "export")


class CLIError(MorphnasError):
    """A bad command-line argument (the message names it and the fix)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="morphnas", description="Neural architecture search by function-preserving network morphism.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"{__name__}.{name}_cmd")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{name}_cmd":
                continue
            raise
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.run(args)
    except MorphnasError as e:
        print(f"morphnas {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"morphnas {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``morphnas ... | head``): not an error of ours, and Python would
        # otherwise complain again while flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
