"""Counts of every seed and paper variant, the time to derive each variant from its seed, and
how exactly it preserves the seed's function.

    OMP_NUM_THREADS=1 .venv/bin/python bench/spaces_table.py --md bench/results/spaces.md

params / MB / FLOPs follow the paper's conventions (docs/design.md, "Paper facts"; spaces/counting.py). Derivation
time = building the variant by name minus building its seed (median of ``--repeats``). Errors:
float32 relative output error against the seed on a batch of 4 random inputs, and float64 on a
perturbed (BN statistics, PReLU slopes) copy of the seed, derived at width 8 on 8x8 inputs for
the CIFAR variants (the same code path, much faster in float64).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from morphnas.morphism.perturb import perturb
from morphnas.morphism.verify import output_diff
from morphnas.spaces.counting import count
from morphnas.spaces.registry import REGISTRY, create_seed
from morphnas.spaces.seeds.variants import PAPER_VARIANTS, derive_variant, parse_variant


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--md", help="also write the markdown table here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = ["| network | params | MB | MACs (FLOPs) | depth | vs seed params | derive s | f32 rel err | f64 rel err (perturbed) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    seeds = {}
    for name in REGISTRY.names():
        net, t_seed = timed(lambda: create_seed(name), args.repeats)
        seeds[name] = (net, t_seed)
        c = count(net)
        rows.append(f"| {name} | {c.params:,} | {c.params_mb:.3f} | {c.flops:,} | {c.depth} | | | | |")
    for name in PAPER_VARIANTS:
        spec = parse_variant(name)
        seed, t_seed = seeds[spec.seed_name]
        net, t = timed(lambda: create_seed(name), args.repeats)
        c, cs = count(net), count(seed)
        e32 = output_diff(seed, net).rel_err
        small = {} if spec.depth in (18, 34) else dict(width=8, input_size=8, in_channels=1)
        if spec.depth in (18, 34):
            small = dict(input_size=32)
        s64 = perturb(create_seed(spec.seed_name, dtype="float64", **small), seed=1)
        e64 = output_diff(s64, derive_variant(s64, spec, seed=5), dtype=torch.float64).rel_err
        rows.append(f"| {name} | {c.params:,} | {c.params_mb:.3f} | {c.flops:,} | {c.depth} | "
                    f"{c.params / cs.params:.3f}x | {max(t - t_seed, 0):.2f} | {e32:.1e} | {e64:.1e} |")
        print(rows[-1], flush=True)
    text = "\n".join(rows)
    print(text)
    if args.md:
        with open(args.md, "w") as f:
            f.write("# Seeds and paper variants: counts, derivation time, preservation\n\n")
            f.write("Command: `OMP_NUM_THREADS=1 .venv/bin/python bench/spaces_table.py --md bench/results/spaces.md`\n\n")
            f.write(text + "\n\n")
            f.write(__doc__.split("\n\n", 2)[2].strip() + "\n")


if __name__ == "__main__":
    main()
