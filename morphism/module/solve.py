"""Filters for every edge of a module so that it computes a given conv filter (paper §3.5–3.6).

:func:`solve_module` = reduce (Algorithm 1), solve the irreducible remainder by one joint linear
least-squares over a *cut* (the edges into the sink, or out of the source) with every other filter
fixed at random, then expand each solved remainder edge by forward atomic morphs
(:class:`~.factor.Realizer`). Internal blobs are widened to the capacity the cut needs unless pinned
(widening is function-preserving: internal blobs are free). With fixed widths and no exact one-shot
cut, an iterative fit runs for at most ``iterations`` steps (an iteration budget, not a wall-clock one,
so a replay reproduces the filters bit for bit); if it does not reach ``tol`` the module is refused
with the residual reached and the widths that make it exact.

Everything is float64; every solve's residual is checked (never trust a solver's silence).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from ..errors import NotApplicable
from ..filters import pad_to
from .capacity import EXACT, cut_counts, min_cut_width, step_up
from .factor import Realizer, Stuck, support_kernel
from .iterative import fit
from .linalg import FilterGraph, GEdge, module_filter, rebalance, rel_residual, solve_sink_cut, solve_source_cut
from .reduce import Leaf, Reduction, reduce_module
from .spec import ModuleSpec


ITERATIONS = 300   # default iteration budget of the fixed-width fallback


@dataclass(frozen=True)
class ModuleSolution:
    """Filters by module edge (float64, ``(C_dst, C_src, k, k)``), blob widths, and how it was found."""

    module: ModuleSpec
    filters: dict[str, torch.Tensor]
    widths: dict[str, int]
    residual: float               # relative filter residual ||G - M(F)|| / ||G||
    method: str
    mode: str                     # exact-dense | exact-sparse | approximate
    simple: bool
    morph_sequence: tuple[str, ...]
    log: tuple[str, ...]
    seconds: float
    widened: tuple[str, ...] = ()
    residual_f32: float = 0.0     # the same after rounding the filters to float32

    def notes(self) -> str:
        seq = "; ".join(self.morph_sequence)
        wid = ", ".join(f"{b}={self.widths[b]}" for b in self.module.blobs)
        return (f"{'simple morphable' if self.simple else 'complex module'}; morph sequence: {seq}; "
                f"method: {self.method}; widths: {wid}"
                + (f" (widened: {', '.join(self.widened)})" if self.widened else "")
                + f"; residual {self.residual:.2e} (float32 filters: {self.residual_f32:.1e})")


def module_graph(module: ModuleSpec, widths: dict[str, int]) -> FilterGraph:
    """The leaf-level filter graph of a module."""
    edges = tuple(GEdge(e.name, e.src, e.dst, e.kernel) for e in module.edges)
    return FilterGraph(module.source, module.sink, (module.source, *module.blobs, module.sink), edges, dict(widths))


def initial_widths(module: ModuleSpec, cin: int, cout: int) -> dict[str, int]:
    """Source ``cin``, sink ``cout``, internal blobs pinned or the conv's output width."""
    pinned = module.pinned_widths()
    w = {module.source: cin, module.sink: cout}
    for b in module.blobs:
        w[b] = pinned[b].resolve(cout) if b in pinned else cout
    return w


def _solve_remainder(real: Realizer, red: Reduction, target: torch.Tensor) -> None:
    """Realise the remainder exactly (widening its cut blobs if allowed) or raise :class:`Stuck`."""
    nodes = {f"r{i}": n for i, n in enumerate(red.remainder)}
    if len(nodes) == 1:
        real.realize(next(iter(nodes.values())), target)
        return
    m = red.module
    blobs = (m.source, *red.remainder_blobs(), m.sink)
    edges = tuple(GEdge(k, n.src, n.dst, n.kernel) for k, n in nodes.items())
    g = FilterGraph(m.source, m.sink, blobs, edges, {b: real.widths[b] for b in blobs})
    tk = support_kernel(target)
    plans = []
    for cut in ("sink", "source"):
        free = cut_counts(g, cut, real.pinned).free if real.widen else ()
        w = min_cut_width(g, cut, free, tk, real.gen, real.pinned) if free else None
        w = real.widened(w) if w else None
        cost = g.with_widths({b: w for b in free}).num_params() if w else g.num_params()
        plans.append((w is None and bool(free), cost, cut, free, w))
    plans.sort(key=lambda p: p[:2])
    best = float("inf")
    for _, _, cut, free, w in plans:
        base = {b: real.widths[b] for b in free}
        for _attempt in range(4 if w else 1):
            if w:
                real.widths.update({b: w for b in free})
            g = g.with_widths({b: real.widths[b] for b in blobs})
            cut_names = {e.name for e in (g.in_edges(m.sink) if cut == "sink" else g.out_edges(m.source))}
            fixed = {k: real.random_node(nodes[k]) for k in nodes if k not in cut_names}
            solved = (solve_sink_cut if cut == "sink" else solve_source_cut)(g, fixed, target)
            res = rel_residual(target, module_filter(g, {**fixed, **solved}))
            best = min(best, res)
            if res <= EXACT:
                widths = ", ".join(f"{b}={real.widths[b]}" for b in free) or "as given"
                real.log.append(f"remainder: {cut} cut ({', '.join(nodes[k].label() for k in sorted(cut_names))}) "
                                f"solved jointly, widths {widths}, residual {res:.1e}")
                for k in sorted(cut_names):
                    real.realize(nodes[k], solved[k])
                return
            if not w:
                break
            w = step_up(w)
        real.widths.update(base)
    raise Stuck(f"no cut of the remainder is exact at these widths (best one-shot residual {best:.2e})", best)


def solve_module(module: ModuleSpec, target: torch.Tensor, widen: bool = True, iterations: int = ITERATIONS,
                 tol: float = 1e-6, seed: int = 0, widths: dict[str, int] | None = None) -> ModuleSolution:
    """Find filters for ``module`` computing the conv filter ``target`` ``(C_out, C_in, k, k)``.

    Raises :class:`NotApplicable` when the module's effective kernel is smaller than ``k`` (no
    module can then compute the conv), when its joint solve would be too large to run in a few
    seconds (:func:`check_solve_size`), or when, with fixed widths, nothing reaches ``tol``.
    """
    start = time.monotonic()
    target = target.detach().to(torch.float64)
    cout, cin, k, _ = target.shape
    kk = module.effective_kernel
    if kk < k:
        raise NotApplicable(f"module {module.name!r} has effective kernel {kk}x{kk}, smaller than the conv's "
                            f"{k}x{k}: it cannot compute the conv; use larger kernels in the module")
    g_k = pad_to(target, kk)
    red = reduce_module(module)
    w0 = widths or initial_widths(module, cin, cout)
    check_solve_size(module, red, w0, cin, cout)
    pinned = set(module.pinned_widths())
    gen = torch.Generator().manual_seed(int(seed))
    best: ModuleSolution | None = None
    # Exact in float64 is not enough: the filters are stored in the network's float32, and a badly
    # conditioned split amplifies that rounding. A little extra width conditions the solves.
    for margin in (MARGINS if widen else (0.0,)):
        sol = _attempt(module, red, target, g_k, w0, pinned, widen, margin, gen, iterations, tol, seed)
        if best is None or sol.residual_f32 < best.residual_f32:
            best = sol
        if sol.residual_f32 <= F32_OK or sol.mode == "approximate":
            break
    if best is None:  # the margins loop always runs at least once
        raise RuntimeError("solve_module: no solve attempt ran")
    if widen and not red.simple and any(best.widths[b] > WIDE * w0[b] for b in module.blobs):
        # One-shot cuts can need far more width than an exact solution has (e.g. when every cut ends
        # in 1x1 edges); the iterative fit may find one at the given widths within part of the budget.
        try:
            narrow = _attempt(module, red, target, g_k, w0, pinned, False, 0.0, gen,
                              min(iterations // 4, NARROW_ITERATIONS), EXACT, seed, refuse=False)
            if narrow is not None and narrow.mode == "exact-dense" and narrow.residual_f32 <= F32_OK:
                best = narrow
        except NotApplicable:
            pass
    return dataclasses.replace(best, seconds=time.monotonic() - start)


MARGINS = (0.0, 0.25, 0.5)
WIDE = 3          # widening beyond this factor makes the solver also try the fixed widths iteratively
NARROW_ITERATIONS = 50   # iterations at most for that try
F32_OK = 1e-6     # relative filter residual after rounding the filters to float32
MAX_SOLVE_FLOPS = 2e10   # the largest joint cut solve accepted up front (a few seconds on one core)


def check_solve_size(module: ModuleSpec, red: Reduction, widths: dict[str, int], cin: int, cout: int) -> None:
    """Refuse (``NotApplicable``, naming the size and the limit) a module whose irreducible remainder
    needs a joint least-squares solve too large to finish in a few seconds, before building it.

    The cheaper of the two cuts at the starting widths: ``m`` equations per output row (the target's
    ``C·K²``), ``n`` unknowns (every cut edge's ``C·k²``), about ``m·n·min(m, n)`` flops; widening
    only grows it. A simple-morphable module needs no joint solve (atomic morphs only).
    """
    if red.simple:
        return
    kk2 = module.effective_kernel ** 2
    costs = []
    for m, cut in ((cin * kk2, [n for n in red.remainder if n.dst == module.sink]),
                   (cout * kk2, [n for n in red.remainder if n.src == module.source])):
        n = sum(widths[x.src if x.dst == module.sink else x.dst] * x.kernel ** 2 for x in cut)
        costs.append((m * n * min(m, n), m, n))
    flops, m, n = min(costs)
    if flops > MAX_SOLVE_FLOPS:
        raise NotApplicable(f"module {module.name!r} on a {cout}x{cin} conv needs a {m}x{n} joint least-squares "
                            f"solve (~{flops:.1e} flops), above the limit of {MAX_SOLVE_FLOPS:.0e}; use a "
                            "simple-morphable module (e.g. 1c1) or a narrower conv")


def _attempt(module, red, target, g_k, w0, pinned, widen, margin, gen, iterations, tol, seed,
             refuse=True):
    """One solve at a width margin: structured (reduce, cut, atomic splits), else the iterative fit at
    the widths reached; refuses (or returns None with ``refuse=False``) above ``tol``."""
    real = Realizer(dict(w0), pinned, widen, gen, margin)
    method = "reduction + atomic morphs" if red.simple else "reduction + cut solve + atomic morphs"
    try:
        _solve_remainder(real, red, g_k)
        filters, fw = real.filters, real.widths
    except Stuck as stuck:
        fg = module_graph(module, real.widths)
        init = {e.name: real.filters.get(e.name) for e in module.edges}
        fresh = Realizer(dict(real.widths), pinned, False, gen)
        for e in module.edges:
            if init[e.name] is None or tuple(init[e.name].shape[:2]) != (real.widths[e.dst], real.widths[e.src]):
                init[e.name] = fresh.random_node(Leaf(e.name, e.src, e.dst, e.kernel))
        it = fit(fg, g_k, init, iterations, min(tol, EXACT) * 1e-2)
        if it.residual > tol:
            if not refuse:
                return None
            raise NotApplicable(_refusal(module, red, target, it, stuck, w0, tol, iterations, seed)) from None
        filters, fw = it.filters, real.widths
        method = f"iterative fit at fixed widths: {it.method}"
        real.log.append(f"one-shot cut solves not exact ({stuck}); {it.method} reached {it.residual:.2e}")
    fg = module_graph(module, fw)
    for _ in range(3):
        filters = rebalance(fg, filters)
    res = rel_residual(g_k, module_filter(fg, filters))
    res32 = rel_residual(g_k, module_filter(fg, {n: f.float().double() for n, f in filters.items()}))
    mode = "approximate" if res > EXACT else ("exact-sparse" if real.sparse else "exact-dense")
    widened = tuple(b for b in module.blobs if fw[b] != w0[b])
    return ModuleSolution(module, {e.name: filters[e.name] for e in module.edges}, dict(fw), res, method, mode,
                          red.simple, tuple(red.morph_sequence()), tuple(real.log), 0.0,
                          widened, res32)


def _refusal(module, red, target, it, stuck, w0, tol, budget, seed) -> str:
    """The refusal message: residual reached, and the widths a widened solve makes exact."""
    free = ModuleSpec(module.name, module.source, module.sink, module.blobs, module.edges, ())
    hint = ""
    try:
        sol = solve_module(free, target, widen=True, iterations=0, seed=seed, widths=dict(w0))
        need = ", ".join(f"{b}={sol.widths[b]}" for b in module.blobs)
        hint = (f"; internal widths {need} make it exact (residual {sol.residual:.1e}): allow widening "
                "(widen=true) and do not pin those blobs")
    except NotApplicable:
        pass
    fixed = ", ".join(f"{b}={w0[b]}" for b in module.blobs)
    return (f"module {module.name!r} at fixed internal widths ({fixed}) does not compute the conv: "
            f"{stuck}; the iterative fallback ({it.method}) reached relative residual {it.residual:.2e} "
            f"within the {budget}-iteration budget, above tol={tol:g}{hint}")
