"""Time to apply ``morph_block`` to every eligible block of a CIFAR ResNet (target: ResNet-110 < 1 s).

Eligible blocks are the paper's: index >= 1 within a stage (ResNet-110: 3 x 17 = 51 blocks). Each
block is one ``apply_op`` call (check, copy the network, split the shortcut, solve the path's
decomposition, lint the child), or all blocks go through one ``morph_blocks`` call (one copy, one
lint; same child and records). Reported: the median and min wall time over repeats of the whole
derivation, its median process CPU time (the fair number when other jobs share the two cores),
and the per-block median. The derived network is
checked against its seed in float32 once per variant (outside the timing).

    .venv/bin/python bench/morph_latency.py [--depths 20 56 110] [--repeats 5] [--md FILE]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

torch.set_num_threads(1)

from morphnas.morphism.blocks import morph_blocks  # noqa: E402
from morphnas.morphism.ops import apply_op, default_registry  # noqa: E402
from morphnas.morphism.perturb import perturb  # noqa: E402
from morphnas.morphism.verify import output_diff  # noqa: E402
from morphnas.spaces.seeds.builders import cifar_resnet  # noqa: E402

VARIANTS = {
    "1c1": {},
    "1c1_2branch": {"branches": 2},
    "3c1": {"k1": 3, "k2": 1},
    "3c3": {"k1": 3, "k2": 3},
}


def eligible(net) -> list[str]:
    return [b["shortcut"] for b in net.meta["blocks"] if b["index"] >= 1 and b["shortcut"]]


def derive_batched(net, sites, params):
    t = time.perf_counter()
    child, _ = morph_blocks(net, sites, params)
    return child, [(time.perf_counter() - t) / len(sites)] * len(sites)


def derive(net, sites, params):
    calls = []
    for i, site in enumerate(sites):
        t = time.perf_counter()
        net, _ = apply_op(net, "morph_block", site, params, seed=i)
        calls.append(time.perf_counter() - t)
    return net, calls


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[20, 56, 110])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--md", help="also write the table to this markdown file")
    args = ap.parse_args(argv)
    default_registry()  # import the ops outside the timing
    rows = []
    for depth in args.depths:
        seed = perturb(cifar_resnet(depth), seed=0)
        sites = eligible(seed)
        for name in args.variants:
            params = VARIANTS[name]
            derive(seed, sites[:2], params)  # warm-up (first decomposition, allocator)
            for how, fn in (("apply_op per block", derive), ("morph_blocks", derive_batched)):
                totals, cpu, per_call = [], [], []
                for _ in range(args.repeats):
                    t, c = time.perf_counter(), time.process_time()
                    child, calls = fn(seed, sites, params)
                    totals.append(time.perf_counter() - t)
                    cpu.append(time.process_time() - c)
                    per_call += calls
                err = output_diff(seed, child, dtype=torch.float32, batch=2).rel_err
                rows.append((f"resnet{depth}", name, how, len(sites), statistics.median(totals), min(totals),
                             statistics.median(cpu), 1e3 * statistics.median(per_call), seed.num_params(),
                             child.num_params(), err))
                print(f"resnet{depth} {name} {how}: {len(sites)} blocks, median {rows[-1][4]:.3f} s", file=sys.stderr)
    head = ("| seed | variant | how | blocks morphed | wall median (s) | wall min (s) | CPU median (s) "
            "| per block wall median (ms) | params before | params after | float32 rel err |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head] + [f"| {r[0]} | morph_{r[1]} | {r[2]} | {r[3]} | {r[4]:.3f} | {r[5]:.3f} | {r[6]:.3f} | {r[7]:.1f} "
                      f"| {r[8]:,} | {r[9]:,} | {r[10]:.1e} |" for r in rows]
    table = "\n".join(lines)
    print(table)
    if args.md:
        with open(args.md, "w") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
