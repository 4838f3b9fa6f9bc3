"""Morph one conv into any module (a single-source, single-sink DAG of convs), paper §3.3–3.6.

* :mod:`.spec` — the YAML/JSON module description and its validation;
* :mod:`.reduce` — Algorithm 1 (reverse TYPE-I / TYPE-II reduction, simple-morphable verdict);
* :mod:`.capacity`, :mod:`.linalg`, :mod:`.factor`, :mod:`.solve`, :mod:`.iterative` — the filters:
  cut solves, widening, atomic splits, the fixed-width fallback;
* :mod:`.build` — the IR edges, executed pad-once.

:func:`morph_to_module` is the Python call; the op ``module`` (``morphism/ops/module.py``) wraps it.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import NotApplicable, did_you_mean
from ..graph import Network
from ..layers import Conv2d
from .reduce import Reduction, is_simple_morphable, reduce_module
from .build import build_module
from .library import as_module_spec
from .solve import ITERATIONS, ModuleSolution, solve_module
from .spec import ModuleSpec, ModuleSpecError, load_module_spec, parse_module_spec


def check_conv(net: Network, edge: str) -> Conv2d:
    """The conv at ``edge``, or :class:`NotApplicable` saying why a module cannot replace it."""
    if not isinstance(edge, str) or not net.has_edge(edge):
        raise NotApplicable(f"no edge named {edge!r} in the network"
                            f"{did_you_mean(edge, net.edge_names(), n=3, known=None)}; the module op replaces a conv")
    layer = net.edge(edge).layer
    if not isinstance(layer, Conv2d):
        raise NotApplicable(f"edge {edge!r} is a {layer.kind}, not a conv2d; the module op replaces a conv")
    if layer.groups != 1:
        raise NotApplicable(f"conv {edge!r} has groups={layer.groups}; only dense convs (groups=1) can be "
                            "morphed into a module")
    if layer.dilation != 1:
        raise NotApplicable(f"conv {edge!r} has dilation={layer.dilation}; only dilation 1 is supported")
    if layer.kernel_size % 2 == 0:
        raise NotApplicable(f"conv {edge!r} has an even kernel ({layer.kernel_size}); filters must be centred "
                            "(odd kernels)")
    return layer


def morph_to_module(net: Network, edge: str, module: ModuleSpec | dict | str | Path, widen: bool = True,
                    iterations: int = ITERATIONS, tol: float = 1e-6, seed: int = 0
                    ) -> tuple[Network, ModuleSolution, tuple[str, ...]]:
    """Replace conv ``edge`` of ``net`` by ``module``, preserving the network's function.

    Returns the new network (``net`` is not modified), the solution (residual, method, widths, morph
    sequence) and the names of the new edges. Raises :class:`NotApplicable` for an unsupported conv,
    a module whose effective kernel is smaller than the conv's, or fixed widths that no solver makes
    exact within ``tol`` (the message gives the residual reached and the widths that would work).
    """
    spec = as_module_spec(module)
    conv = check_conv(net, edge)
    weight = net.params[edge]["weight"]
    if spec.effective_kernel < conv.kernel_size:
        raise NotApplicable(f"module {spec.name!r} has effective kernel {spec.effective_kernel}, smaller than "
                            f"conv {edge!r}'s {conv.kernel_size}; it cannot compute the conv")
    pad = conv.padding + spec.effective_kernel // 2 - conv.kernel_size // 2
    if pad < 0:
        raise NotApplicable(f"conv {edge!r} has padding {conv.padding}; the module needs a non-negative pad")
    sol = solve_module(spec, weight, widen=widen, iterations=iterations, tol=tol, seed=seed)
    child, new = build_module(net, edge, sol)
    return child, sol, new


__all__ = ["ModuleSpec", "ModuleSpecError", "ModuleSolution", "Reduction", "as_module_spec", "check_conv",
           "is_simple_morphable", "load_module_spec", "morph_to_module", "parse_module_spec", "reduce_module",
           "solve_module"]
