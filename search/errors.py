"""The user-facing errors of the search package, in a module of their own.

``config`` (which checks the ``strategy:`` section through the strategies) and ``strategies``
(whose knob errors are config errors) both need them; keeping them here means neither imports
the other for an exception class, so the two modules form no import cycle.
"""
from __future__ import annotations

from morphnas.morphism.errors import MorphnasError


class ConfigError(MorphnasError):
    """A bad run configuration: the message names the key, the value and the fix."""


class StrategyError(ConfigError):
    """A bad strategy name or knob in the config (names the key and the close match)."""


class LeaderboardError(MorphnasError):
    """A study or record that does not fit the leaderboard (wrong objectives, bad parameter, artifact)."""
