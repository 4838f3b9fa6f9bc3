"""Making a child: the one function that turns a parent and a proposal into a verified child network.

:func:`make_child` applies the proposal's morphs to the parent, gives the identity batch norms they
inserted the statistics of a training batch, and measures how far the child's output is from the
parent's. The worker (:mod:`.worker`), the benchmarks and any in-process runner call it, so what a
benchmark measures is what a search does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from morphnas.morphism.errors import PreservationError
from morphnas.morphism.graph import Network
from morphnas.morphism.identity import calibrate_identity_bns
from morphnas.morphism.ops import apply_op
from morphnas.morphism.verify import output_diff
from morphnas.search.data.core import Data
from morphnas.spaces.actions import Action

CALIBRATION_BATCH = 256     # training images whose statistics the inserted identity BNs get
VERIFY_BATCH = 64           # validation images the preservation check runs on


@dataclass(frozen=True)
class Child:
    """A morphed network with what made it: each op's record (JSON) and the measured output error."""

    network: Network
    records: tuple[dict[str, Any], ...]
    preservation_error: float           # relative output error against the parent (verify_dtype)
    approximate: bool                   # a shrinking op was applied: the error is reported, not bounded

    @property
    def new_edges(self) -> tuple[str, ...]:
        return tuple(e for r in self.records for e in r.get("new_edges", ()))


def make_child(parent: Network, actions: Sequence[Action], data: Data, *, seed: int,
               tolerance: float = 1e-4, verify_dtype: str = "float64") -> Child:
    """Apply ``actions`` to ``parent`` in order and verify the result on ``data``'s validation images.

    Inserted identity BNs hold made-up statistics: exact in eval mode, but in train mode they
    normalise by batch statistics and bump the loss in the first steps, so they get the statistics
    of ``CALIBRATION_BATCH`` training images drawn with ``seed`` (still exact in eval mode).
    An exact morph whose child misses ``tolerance`` (or whose error is NaN) raises
    :class:`PreservationError` naming the ops; an approximate (shrinking) op reports its own error.
    """
    net = parent
    records: list[dict[str, Any]] = []
    for a in actions:
        net, rec = apply_op(net, a.op, a.site, a.params, a.seed)
        records.append(rec.to_json())
    new_edges = [e for r in records for e in r.get("new_edges", ())]
    if new_edges:
        g = torch.Generator().manual_seed(int(seed))
        idx = torch.randperm(len(data.train), generator=g)[:CALIBRATION_BATCH]
        net = calibrate_identity_bns(net, new_edges, data.train.inputs(idx))
    dtype = torch.float64 if verify_dtype == "float64" else torch.float32
    err = output_diff(parent, net, x=data.val.inputs(torch.arange(min(VERIFY_BATCH, len(data.val)))), dtype=dtype).rel_err
    approximate = any(r.get("mode") == "approximate" for r in records)
    if not err <= tolerance and not (approximate and math.isfinite(err)):   # also catches NaN
        ops = ", ".join(f"{r['op']}@{r['site']}" for r in records)
        raise PreservationError(f"the child does not compute its parent's function: relative output error "
                                f"{err:.3g} > tolerance {tolerance:g} after {ops}")
    return Child(net, tuple(records), err, approximate)
