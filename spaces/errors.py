"""The errors of the search space, in one module every other module of ``spaces/`` may import.

Why a module of its own: the action-space parser, the site filters and the samplers all raise
them, and keeping them apart from any of those modules is what lets each import the others one
way only (no import cycles).
"""
from __future__ import annotations

from morphnas.morphism.errors import MorphnasError, NotApplicable, SpecError


class ActionSpaceError(SpecError):
    """The ``actions:`` config is invalid; the message names the key, the value and the fix."""


class ConstraintViolation(MorphnasError):
    """A network (or a proposal's child) exceeds the action space's constraints."""


class NoValidAction(NotApplicable):
    """No action of the space could be applied to the network within ``max_tries`` draws."""
