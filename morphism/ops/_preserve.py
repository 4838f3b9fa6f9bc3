"""One op at one seeded random site of a network, with its preservation error in float32 and float64.

Why a helper: the ops-on-every-model test (tests/morphism/test_ops_zoo.py) and its benchmark table
(bench/ops_zoo.py, BENCHMARKS.md) must measure the same thing the same way: the site is drawn from
the op's sites by a generator keyed on ``key`` (the model and op names), so a row is reproducible,
and the errors are max relative output errors on one seeded batch (``verify.output_diff``).
"""
from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch

from ..errors import MorphnasError
from ..graph import Network
from ..verify import output_diff
from .base import MorphOp, apply_op


def op_at_random_site(net32: Network, net64: Network, op: MorphOp, key: str, batch: int = 1) -> dict[str, Any]:
    """``{"sites", "site", "mode", "err32", "err64"}`` for ``op`` at a site drawn from ``key``, or with
    ``"error"`` (the one-line reason) when applying it failed; ``site`` is ``None`` when there is none."""
    sites = op.sites(net32)
    row: dict[str, Any] = {"op": op.name, "sites": len(sites), "site": None}
    if not sites:
        return row
    site = sites[int(np.random.default_rng(zlib.crc32(key.encode())).integers(len(sites)))]
    row["site"] = site
    params = op.example_params(net32, site)
    try:
        child64, rec = apply_op(net64, op, site, params, seed=0)
        child32, _ = apply_op(net32, op, site, params, seed=0)
    except MorphnasError as e:
        row["error"] = str(e).splitlines()[0][:200]
        return row
    row["mode"] = rec.mode
    row["err64"] = output_diff(net64, child64, dtype=torch.float64, batch=batch).rel_err
    row["err32"] = output_diff(net32, child32, dtype=torch.float32, batch=batch).rel_err
    return row
