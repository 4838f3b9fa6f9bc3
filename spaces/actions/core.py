"""The core of an action space: its enabled ops and bounds, the cost of a proposal, and the sites
each op may use.

Everything the samplers (:mod:`.action_sampling`, :mod:`.action_domains`) need and nothing that
needs them, so they build on this class while :class:`~.action_space.ActionSpace` adds parsing and
sampling on top (each module imports the others one way only).
"""
from __future__ import annotations

from typing import Any, Iterable

from morphnas.morphism.errors import did_you_mean
from morphnas.morphism.graph import Network
from morphnas.morphism.ops import MorphOp, OpRegistry, apply_op, default_registry
from morphnas.spaces.actions.sites import SiteInfo, site_infos
from morphnas.spaces.actions.types import Action, Constraints, OpSpace
from morphnas.spaces.counting import Counts, count
from morphnas.spaces.errors import ActionSpaceError, ConstraintViolation


class SpaceCore:
    """Enabled ops + domains + constraints; costs and admitted sites of proposals."""

    def __init__(self, ops: list[OpSpace], actions_per_child: tuple[int, int] = (1, 1),
                 constraints: Constraints = Constraints(), max_tries: int = 50,
                 registry: OpRegistry | None = None):
        if not ops:
            raise ActionSpaceError("config key 'actions.ops' must enable at least one morph op")
        self.ops = list(ops)
        self.actions_per_child = actions_per_child
        self.constraints = constraints
        self.max_tries = max_tries
        self._registry = registry

    @property
    def op_names(self) -> list[str]:
        """The enabled ops in config order: the fixed categorical domain of ``a<i>_op``."""
        return [o.op for o in self.ops]

    def op_space(self, name: str) -> OpSpace | None:
        """The enabled op called ``name`` (``None`` if it is not enabled)."""
        return next((o for o in self.ops if o.op == name), None)

    def _op(self, name: str) -> MorphOp:
        return (self._registry or default_registry()).get(name)

    # ------------------------------------------------------------------ costs
    def estimate(self, net: Network, actions: Iterable[Action | dict[str, Any]] = ()) -> tuple[Network, Counts]:
        """Apply ``actions`` to ``net`` (no training) and count the child."""
        for a in actions:
            a = a if isinstance(a, Action) else Action.from_json(a)
            net, _ = apply_op(net, self._op(a.op), a.site, a.params, a.seed)
        return net, count(net)

    def violations(self, net: Network, counts: Counts | None = None) -> list[str]:
        """Every constraint ``net`` breaks (empty when it fits)."""
        return self.constraints.violations(counts or count(net))

    def cost_ok(self, net: Network, actions: Iterable[Action | dict[str, Any]] = ()) -> bool:
        """Whether ``net`` with ``actions`` applied meets the constraints (cheap: applies and counts)."""
        child, counts = self.estimate(net, actions)
        return not self.violations(child, counts)

    def check(self, net: Network, actions: Iterable[Action | dict[str, Any]] = ()) -> Counts:
        """Counts of the child, or :class:`ConstraintViolation` naming every bound it breaks."""
        child, counts = self.estimate(net, actions)
        v = self.violations(child, counts)
        if v:
            raise ConstraintViolation("the proposal breaks the constraints: " + "; ".join(v))
        return counts

    # ------------------------------------------------------------------ sites
    def sites(self, net: Network, op: str) -> list[SiteInfo]:
        """The sites of ``op`` in ``net`` its ``where`` admits, in network order."""
        spec = self.op_space(op)
        if spec is None:
            raise ActionSpaceError(f"op {op!r} is not enabled in this action space"
                                   f"{did_you_mean(op, self.op_names, known='enabled')}")
        mop = self._op(op)
        return [i for i in site_infos(net, mop.sites(net), mop.site_kind) if spec.where.admits(i)]
