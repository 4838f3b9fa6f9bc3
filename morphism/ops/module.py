"""Op ``module``: morph one conv into any module described by a YAML/JSON file (paper §3.5–3.6).

Site: a conv edge (any stride and padding; groups 1, dilation 1, odd kernel). The module's
effective kernel must be at least the conv's. Params: ``module`` (path to a YAML/JSON module file,
a built-in module name such as ``D`` or ``1c1``, or inline JSON),
``widen`` (widen free internal blobs to the capacity an exact solve needs; default on, function-
preserving), ``time_budget`` (seconds for the fixed-width iterative fallback), ``tol`` (largest
relative filter residual accepted; above 1e-10 the record's mode is ``approximate``).
The record's ``error`` is the relative filter residual, ``notes`` the verdict (simple morphable or
not), the morph sequence found, the method, and the internal widths.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import cast

import numpy as np

from ..errors import NotApplicable, SpecError
from ..graph import Network
from ..layers import Conv2d
from ..module import as_module_spec, check_conv, morph_to_module
from .base import MorphOp, zero_fraction


class ModuleOp(MorphOp):
    name = "module"
    site_kind = "edge"
    description = "morph a conv into any single-source, single-sink module of convs (from a module file)"

    @dataclass(frozen=True)
    class Params:
        module: str = ""
        widen: bool = True
        time_budget: float = 20.0
        tol: float = 1e-6

        def __post_init__(self):
            if self.time_budget < 0:
                raise ValueError(f"time_budget must be >= 0 seconds, got {self.time_budget}")
            if not 0 < self.tol < 1:
                raise ValueError(f"tol must satisfy 0 < tol < 1, got {self.tol}")

    def example_params(self, net: Network, site: str) -> dict:
        """A cheap module that fits any conv: the conv's own kernel beside a 1x1 -> BN -> PReLU ->
        1x1 -> BN branch (the paper's morph_1c1 shape; exercises the pad-once crop)."""
        k = cast(Conv2d, net.edge(site).layer).kernel_size   # sites are convs
        mod = {"name": f"{k}x{k}+1c1", "edges": [
            {"name": "main", "from": "s", "to": "t", "kernel": k},
            {"name": "conv1", "from": "s", "to": "m", "kernel": 1, "bn": True, "act": "prelu"},
            {"name": "conv2", "from": "m", "to": "t", "kernel": 1, "bn": True}]}
        return {"module": json.dumps(mod, separators=(",", ":"))}

    def sites(self, net: Network) -> list[str]:
        out = []
        for e in net.edges():
            if isinstance(e.layer, Conv2d):
                try:
                    check_conv(net, e.name)
                except NotApplicable:
                    continue
                out.append(e.name)
        return sorted(out)

    def check(self, net: Network, site: str, params) -> None:
        conv = check_conv(net, site)
        if not params.module:
            raise SpecError("op module needs a module: param module=<path to .yaml/.json, built-in name "
                            "such as D or 1c1, or inline JSON> (CLI: --module FILE); examples in configs/modules/")
        spec = as_module_spec(params.module)
        if spec.effective_kernel < conv.kernel_size:
            raise NotApplicable(f"module {spec.name!r} has effective kernel {spec.effective_kernel}, smaller than "
                                f"conv {site!r}'s {conv.kernel_size}; it cannot compute the conv")

    def _apply(self, net: Network, site: str, params, rng: np.random.Generator):
        seed = int(rng.integers(2 ** 31))
        child, sol, new = morph_to_module(net, site, params.module, widen=params.widen,
                                          time_budget=params.time_budget, tol=params.tol, seed=seed)
        weights = [child.params[n]["weight"] for n in new if child.edge(n).layer.kind == "conv2d"]
        return child, {"mode": sol.mode, "zero_fraction": zero_fraction(*weights), "error": sol.residual,
                       "new_edges": new, "removed_edges": (site,), "notes": sol.notes()}


OP = ModuleOp()
