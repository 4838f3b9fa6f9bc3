"""The action space's public names in one place (``from morphnas.spaces.actions import ActionSpace``).

An :class:`Action` is one morph (op, concrete site, params, seed) — what proposals carry and
workers replay; an :class:`ActionSpace` is the ``actions:`` part of a search config. The code lives
in single-purpose modules: value types (:mod:`.action_types`), parsing (:mod:`.action_parse`),
costs and sites (:mod:`.action_core`), sampling (:mod:`.action_sampling`), fixed sampler domains
(:mod:`.action_domains`) and the class tying them together (:mod:`.action_space`).
"""
from __future__ import annotations

from .action_parse import parse_actions, parse_domain
from .action_space import ActionSpace
from .action_types import Action, Constraints, Domain, OpSpace, Sample
from .errors import ActionSpaceError, ConstraintViolation, NoValidAction

__all__ = ["Action", "ActionSpace", "ActionSpaceError", "ConstraintViolation", "Constraints", "Domain",
           "NoValidAction", "OpSpace", "Sample", "parse_actions", "parse_domain"]
