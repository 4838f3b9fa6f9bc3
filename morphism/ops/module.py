"""Op ``module``: morph one conv into any module described by a YAML/JSON file (paper §3.5–3.6).

Site: a conv edge (any stride and padding; groups 1, dilation 1, odd kernel). The module's
effective kernel must be at least the conv's. Params: ``module`` (a path to a YAML/JSON module
file, a built-in module name such as ``D`` or ``1c1``, inline JSON, or the module's JSON object;
parsed at once into that JSON object, which is what the record stores, so a record replays without
the file; default: the conv's own kernel beside a 1x1 -> BN -> PReLU -> 1x1 -> BN branch, which fits
every site), ``widen`` (widen free internal blobs to the capacity an exact solve needs; default on,
function-preserving), ``iterations`` (step budget of the fixed-width iterative fallback: an
iteration count, not seconds, so a replay is bit for bit), ``tol`` (largest relative filter
residual accepted; above 1e-10 the record's mode is ``approximate``).
Every refusal of a site is :class:`NotApplicable`, including a module whose joint solve would be
too large for a few seconds (the message names the size and the limit).
The record's ``error`` is the relative filter residual, ``notes`` the verdict (simple morphable or
not), the morph sequence found, the method, and the internal widths.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from ..errors import NotApplicable
from ..graph import Network
from ..layers import Conv2d
from ..module import as_module_spec, check_conv, morph_to_module
from ..module.reduce import reduce_module
from ..module.solve import ITERATIONS, check_solve_size, initial_widths
from ..module.spec import ModuleSpec
from ..schema import rule
from ._sites import join_problem, require_sum_join
from .base import MorphOp, register_op, registered, zero_fraction

MAX_ITERATIONS = 100_000


def _module_json(value: Any, key: str) -> Any:
    """A ``module`` parameter (path, built-in name, inline JSON or mapping) as its validated JSON object."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, (str, dict)):
        return value   # the type check names it
    return as_module_spec(value).to_json()


def default_module(kernel: int) -> dict[str, Any]:
    """The default module of a ``kernel``-sized conv: the conv's own kernel beside a 1x1 -> BN ->
    PReLU -> 1x1 -> BN branch (the paper's morph_1c1 shape; simple morphable, fits any conv)."""
    return {"name": f"{kernel}x{kernel}+1c1", "edges": [
        {"name": "main", "from": "s", "to": "t", "kernel": kernel},
        {"name": "conv1", "from": "s", "to": "m", "kernel": 1, "bn": True, "act": "prelu"},
        {"name": "conv2", "from": "m", "to": "t", "kernel": 1, "bn": True}]}


@register_op
class ModuleOp(MorphOp):
    name = "module"
    site_kind = "edge"
    description = "morph a conv into any single-source, single-sink module of convs (from a module file)"
    order = 110

    @dataclass(frozen=True)
    class Params:
        # the module's JSON object (a path, built-in name or inline JSON is read into it); None: default_module
        module: dict[str, Any] | None = field(default=None, metadata=rule(parse=_module_json))
        widen: bool = True
        # step budget of the fixed-width iterative fallback
        iterations: int = field(default=ITERATIONS, metadata=rule(ge=0, le=MAX_ITERATIONS))
        tol: float = field(default=1e-6, metadata=rule(gt=0, lt=1, fix="; choose 0 < tol < 1"))

    def example_params(self, net: Network, site: str) -> dict[str, Any]:
        """The defaults fit every site (kept for callers of the conformance protocol)."""
        return {}

    def sites(self, net: Network) -> list[str]:
        out = []
        for e in net.edges():
            if isinstance(e.layer, Conv2d):
                try:
                    check_conv(net, e.name)
                except NotApplicable:
                    continue
                if join_problem(net, e):
                    continue
                out.append(e.name)
        return sorted(out)

    def _spec(self, conv: Conv2d, params: Any) -> ModuleSpec:
        return as_module_spec(params.module if params.module is not None else default_module(conv.kernel_size))

    def check(self, net: Network, site: str, params: Any) -> None:
        conv = check_conv(net, site)
        require_sum_join(net, net.edge(site), self.name)
        spec = self._spec(conv, params)
        if spec.effective_kernel < conv.kernel_size:
            raise NotApplicable(f"module {spec.name!r} has effective kernel {spec.effective_kernel}, smaller than "
                                f"conv {site!r}'s {conv.kernel_size}; it cannot compute the conv")
        widths = initial_widths(spec, conv.in_channels, conv.out_channels)
        check_solve_size(spec, reduce_module(spec), widths, conv.in_channels, conv.out_channels)

    def _apply(self, net: Network, site: str, params: Any, rng: np.random.Generator):
        seed = int(rng.integers(2 ** 31))
        spec = self._spec(cast(Conv2d, net.edge(site).layer), params)   # check() passed: a conv
        child, sol, new = morph_to_module(net, site, spec, widen=params.widen, iterations=params.iterations,
                                          tol=params.tol, seed=seed)
        weights = [child.params[n]["weight"] for n in new if child.edge(n).layer.kind == "conv2d"]
        return child, {"mode": sol.mode, "zero_fraction": zero_fraction(*weights), "error": sol.residual,
                       "new_edges": new, "removed_edges": (site,), "notes": sol.notes()}


OP = registered(ModuleOp)   # the registered instance
