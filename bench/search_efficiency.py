"""Search efficiency on digits at an equal compute budget (training steps), without Ray.

Compares, per repetition (random seed), with the same total number of SGD steps:

* **morph search** — the seed trained ``seed_epochs``, then NASH hill climbing: ``children``
  children per generation, each grown by 1-2 function-preserving morphs and fine-tuned
  ``ft_epochs`` at 1/10 of the seed LR; the best member by validation accuracy is reported;
* **seed longer** — the seed architecture trained from scratch for the whole budget;
* **random from scratch** — ``random_archs`` architectures drawn from the same action space
  (random morph sequences of the seed, then re-initialised), each trained from scratch for an
  equal share of the budget; the best by validation accuracy is reported;
* **Table 2 claim** — the morph search's best child vs. the *same architecture* trained from
  scratch for as many steps as its whole lineage consumed (seed + every fine-tune on its path).

Only validation accuracy selects; test accuracy is measured once per reported network.

    .venv/bin/python bench/search_efficiency.py --reps 3 > bench/results/search.md
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

from morphnas.morphism.graph import Network
from morphnas.search.config import DataConfig
from morphnas.search.data import load_data
from morphnas.search.mutator import SpaceMutator
from morphnas.search.population import Member, Population
from morphnas.search.records import TrialResult
from morphnas.search.strategies import build_strategy
from morphnas.search.train import TrainSpec, evaluate, train
from morphnas.spaces.actions import ActionSpace
from morphnas.spaces.counting import count
from morphnas.spaces.registry import create_network

ACTIONS = {"ops": {"deepen": {}, "widen": {"factor": [1.5, 2.0]}, "insert_path": {},
                   "morph_block": {"k1": [1, 3], "k2": [1, 3]}},
           "actions_per_child": [1, 2], "constraints": {"max_params": 200000}}


def reinit(net: Network, seed: int) -> Network:
    """The same architecture with fresh weights (what 'trained from scratch' starts from)."""
    out = net.copy()
    gen = torch.Generator().manual_seed(seed)
    for e in out.edges():
        out.replace_layer(e.name, e.layer, e.layer.init_params(gen, out.dtype))
    return out


def apply_actions(net: Network, actions) -> Network:
    from morphnas.morphism.ops import apply_op
    for a in actions:
        net, _ = apply_op(net, a.op, a.site, a.params, a.seed)
    return net


def morph_search(data, seed_net, seed_reps, args, rep):
    nets = {"m0": seed_net}
    steps = {"m0": seed_reps[-1].steps}
    pop = Population()
    pop.add(Member("m0", None, 0, 0, seed_reps[-1].val_acc, count(seed_net).params, 0, "m0"))
    mutator = SpaceMutator(ActionSpace.from_dict(ACTIONS), lambda mid: nets[mid])
    strat = build_strategy({"name": "hill_climb", "children": args.children}, mutator, seed=rep)
    ft = TrainSpec(args.ft_epochs, args.lr / 10, batch_size=64)
    spent, idx = 0, 1
    while idx <= args.trials:
        batch = []
        while idx + len(batch) <= args.trials:
            p = strat.propose(pop)
            if p is None:
                break
            batch.append((f"m{idx + len(batch)}", p))
        if not batch:
            break
        for mid, p in batch:
            child = apply_actions(nets[p.parent_id], p.actions)
            child, reps = train(child, data, ft, seed=rep * 1000 + idx)
            spent += reps[-1].steps
            nets[mid], steps[mid] = child, steps[p.parent_id] + reps[-1].steps
            par = pop.get(p.parent_id)
            r = TrialResult(mid, p.parent_id, par.depth + 1, "COMPLETE", values=(reps[-1].val_acc,),
                            params=count(child).params, actions=tuple(a.to_json() for a in p.actions),
                            extra={"proposal_id": p.proposal_id})
            pop.add(Member.from_result(r, idx))
            strat.observe(r, pop)
            idx += 1
    best = pop.best()
    return nets[best.id], best, spent, steps[best.id]


def run_rep(data, args, rep):
    torch.manual_seed(rep)
    spe = int(np.ceil(len(data.train) / 64))
    seed_net = create_network("tiny_resnet", num_classes=data.num_classes, seed=rep)
    seed_spec = TrainSpec(args.seed_epochs, args.lr, batch_size=64)
    seed_trained, seed_reps = train(seed_net, data, seed_spec, seed=rep)
    out = {}
    t = time.time()
    best_net, best, spent, lineage_steps = morph_search(data, seed_trained, seed_reps, args, rep)
    total = seed_reps[-1].steps + spent
    out["morph search (hill climbing)"] = (best.val_acc, evaluate(best_net, data.test), total, count(best_net).params)
    # Seed longer: the same architecture, from scratch, for the whole budget (same epochs).
    epochs_total = max(1, round(total / spe))
    longer, reps = train(seed_net, data, TrainSpec(epochs_total, args.lr, batch_size=64), seed=rep + 50)
    out["seed trained longer"] = (reps[-1].val_acc, evaluate(longer, data.test), reps[-1].steps, count(longer).params)
    # Random architectures of the same space from scratch, equal shares of the budget.
    space = ActionSpace.from_dict({**ACTIONS, "actions_per_child": [1, 4]})
    rng = np.random.default_rng(rep + 100)
    share = max(1, round(epochs_total / args.random_archs))
    cands = []
    for k in range(args.random_archs):
        arch = apply_actions(seed_net, space.sample(seed_net, rng))
        net, reps = train(reinit(arch, rep * 10 + k), data, TrainSpec(share, args.lr, batch_size=64), seed=rep + k)
        cands.append((reps[-1].val_acc, net, reps[-1].steps))
    acc, net, _ = max(cands, key=lambda c: c[0])
    out["random architectures from scratch"] = (acc, evaluate(net, data.test), sum(c[2] for c in cands),
                                               count(net).params)
    # Table 2: the best morphed child vs. its architecture from scratch with its lineage's steps.
    ep = max(1, round(lineage_steps / spe))
    scratch, reps = train(reinit(best_net, rep + 7), data, TrainSpec(ep, args.lr, batch_size=64), seed=rep + 9)
    out["best child's architecture from scratch"] = (reps[-1].val_acc, evaluate(scratch, data.test), reps[-1].steps,
                                                   count(scratch).params)
    out["best child (morphed), its lineage"] = (best.val_acc, out["morph search (hill climbing)"][1], lineage_steps,
                                               count(best_net).params)
    print(f"rep {rep}: {time.time() - t:.0f}s, best {best.id} ops {best.ops}", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed-epochs", type=int, default=8)
    ap.add_argument("--ft-epochs", type=int, default=4)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--children", type=int, default=4)
    ap.add_argument("--random-archs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--train-limit", type=int, default=None, help="keep only this many training images")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows: dict[str, list[tuple]] = {}
    for rep in range(args.reps):
        data = load_data(DataConfig(dataset="digits", train_limit=args.train_limit), seed=rep)
        for k, v in run_rep(data, args, rep).items():
            rows.setdefault(k, []).append(v)
    cmd = "python bench/search_efficiency.py " + " ".join(sys.argv[1:])
    print("## Search efficiency on digits (equal training steps)\n")
    print(f"Command: `{cmd.strip()}` (torch 1 thread, CPU). Seed: tiny_resnet (ResNet-8, width 8) trained "
          f"{args.seed_epochs} epochs at lr {args.lr}; morph search: NASH hill climbing, {args.trials} children in "
          f"generations of {args.children}, {args.ft_epochs} fine-tune epochs each at lr {args.lr / 10}; "
          f"training images: {args.train_limit or 'all (1222)'}. "
          f"Mean ± std over {args.reps} repetitions (each its own validation split and seeds); the test split "
          f"(359 images) is evaluated once per reported network.\n")
    print("| method | val acc | test acc | SGD steps | params |")
    print("|---|---|---|---|---|")

    def ms(xs):
        return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs) if len(xs) > 1 else 0:.4f}"
    for k, v in rows.items():
        print(f"| {k} | {ms([x[0] for x in v])} | {ms([x[1] for x in v])} | "
              f"{statistics.mean([x[2] for x in v]):.0f} | {statistics.mean([x[3] for x in v]):.0f} |")


if __name__ == "__main__":
    main()
