"""Growing one lineage: train a single network on the seed's warm-restart schedule and grow it at restarts.

Where the other strategies spend most of their compute on siblings that are thrown away, ``grow``
puts it into the one network that is kept (the way Net2Net, AutoGrow and staged training grow):

* the seed trains its first SGDR cycle(s); every child is the next cycle of the same schedule,
  continuing from its parent's weights *and optimizer state* (momentum mapped through the morph,
  zero for new parameters), at the schedule's own learning rate: nothing restarts but the cycle;
* at the first ``growth_points`` restarts the child is grown: ``candidates`` random morphs of the
  current network (each of the action space's ``actions_per_child`` morphs, within ``max_params``
  and ``max_flops``) are scored on the worker without training them to the end (``scoring``:
  ``first``, the default, takes a random one; ``rung`` and ``gradient``: see
  :mod:`morphnas.search.trial.grow`), and the best
  continues; later cycles only train on;
* one trial at a time: each cycle waits for its parent.

A failed cycle is proposed again from the same parent (new candidates), at most ``retries`` times
in a row. The budget (``budget.trials`` cycles, ``budget.flops``, ``budget.wall_time``) ends it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from morphnas.morphism.schema import rule
from morphnas.search.state.population import Population
from morphnas.search.state.records import Proposal, TrialResult
from morphnas.search.strategies.base import Strategy, register_strategy


@register_strategy
class Grow(Strategy):
    name = "grow"
    lineage: ClassVar[bool] = True       # children continue the seed's schedule (the config checks it)

    @dataclass(frozen=True)
    class Params:
        candidates: int = field(default=4, metadata=rule(ge=1))      # morphs scored at each growth point
        # first (a random candidate) by default: scoring cost more than it chose better in every regime
        # of bench/equal_flops.py (BENCHMARKS.md, "Growing one lineage")
        scoring: Literal["rung", "gradient", "first"] = "first"
        rung_fraction: float = field(default=0.25, metadata=rule(gt=0, le=1))   # of an epoch, per candidate
        grad_batches: int = field(default=2, metadata=rule(ge=1))    # training batches per gradient score
        growth_points: int | None = field(default=3, metadata=rule(ge=0))   # restarts that grow (None: all)
        max_params: int | None = field(default=None, metadata=rule(ge=1))   # grow no further than this
        max_flops: int | None = field(default=None, metadata=rule(ge=1))    # forward multiply-adds per example
        retries: int = field(default=2, metadata=rule(ge=0))

    def __init__(self, params: Any, mutator: Any, seed: int):
        super().__init__(params, mutator, seed)
        self.head: str | None = None         # the lineage's current network
        self.cycle = 0                       # cycles trained after the seed
        self.grown = 0                       # growth points used
        self.in_flight: str | None = None    # proposal id of the running cycle
        self.failures = 0                    # failed cycles in a row

    def propose(self, population: Population) -> Proposal | None:
        if self.in_flight is not None or self.failures > self.p.retries:
            return None
        if self.head is None:
            if "m0" not in population:
                return None
            self.head = "m0"
        candidates = self._candidates() if self._grows() else ()
        self.proposed += 1
        pid = f"p{self.proposed}"
        self.in_flight = pid
        return Proposal(self.head, (), {}, pid, candidates=candidates,
                        scoring={"method": self.p.scoring, "rung_fraction": self.p.rung_fraction,
                                 "grad_batches": self.p.grad_batches},
                        train={"seed_cycle": self.cycle + 1})

    def _grows(self) -> bool:
        return self.p.growth_points is None or self.grown < self.p.growth_points

    def _candidates(self) -> tuple:
        """Up to ``candidates`` distinct random morph sequences of the head within the size bounds."""
        assert self.head is not None
        out: list = []
        seen: set = set()
        for _ in range(4 * self.p.candidates):
            if len(out) >= self.p.candidates:
                break
            got = self.mutator.random_actions(self.head, self.rng)
            if got is None:
                break
            actions = tuple(got[0])
            key = tuple((a.op, a.site, tuple(sorted(a.params.items()))) for a in actions)
            if key in seen:
                continue
            seen.add(key)
            cost = self.mutator.cost(self.head, actions)
            if self.p.max_params is not None and cost["params"] > self.p.max_params:
                continue
            if self.p.max_flops is not None and cost["flops"] > self.p.max_flops:
                continue
            out.append(actions)
        return tuple(out)

    def observe(self, result: TrialResult, population: Population) -> None:
        self.observed += 1
        if result.extra.get("proposal_id") != self.in_flight:
            return
        self.in_flight = None
        if result.state == "COMPLETE":
            self.head = result.member_id
            self.cycle += 1
            self.failures = 0
            if result.extra.get("grow") is not None or result.actions:
                self.grown += 1
        else:
            self.failures += 1

    def _state(self) -> dict[str, Any]:
        return {"head": self.head, "cycle": self.cycle, "grown": self.grown, "in_flight": self.in_flight,
                "failures": self.failures}

    def _load(self, s: dict[str, Any]) -> None:
        self.head, self.cycle, self.grown = s["head"], int(s["cycle"]), int(s["grown"])
        self.in_flight, self.failures = s["in_flight"], int(s["failures"])
