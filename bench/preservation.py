"""Preservation error of every registered morph op in float32 and float64.

For every op in ``default_registry()`` x seed network (perturbed: random BN statistics/affine and
activation slopes) x up to ``--max-sites`` of its sites (evenly spaced over the sorted list), the
op is applied with its default (or ``example_params``) parameters and the child is compared with
the parent in eval mode on a random batch: max relative output error (max abs error / max abs
output) over the sites, per dtype. The float64 run morphs a float64 copy (the solver's accuracy);
the float32 run morphs the float32 network (what training uses). Extra rows cover the
``morph_block`` / ``insert_path`` variants (kernel sizes, two branches, widened dense, approx).

    .venv/bin/python bench/preservation.py [--seeds tiny_resnet small_cnn resnet20] [--max-sites 6] [--md FILE]
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

torch.set_num_threads(1)

from morphnas.morphism.ops import apply_op, default_registry  # noqa: E402
from morphnas.morphism.perturb import perturb  # noqa: E402
from morphnas.morphism.verify import output_diff  # noqa: E402
from morphnas.spaces.registry import create_network  # noqa: E402

VARIANTS = [
    ("morph_block", {"k1": 1, "k2": 1}), ("morph_block", {"k1": 1, "k2": 1, "branches": 2}),
    ("morph_block", {"k1": 3, "k2": 1}), ("morph_block", {"k1": 3, "k2": 3}),
    ("morph_block", {"k1": 3, "k2": 3, "mode": "dense"}), ("morph_block", {"k1": 3, "k2": 1, "mode": "approx"}),
    ("widen", {"method": "netmorph"}), ("widen", {"split": "random"}), ("widen", {"noise": 0.01}),
]


def spread(items: list[str], k: int) -> list[str]:
    if len(items) <= k:
        return items
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)] if k > 1 else items[:1]


def measure(net, op, params_at, sites):
    """Max float64 / float32 relative errors over ``sites``, modes seen, mean zero fraction."""
    n64 = net.to(torch.float64)
    e64 = e32 = 0.0
    modes, zfs = set(), []
    for i, site in enumerate(sites):
        params = params_at(site)
        c64, rec = apply_op(n64, op, site, params, seed=i)
        c32, _ = apply_op(net, op, site, params, seed=i)
        e64 = max(e64, output_diff(n64, c64, dtype=torch.float64, batch=2).rel_err)
        e32 = max(e32, output_diff(net, c32, dtype=torch.float32, batch=2).rel_err)
        modes.add(rec.mode)
        zfs.append(rec.zero_fraction)
    return e64, e32, "/".join(sorted(modes)), sum(zfs) / len(zfs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", nargs="+", default=["tiny_resnet", "small_cnn", "resnet20"])
    ap.add_argument("--max-sites", type=int, default=6)
    ap.add_argument("--md", help="also write the table to this markdown file")
    args = ap.parse_args(argv)
    reg = default_registry()
    rows = []
    for seed_name in args.seeds:
        net = perturb(create_network(seed_name), seed=0)
        jobs = [(name, None) for name in reg.names()] + VARIANTS
        for name, fixed in jobs:
            op = reg.get(name)
            sites = spread(op.sites(net), args.max_sites)
            if not sites:
                continue
            t = time.perf_counter()
            params_at = (lambda s, op=op: op.example_params(net, s)) if fixed is None else (lambda s, f=fixed: f)
            e64, e32, modes, zf = measure(net, op, params_at, sites)
            label = name if fixed is None else f"{name} " + ",".join(f"{k}={v}" for k, v in fixed.items())
            rows.append((label, seed_name, len(sites), e64, e32, modes, zf))
            print(f"{label} on {seed_name}: {len(sites)} sites, {time.perf_counter() - t:.1f} s", file=sys.stderr)
    head = ("| op (params) | seed | sites | max rel err float64 | max rel err float32 | mode | mean zero fraction |\n"
            "|---|---|---|---|---|---|---|")
    table = "\n".join([head] + [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.1e} | {r[4]:.1e} | {r[5]} | {r[6]:.3f} |"
                                for r in rows])
    print(table)
    if args.md:
        with open(args.md, "w") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
