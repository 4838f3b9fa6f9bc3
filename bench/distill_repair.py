"""How much of a shrinking morph's damage does distillation repair? (issue 15, part 4's last bullet)

For each seed: train a seed network, apply each shrinking op at a fixed site, and measure the child's
validation accuracy (1) right after the morph, (2) after a short low-LR fine-tune on the labels only,
(3) after the same fine-tune with distillation from the parent (search/trial/distill.py, T and w as given).
Both fine-tunes start from the same child with the same data order (same seed), so the paired
difference isolates the loss. Prints a markdown table: mean ± 95% CI (t distribution) over seeds.

    .venv/bin/python bench/distill_repair.py --dataset mnist5k --seeds 0 1 2 --seed-epochs 5 --ft-epochs 2
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from morphnas.morphism.ops import apply_op
from morphnas.search.config import DataConfig
from morphnas.search.data.core import load_data
from morphnas.search.trial.distill import Teacher
from morphnas.search.trial.train import TrainSpec, evaluate, train
from morphnas.spaces.resolve import resolve_network

# (label, op, site, params): sites of tiny_resnet (one block per stage, widths 8/16/32).
MORPHS = [
    ("prune_channels 50% of stage 3", "prune_channels", "layer3.0.sum", {"fraction": 0.5}),
    ("remove_layer stage-2 conv2", "remove_layer", "layer2.0.conv2", {}),
    ("remove_branch stage-1 residual path", "remove_branch", "layer1.0.bn2", {}),
]
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def ci(xs: list[float]) -> str:
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return f"{m:.4f}"
    h = T95.get(len(xs) - 1, 1.96) * statistics.stdev(xs) / math.sqrt(len(xs))
    return f"{m:.4f} ± {h:.4f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist5k", choices=["digits", "mnist5k"])
    ap.add_argument("--network", default="tiny_resnet")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--seed-epochs", type=int, default=5)
    ap.add_argument("--seed-lr", type=float, default=0.1)
    ap.add_argument("--ft-epochs", type=int, default=2)
    ap.add_argument("--ft-lr", type=float, default=0.01, help="default: 1/10 of the seed LR, as the search does")
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--weight", type=float, default=0.5)
    ap.add_argument("--train-limit", type=int, default=None)
    ap.add_argument("--md", type=Path, default=None, help="also write the table to this file")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()
    data = load_data(DataConfig(dataset=a.dataset, train_limit=a.train_limit), seed=0)
    rows: dict[str, dict[str, list[float]]] = {m[0]: {} for m in MORPHS}
    parent_acc: list[float] = []
    for s in a.seeds:
        net = resolve_network(a.network, num_classes=data.num_classes, seed=s, input_size=data.input_shape[-1])
        parent, _ = train(net, data, TrainSpec(a.seed_epochs, a.seed_lr), seed=s)
        parent_acc.append(evaluate(parent, data.val))
        print(f"seed {s}: parent val acc {parent_acc[-1]:.4f} ({time.time() - start:.0f} s)", file=sys.stderr)
        for label, op, site, params in MORPHS:
            child, rec = apply_op(parent, op, site, params, seed=s)
            r = rows[label]
            r.setdefault("error", []).append(float(rec.error or 0.0))
            r.setdefault("params", []).append(child.num_params() / parent.num_params())
            r.setdefault("before", []).append(evaluate(child, data.val))
            spec = TrainSpec(a.ft_epochs, a.ft_lr)
            plain, _ = train(child, data, spec, seed=s)
            kd, _ = train(child, data, spec, seed=s, teacher=Teacher(parent, a.temperature, a.weight))
            r.setdefault("plain", []).append(evaluate(plain, data.val))
            r.setdefault("kd", []).append(evaluate(kd, data.val))
            r.setdefault("gain", []).append(r["kd"][-1] - r["plain"][-1])
            print(f"  {label}: error {rec.error:.3f}, before {r['before'][-1]:.4f}, plain {r['plain'][-1]:.4f}, "
                  f"distilled {r['kd'][-1]:.4f} ({time.time() - start:.0f} s)", file=sys.stderr)
    lines = [f"Distillation repair on {a.dataset} ({a.network}; seed {a.seed_epochs} epochs at LR {a.seed_lr}; "
             f"fine-tune {a.ft_epochs} epochs at LR {a.ft_lr}; T={a.temperature:g}, w={a.weight:g}; "
             f"seeds {' '.join(map(str, a.seeds))}; validation accuracy, mean ± 95% CI). "
             f"Parent: {ci(parent_acc)}. {time.time() - start:.0f} s.",
             "",
             "| morph | params kept | rel. output error | before fine-tune | fine-tune, labels only | "
             "fine-tune + distillation | distillation gain (paired) |",
             "|---|---|---|---|---|---|---|"]
    for label, r in rows.items():
        lines.append(f"| {label} | {statistics.fmean(r['params']):.2f} | {statistics.fmean(r['error']):.3f} | "
                     f"{ci(r['before'])} | {ci(r['plain'])} | {ci(r['kd'])} | {ci(r['gain'])} |")
    table = "\n".join(lines)
    print(table)
    if a.md is not None:
        a.md.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
