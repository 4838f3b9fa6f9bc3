"""The action space's public names in one place (``from morphnas.spaces.actions import ActionSpace``).

An :class:`Action` is one morph (op, concrete site, params, seed) — what proposals carry and
workers replay; an :class:`ActionSpace` is the ``actions:`` part of a search config. The code lives
in single-purpose modules: value types (:mod:`.action_types`), parsing (:mod:`.action_parse`),
costs and sites (:mod:`.action_core`), sampling (:mod:`.action_sampling`), fixed sampler domains
(:mod:`.action_domains`) and the class tying them together (:mod:`.action_space`).
"""
from __future__ import annotations

from morphnas.spaces.actions.parse import parse_actions, parse_domain
from morphnas.spaces.actions.space import ActionSpace
from morphnas.spaces.actions.types import Action, Constraints, Domain, OpSpace, Sample
from morphnas.spaces.errors import ActionSpaceError, ConstraintViolation, NoValidAction

__all__ = ["Action", "ActionSpace", "ActionSpaceError", "ConstraintViolation", "Constraints", "Domain",
           "NoValidAction", "OpSpace", "Sample", "parse_actions", "parse_domain"]
