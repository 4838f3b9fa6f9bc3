"""Every morph op on every importable torchvision model: sites count and preservation error.

For each model: import it (``weights=None``, seeded, eval mode, ``--size`` input, 10 classes),
perturb its BN statistics and slopes (``perturb``: no trivial identities), then for each registered
op count its sites and apply it at one site drawn from a generator keyed on "model/op"
(``morphnas.morphism.ops._preserve``), measuring the max relative output error on one seeded
batch of 1 in float32 and float64. The table cell is ``sites: worst error`` (float32 / float64);
"-" means no site; ``approx`` marks an op whose record says it is approximate by design.

    .venv/bin/python bench/ops_zoo.py [--size 64] [--models a,b,...] [--ops a,b,...] [--md FILE]
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

torch.set_num_threads(1)

from morphnas.morphism.errors import MorphnasError  # noqa: E402
from morphnas.morphism.ops import default_registry  # noqa: E402
from morphnas.morphism.ops._preserve import op_at_random_site  # noqa: E402
from morphnas.morphism.perturb import perturb  # noqa: E402
from morphnas.spaces.registry import create_network  # noqa: E402

MODELS = ["resnet18", "resnet50", "vgg11_bn", "mobilenet_v2", "regnet_x_400mf", "mnasnet0_5", "alexnet",
          "densenet121", "squeezenet1_0", "googlenet", "efficientnet_b0", "mobilenet_v3_small",
          "shufflenet_v2_x0_5", "convnext_tiny"]


def run_model(name: str, size: int, ops: list[str]) -> dict:
    t = time.perf_counter()
    try:
        net = perturb(create_network(f"torchvision:{name}", input_size=size, num_classes=10), seed=0)
    except MorphnasError as e:
        return {"model": name, "error": str(e)}
    net64 = net.to(torch.float64)
    reg = default_registry()
    cells = {op: op_at_random_site(net, net64, reg.get(op), f"{name}/{op}") for op in ops}
    return {"model": name, "cells": cells, "seconds": time.perf_counter() - t}


def cell(c: dict) -> str:
    if not c["sites"]:
        return "-"
    if "error" in c:
        return f"{c['sites']}: failed"
    tag = " approx" if c.get("mode") == "approximate" else ""
    return f"{c['sites']}: {c['err32']:.0e} / {c['err64']:.0e}{tag}"


def table(rows: list[dict], ops: list[str], size: int) -> str:
    lines = ["| model | " + " | ".join(ops) + " |", "|---|" + "---|" * len(ops)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | not imported: {r['error'][:80]} |" + " |" * (len(ops) - 1))
            continue
        lines.append(f"| {r['model']} | " + " | ".join(cell(r["cells"][op]) for op in ops) + " |")
    exact = [c for r in rows if "cells" in r for c in r["cells"].values()
             if "err32" in c and c.get("mode") != "approximate"]
    if exact:
        lines.append(f"\n{len(exact)} exact op applications on {sum('cells' in r for r in rows)} models at "
                     f"{size}x{size}, batch 1: worst float32 {max(c['err32'] for c in exact):.1e}, "
                     f"worst float64 {max(c['err64'] for c in exact):.1e} (relative).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--ops", default=",".join(default_registry().names()))
    ap.add_argument("--md", help="also write the table to this file")
    args = ap.parse_args(argv)
    ops = args.ops.split(",")
    rows = []
    for name in args.models.split(","):
        rows.append(run_model(name, args.size, ops))
        print(name, f"{rows[-1].get('seconds', 0):.0f}s",
              {op: cell(c) for op, c in rows[-1].get("cells", {}).items()}, file=sys.stderr, flush=True)
    md = table(rows, ops, args.size)
    print(md)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
