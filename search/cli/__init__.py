"""The ``morphnas`` command line: one module per command under ``search/cli/``.

Each command module ``<name>_cmd.py`` registers its ``add_parser(subparsers)`` (its arguments and
``set_defaults(run=...)``) with :func:`.registry.register_command`; every ``*_cmd`` module is
imported here, and one that registers nothing is an error naming the file (no silent skips). User mistakes raise :class:`MorphnasError` (or ``CLIError``) and end as
one line on stderr with exit code 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import warnings

from morphnas.morphism.errors import MorphnasError
from morphnas.search.cli.registry import COMMANDS, CLIError, Command, register_command

__all__ = ["CLIError", "build_parser", "discover", "main", "register_command"]


def discover(package: str = __name__, path: list[str] | None = None) -> list[Command]:
    """Import every ``*_cmd`` module of ``package``; each must register a command. Returns the
    commands in ``--help`` order."""
    for info in sorted(pkgutil.iter_modules(path if path is not None else __path__), key=lambda m: m.name):
        if not info.name.endswith("_cmd"):
            continue
        mod = importlib.import_module(f"{package}.{info.name}")
        if not any(c.module == mod.__name__ for c in COMMANDS.values()):
            raise CLIError(f"command module {info.name}.py ({mod.__name__}) registers no command; decorate its "
                           f"add_parser with @register_command(name, position) or rename the file")
    return sorted(COMMANDS.values(), key=lambda c: (c.position, c.name))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="morphnas", description="Neural architecture search by function-preserving network morphism.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in discover():
        command.add_parser(sub)
    return parser


_PACKAGE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_default_format = warnings.formatwarning


def one_line_warnings(message, category, filename, lineno, line=None) -> str:
    """Our own warnings as one line (``warning: ...``); Python's default adds the source line that
    raised it, which tells a user nothing. Other packages' warnings keep their usual form."""
    if os.path.abspath(filename).startswith(_PACKAGE + os.sep) and issubclass(category, UserWarning):
        return f"warning: {message}\n"
    return _default_format(message, category, filename, lineno, line)


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = one_line_warnings
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
