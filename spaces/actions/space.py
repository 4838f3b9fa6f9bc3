"""The action space: which morphs a search may make, where, and at what cost.

An :class:`ActionSpace` is the ``actions:`` part of a search config::

    actions:
      ops:                                  # enabled ops; per op: parameter domains
        morph_block: {k1: [1, 3], k2: [1, 3], branches: [1, 2]}
        deepen: {k1: [1, 3], k2: 3, weight: 2}   # a scalar is fixed; weight = sampling weight
        widen: {factor: [1.5, 2.0], where: {stages: [2, 3]}}
        split_identity: {}
      where: any                            # or {stages: [..], blocks: [patterns], sites: [..], exclude: [..]}
      actions_per_child: [1, 2]             # an int or [min, max]
      constraints: {max_params: 1.0e6, max_params_mb: 4, max_flops: 6.0e7, max_depth: 60}
      max_tries: 50

A parameter domain is a scalar (fixed), a list (choices) or ``{low, high}`` (an int or float
range). ``ops`` may also be a plain list of op names (every parameter at its default). A key
``"package.module:ClassName"`` enables a user's own op (loaded and registered by
:func:`~morphnas.morphism.ops.load_op`); actions name it by its registered name, and
:attr:`ActionSpace.op_paths` lists the paths a worker process loads (``load_ops``) before it makes children.

This class is the one entry point; the work is done by single-purpose modules: parsing
(:mod:`.action_parse`), costs and sites (:mod:`.action_core`), random sampling
(:mod:`.action_sampling`) and the fixed-domain parameters of samplers such as Optuna's
(:mod:`.action_domains`).
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from morphnas.morphism.graph import Network
from morphnas.morphism.ops import OpRegistry, default_registry
from morphnas.spaces.actions import domains as action_domains
from morphnas.spaces.actions import sampling as action_sampling
from morphnas.spaces.actions.core import SpaceCore
from morphnas.spaces.actions.parse import parse_actions, resolved_config
from morphnas.spaces.actions.types import Action, Domain, Sample


class ActionSpace(SpaceCore):
    """Enabled ops + domains + constraints; samples valid actions for a network from an explicit rng."""

    # user ops enabled by import path: registered name -> "package.module:ClassName" (set by from_dict)
    _user_op_paths: Mapping[str, str] = MappingProxyType({})

    @classmethod
    def from_dict(cls, d: Any, registry: OpRegistry | None = None, path: str = "actions") -> "ActionSpace":
        """Build from the ``actions:`` mapping of a search config; errors name the key and a close match."""
        p = parse_actions(d, registry, path)
        space = cls(p.ops, p.actions_per_child, p.constraints, p.max_tries, registry or default_registry())
        space._user_op_paths = MappingProxyType(dict(p.op_paths))
        return space

    @property
    def op_paths(self) -> tuple[str, ...]:
        """The import paths of the user ops this space enables, in config order: what a worker process
        passes to :func:`~morphnas.morphism.ops.load_ops` before it makes children (actions name
        those ops by their registered names)."""
        return tuple(self._user_op_paths.values())

    def to_dict(self) -> dict[str, Any]:
        """The resolved config (what a run directory's config.yaml records); user ops keyed by import path."""
        return resolved_config(self.ops, self.actions_per_child, self.constraints, self.max_tries,
                               dict(self._user_op_paths))

    def sample(self, net: Network, rng: np.random.Generator) -> list[Action]:
        """Valid actions for ``net`` (each one applied and checked); see :meth:`sample_proposal`."""
        return list(self.sample_proposal(net, rng).actions)

    def sample_proposal(self, net: Network, rng: np.random.Generator) -> Sample:
        """Draw ``actions_per_child`` valid actions (see :func:`.action_sampling.sample_proposal`)."""
        return action_sampling.sample_proposal(self, net, rng)

    def param_domains(self, seed_net: Network) -> dict[str, Domain]:
        """Sampler-facing parameters with fixed domains (see :func:`.action_domains.param_domains`)."""
        return action_domains.param_domains(self, seed_net)

    def actions_from_params(self, net: Network, params: dict[str, Any], seed: int = 0) -> Sample:
        """The actions fixed-domain ``params`` mean for ``net`` (see :func:`.action_domains.actions_from_params`)."""
        return action_domains.actions_from_params(self, net, params, seed)
