"""The command registry of ``morphnas``: each ``search/cli/<name>_cmd.py`` registers its subcommand.

A command module decorates its ``add_parser(subparsers)`` (which adds its arguments and
``set_defaults(run=...)``) with :func:`register_command`; ``cli/__init__.py`` imports every
``*_cmd`` module and builds the parser from what registered, in ``position`` order (the order
``morphnas --help`` lists them). Kept apart from ``cli/__init__`` so command modules import this
small module, never the package that imports them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from morphnas.morphism.errors import MorphnasError

AddParser = Callable[[Any], None]


class CLIError(MorphnasError):
    """A bad command-line argument (the message names it and the fix)."""


@dataclass(frozen=True)
class Command:
    name: str
    position: int
    add_parser: AddParser

    @property
    def module(self) -> str:
        return self.add_parser.__module__


COMMANDS: dict[str, Command] = {}


def register_command(name: str, position: int) -> Callable[[AddParser], AddParser]:
    """Decorator of a command module's ``add_parser``: ``morphnas <name>`` exists."""
    def deco(add_parser: AddParser) -> AddParser:
        other = COMMANDS.get(name)
        if other is not None and other.module != add_parser.__module__:
            raise TypeError(f"command {name!r} is registered twice ({other.module} and {add_parser.__module__})")
        COMMANDS[name] = Command(name, position, add_parser)
        return add_parser
    return deco
