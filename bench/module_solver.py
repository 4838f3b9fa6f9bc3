"""Benchmark the module solver: module (D) all-3x3 and mixed kernels at widths 16/32/64 (widening
allowed and fixed), and random irreducible modules. Prints a markdown table (and writes it with
``--out``).

    .venv/bin/python bench/module_solver.py --out bench/results/module.md
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from morphnas.morphism.errors import NotApplicable  # noqa: E402
from morphnas.morphism.module import as_module_spec, reduce_module, solve_module  # noqa: E402
from morphnas.morphism.module.generate import random_irreducible_module  # noqa: E402


def run_case(label, module, width, widen, budget, seed):
    g = torch.randn(width, width, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(10_000 + seed))
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        sol = solve_module(module, g, widen=widen, iterations=budget, seed=seed)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        widths = "/".join(str(sol.widths[b]) for b in module.blobs)
        method = sol.method.replace("reduction + ", "")
        return (label, width, "yes" if widen else "no", widths, f"{dt:.2f} / {dc:.2f}", method,
                f"{sol.residual:.1e}", f"{sol.residual_f32:.1e}", sol.mode)
    except NotApplicable as err:
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        msg = str(err)
        reached = msg.split("reached relative residual ")[1].split()[0] if "reached relative residual" in msg else "?"
        need = msg.split("; internal widths ")[1].split(" make")[0] if "; internal widths " in msg else "?"
        method = msg.split("fallback (")[1].split(") reached")[0] if "fallback (" in msg else "?"
        widths = "/".join(str(width) for _ in module.blobs)
        return (label, width, "no", widths, f"{dt:.2f} / {dc:.2f}", f"iterative: {method}", reached, "-",
                f"refused (exact at {need})")


def network_rows():
    """The op on a perturbed resnet20 (CIFAR 32x32): whole-output errors in float64 and float32."""
    from morphnas.morphism.ops import apply_op
    from morphnas.morphism.perturb import perturb
    from morphnas.morphism.verify import output_diff
    from morphnas.spaces.registry import create_network
    net = perturb(create_network("resnet20"), 0)
    n64 = net.to(torch.float64)
    rows = []
    for site, mod in [("layer3.1.conv1", "D"), ("layer3.1.conv2", "D_mixed"), ("layer2.0.conv1", "D"),
                      ("layer1.2.conv2", "3c3"), ("layer1.1.conv1", "1c1")]:
        t0 = time.perf_counter()
        child, rec = apply_op(net, "module", site, {"module": mod}, seed=0)
        dt = time.perf_counter() - t0
        e32 = output_diff(net, child, dtype=torch.float32, batch=2).rel_err
        c64, _ = apply_op(n64, "module", site, {"module": mod}, seed=0)
        e64 = output_diff(n64, c64, dtype=torch.float64, batch=2).rel_err
        rows.append((f"`{site}`", mod, f"{dt:.2f}", f"{rec.error:.1e}", f"{e64:.1e}", f"{e32:.1e}",
                     f"{net.num_params():,} -> {child.num_params():,}"))
        print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="16,32,64")
    ap.add_argument("--budget", type=int, default=300, help="iteration budget of fixed-width runs")
    ap.add_argument("--random", type=int, default=8, help="random irreducible modules (at width 16)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--no-networks", dest="networks", action="store_false", help="skip the resnet20 table")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    widths = [int(w) for w in args.widths.split(",")]
    rows = []
    for name in ("D", "D_mixed"):
        m = as_module_spec(name)
        for w in widths:
            for widen in (True, False):
                rows.append(run_case(name, m, w, widen, args.budget, seed=w))
                print(" | ".join(map(str, rows[-1])), file=sys.stderr, flush=True)
    rng = np.random.default_rng(0)
    for i in range(args.random):
        m = random_irreducible_module(rng, blobs=int(rng.integers(2, 4)), max_edges=8)
        red = reduce_module(m)
        label = (f"random #{i} ({len(m.edges)} edges, K={m.effective_kernel}, remainder {len(red.remainder)}, "
                 f"kernels {''.join(str(e.kernel) for e in m.edges)})")
        for widen in (True, False):
            rows.append(run_case(label, m, 16, widen, args.budget, seed=100 + i))
            print(" | ".join(map(str, rows[-1])), file=sys.stderr, flush=True)
    head = ("module", "C", "widen", "internal widths", "wall / CPU time (s)", "method", "residual f64",
            "residual f32 filters", "outcome")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Module solver benchmark",
        "",
        f"Command: `.venv/bin/python bench/module_solver.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"Machine: {platform.machine()}, torch {torch.__version__}, 1 thread, load average {load:.1f} at the end "
        "(other jobs shared the 2 cores: wall times are inflated by the load; CPU time is this process's "
        "own, the better estimate of an idle core; fixed-width runs stop at the iteration budget).",
        "",
        "Target conv: random `(C, C, 3, 3)` float64 filter. `residual` = ||G - M(F)|| / ||G|| of the module's "
        "composed filter (float64 solve; 'f32 filters' after rounding the filters to float32). Widening: internal "
        f"blobs widened to the capacity the cut needs; fixed: blobs at C, iterative fallback with a {args.budget}-iteration "
        "budget, then the refusal (which names the widths that make it exact).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    if args.networks:
        head2 = ("site", "module", "op time (s)", "filter residual", "output rel err f64", "output rel err f32",
                 "params")
        lines += ["", "## The op on a network", "",
                  "Perturbed resnet20 (random BN statistics/affine and PReLU slopes), 3x32x32 inputs, batch 2, "
                  "whole output. float64: the network converted to float64 before the morph; float32: the "
                  "filters solved in float64 and stored in float32.", "",
                  "| " + " | ".join(head2) + " |", "|" + "---|" * len(head2)]
        lines += ["| " + " | ".join(r) + " |" for r in network_rows()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
