"""How good a front does each multi-objective search find at equal compute? Hypervolume on mnist5k.

In-process like ``bench/search_efficiency.py`` (whose helpers it uses): the search pieces of
``morphnas search`` (action space, ``SpaceMutator``, the ``lemonade`` strategy, ``Population``,
``train`` with distillation) without Ray, counting training epochs exactly. Every method gets the
same data, the same budget (``--budget-epochs`` epochs of the training split, seed training
included) and the same selection rule:

* every network a method trains is a candidate (from-scratch methods: every epoch's snapshot);
* the **validation-selected front** is the candidates no other candidate beats on both validation
  error and parameters; only its members are evaluated on the test split;
* the score is the **hypervolume** of their (test error, params) points against the fixed
  reference point (error 1.0, ``--ref-params`` parameters), as a share of that box
  (``search/state/hypervolume.py``); ``actions.constraints.max_params`` is the same bound, so no
  candidate of any method lies outside the box.

Methods:

* **LEMONADE (grow + shrink)**: the ``lemonade`` strategy (parents from the front, sampled and
  accepted by inverse density of log params) with growing morphs (deepen, widen, insert_path,
  morph_block) and shrinking ones (remove_layer, prune_channels, remove_branch, shrink_kernel);
  approximate children fine-tune with distillation from the parent (T=4, w=0.5), as in a search;
* **LEMONADE, no distillation**: the same, approximate children fine-tuned on labels only;
* **grow-only Pareto**: the same strategy with the growing morphs only (the front can only grow
  from the seed's size);
* **random architectures from scratch**: ``--random-archs`` networks drawn from the grow + shrink
  space (1-6 random morphs of the seed), re-initialised, trained an equal share of the budget;
* **seed trained longer**: the seed architecture from scratch for the whole budget.

For every approximate child of the LEMONADE runs it also records the validation accuracy right
after the morph and after the fine-tune, so the report says how much error the fine-tune repairs
with and without distillation. Repetitions differ in seeds and in the validation split; mean ± 95%
confidence interval (t distribution). Writes a markdown report, the raw numbers and a plot of the
fronts.

    .venv/bin/python bench/pareto_front.py --jobs 2              # the full run (BENCHMARKS.md)
    .venv/bin/python bench/pareto_front.py --quick --jobs 2      # a smoke test of the same code
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from search_efficiency import ci95, fmt, ft_spec, reinit, scratch_spec  # noqa: E402

from morphnas.search.trial.child import make_child  # noqa: E402

GROW = {"deepen": {}, "widen": {"factor": [1.5, 2.0]}, "insert_path": {}, "morph_block": {"k1": [1, 3], "k2": [1, 3]}}
SHRINK = {"remove_layer": {}, "prune_channels": {"fraction": [0.25, 0.5]}, "remove_branch": {}, "shrink_kernel": {}}
METHODS = ("LEMONADE (grow + shrink)", "LEMONADE, no distillation", "grow-only Pareto",
           "random architectures from scratch", "seed trained longer")


@dataclass(frozen=True)
class Setting:
    rep: int
    dataset: str
    image_size: int | None
    train_limit: int | None
    seed_epochs: int
    budget_epochs: int
    ft_epochs: int
    random_archs: int
    candidates: int
    accept: int
    lr: float
    ft_lr_factor: float
    ref_params: int
    val_fraction: float = 0.1


def actions(ops: dict[str, Any], ref_params: int, per_child: tuple[int, int] = (1, 2)) -> dict[str, Any]:
    return {"ops": ops, "actions_per_child": list(per_child), "constraints": {"max_params": ref_params}}


class Candidates:
    """Every network a method trained: (val error, params, the network), and epochs spent."""

    def __init__(self) -> None:
        self.items: list[tuple[float, int, Any]] = []
        self.steps = 0

    def add(self, net: Any, val_acc: float) -> None:
        from morphnas.spaces.counting import count
        self.items.append((1.0 - val_acc, count(net).params, net))

    def front(self, data: Any) -> list[dict[str, Any]]:
        """The validation-selected front, each member with its test error."""
        from morphnas.search.state.dominance import non_dominated
        from morphnas.search.trial.train import evaluate
        keep = non_dominated([(e, p) for e, p, _ in self.items], (-1.0, -1.0))
        seen, out = set(), []
        for i in sorted(keep, key=lambda i: self.items[i][1]):
            e, p, net = self.items[i]
            if (e, p) in seen:
                continue
            seen.add((e, p))
            out.append({"val_err": e, "params": p, "test_err": 1.0 - evaluate(net, data.test)})
        return out


def lemonade(s: Setting, data: Any, seed_net: Any, seed_val: float, ops: dict[str, Any], distill: bool
             ) -> tuple[Candidates, list[dict[str, Any]]]:
    """The lemonade strategy run in-process to the budget; returns its candidates and, per
    approximate child, the validation accuracy before and after its fine-tune."""
    from morphnas.search.state.population import Member, Population
    from morphnas.search.state.records import TrialResult
    from morphnas.search.strategies import build_strategy
    from morphnas.search.strategies.mutator import SpaceMutator
    from morphnas.search.trial.distill import teacher_for
    from morphnas.search.trial.train import evaluate, train
    from morphnas.spaces.actions import ActionSpace
    from morphnas.spaces.counting import count

    cand = Candidates()
    cand.steps = s.seed_epochs
    cand.add(seed_net, seed_val)
    nets = {"m0": seed_net}
    c0 = count(seed_net)
    pop = Population()
    pop.add(Member("m0", None, 0, 0, seed_val, c0.params, c0.flops, "m0"))
    mutator = SpaceMutator(ActionSpace.from_dict(actions(ops, s.ref_params)), lambda mid: nets[mid])
    strat = build_strategy({"name": "lemonade", "cost": ["params"], "candidates": s.candidates, "accept": s.accept},
                           mutator, seed=s.rep)
    repairs: list[dict[str, Any]] = []
    born = 0
    while cand.steps + s.ft_epochs <= s.budget_epochs:
        p = strat.propose(pop)
        if p is None:
            break
        born += 1
        mid = f"m{born}"
        made = make_child(nets[p.parent_id], p.actions, data, seed=s.rep * 1000 + born)
        child, records = made.network, list(made.records)
        approximate = any(r.get("mode") == "approximate" for r in records)
        before = evaluate(child, data.val) if approximate else None
        teacher = teacher_for(nets[p.parent_id], {"enabled": "auto" if distill else False}, records)
        child, reps = train(child, data, ft_spec(s, s.ft_epochs), seed=s.rep * 1000 + born, teacher=teacher)
        cand.steps += s.ft_epochs
        val = reps[-1].val_acc
        cand.add(child, val)
        nets[mid] = child
        if approximate:
            repairs.append({"ops": [r["op"] for r in records], "parent": pop.get(p.parent_id).val_acc,
                            "before": before, "after": val})
        c = count(child)
        r = TrialResult(mid, p.parent_id, pop.get(p.parent_id).depth + 1, "COMPLETE", values=(val,),
                        params=c.params, flops=c.flops, actions=tuple(records), extra={"proposal_id": p.proposal_id})
        r = TrialResult(**{**r.__dict__, "values": strat.objective_values(r)})
        pop.add(Member.from_result(r, born))
        strat.observe(r, pop)
    return cand, repairs


def from_scratch(s: Setting, data: Any, nets: list[Any], epochs: int, seed: int) -> Candidates:
    """Each network re-initialised and trained ``epochs`` epochs; every epoch's snapshot is a candidate."""
    from morphnas.search.trial.train import train
    cand = Candidates()
    for k, net in enumerate(nets):
        train(reinit(net, seed + k), data, scratch_spec(s, epochs), seed=seed + k,
              on_epoch=lambda rep, n: cand.add(n, rep.val_acc))
        cand.steps += epochs
    return cand


def run_rep(s: Setting) -> dict[str, Any]:
    import torch

    from morphnas.search.config import DataConfig
    from morphnas.search.data.core import load_data
    from morphnas.search.state.hypervolume import hypervolume_2d
    from morphnas.search.trial.train import train
    from morphnas.spaces.actions import ActionSpace
    from morphnas.spaces.counting import count
    from morphnas.spaces.registry import create_network
    torch.set_num_threads(1)
    torch.manual_seed(s.rep)
    data = load_data(DataConfig(dataset=s.dataset, image_size=s.image_size, train_limit=s.train_limit,
                                val_fraction=s.val_fraction, augment="none"), seed=s.rep)
    seed_net = create_network("tiny_resnet", num_classes=data.num_classes, seed=s.rep)
    seed_trained, seed_reps = train(seed_net, data, scratch_spec(s, s.seed_epochs), seed=s.rep)
    out: dict[str, Any] = {"rep": s.rep, "seed_params": count(seed_net).params, "n_train": len(data.train),
                           "n_val": len(data.val), "n_test": len(data.test), "methods": {}}
    both = {**GROW, **SHRINK}
    runs: dict[str, tuple[Candidates, float]] = {}
    for label, ops, distill in ((METHODS[0], both, True), (METHODS[1], both, False), (METHODS[2], GROW, True)):
        t = time.time()
        cand, repairs = lemonade(s, data, seed_trained, seed_reps[-1].val_acc, ops, distill)
        runs[label] = (cand, time.time() - t)
        if ops is both:
            out.setdefault("repairs", {})[label] = repairs
    space = ActionSpace.from_dict(actions(both, s.ref_params, (1, 6)))
    rng = np.random.default_rng([s.rep, 100])
    archs = [make_child(seed_net, space.sample(seed_net, rng), data, seed=s.rep * 10 + k).network
             for k in range(s.random_archs)]
    t = time.time()
    runs[METHODS[3]] = (from_scratch(s, data, archs, s.budget_epochs // s.random_archs, s.rep * 10), time.time() - t)
    t = time.time()
    runs[METHODS[4]] = (from_scratch(s, data, [seed_net], s.budget_epochs, s.rep + 50), time.time() - t)
    ref = (1.0, float(s.ref_params))
    for label, (cand, seconds) in runs.items():
        front = cand.front(data)
        hv = hypervolume_2d([(f["test_err"], f["params"]) for f in front], ref, normalized=True)
        out["methods"][label] = {"hv": hv, "front": front, "candidates": len(cand.items), "epochs": cand.steps,
                                 "seconds": seconds,
                                 "min_params": min(f["params"] for f in front),
                                 "best_test_err": min(f["test_err"] for f in front)}
        print(f"[rep {s.rep}] {label}: HV {hv:.4f}, front {len(front)} of {len(cand.items)} ({seconds:.0f}s)",
              file=sys.stderr, flush=True)
    return out


# ------------------------------------------------------------------------------ report
LOG_FLOOR = 1000      # the log-params hypervolume's lower bound: 10^3 parameters


def log_hv(front: list[dict[str, Any]], ref_params: int) -> float:
    """Hypervolume with log10(params) on the cost axis, over [log10 1000, log10 ref] x [0, 1]: the
    same front (selection does not change under a monotone axis), with size ratios weighted alike
    at every scale instead of absolute parameter counts."""
    from morphnas.search.state.hypervolume import hypervolume_2d
    lo, hi = math.log10(LOG_FLOOR), math.log10(ref_params)
    pts = [(f["test_err"], max(0.0, math.log10(f["params"]) - lo)) for f in front]
    return hypervolume_2d(pts, (1.0, hi - lo), normalized=True)


def fronts_plot(runs: list[dict[str, Any]], path: Path, ref_params: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(runs)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, grid = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.4 * rows), squeeze=False, sharey=True)
    for ax in grid.flat[n:]:
        ax.axis("off")
    for ax, r in zip(grid.flat, runs):
        for i, label in enumerate(METHODS):
            f = sorted(r["methods"][label]["front"], key=lambda x: x["params"])
            xs = [x["params"] for x in f] + [ref_params]
            ys = [100 * x["test_err"] for x in f]
            ys = ys + [ys[-1]] if ys else ys
            style = "-" if "LEMONADE" in label or "Pareto" in label else "--"
            ax.step(xs, ys, where="post", ls=style, color=plt.cm.tab10(i), lw=1.4,
                    label=f"{label} (HV {r['methods'][label]['hv']:.3f})")
            ax.scatter(xs[:-1], ys[:-1], s=16, color=plt.cm.tab10(i))
        ax.axvline(r["seed_params"], color="gray", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"repetition {r['rep']}")
        ax.set_xlabel("parameters (dotted: the seed)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6, loc="upper right")
    for row in grid:
        row[0].set_ylabel("test error % (validation-selected front)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(runs: list[dict[str, Any]], meta: dict[str, Any], plot_name: str) -> str:
    a = meta["args"]
    ref = "random architectures from scratch"
    size = f"{a['image_size']}×{a['image_size']} pixels" if a["image_size"] else "native size"
    lines = [
        "# Hypervolume of the validation-selected front at equal compute", "",
        f"Produced by `bench/pareto_front.py`: `{meta['command']}`; {meta['seconds'] / 60:.1f} min with "
        f"{a['jobs']} worker processes of one torch thread each on 2 shared CPU cores.", "",
        f"{a['dataset']} at {size}, {runs[0]['n_train']} training / "
        f"{runs[0]['n_val']} validation / {runs[0]['n_test']} test images. Seed `tiny_resnet` "
        f"({runs[0]['seed_params']} params) trained {a['seed_epochs']} epochs (SGDR); budget "
        f"{a['budget_epochs']} epochs per method, seed included; children fine-tuned {a['ft_epochs']} "
        f"epochs at {a['lr'] * a['ft_lr_factor']:g}; lemonade: {a['candidates']} candidates costed per round, "
        f"{a['accept']} trained; random architectures: {a['random_archs']} × "
        f"{a['budget_epochs'] // a['random_archs']} epochs. Hypervolume of (test error, params) against "
        f"(1.0, {a['ref_params']}), as a share of that box (higher is better); the same front with "
        f"log10(params) from {LOG_FLOOR} to {a['ref_params']} on the cost axis (`log-params HV`: a halving of "
        f"the size counts alike at every size). {len(runs)} repetitions, "
        "mean ± 95% CI (t distribution). Fronts: [" + plot_name + "](" + plot_name + ")", "",
        "| method | hypervolume | vs random archs | log-params HV | front size | smallest front member (params) | "
        "best front test error % | candidates | epochs |", "|---|---|---|---|---|---|---|---|---|"]
    base = float(np.mean([r["methods"][ref]["hv"] for r in runs]))
    for label in METHODS:
        ms = [r["methods"][label] for r in runs]
        m, h = ci95([x["hv"] for x in ms])
        lm, lh = ci95([log_hv(x["front"], a["ref_params"]) for x in ms])
        lines.append(f"| {label} | {m:.4f} ± {h:.4f} | {100 * (m - base) / base:+.1f}% | {lm:.4f} ± {lh:.4f} | "
                     f"{np.mean([len(x['front']) for x in ms]):.1f} | {np.mean([x['min_params'] for x in ms]):.0f} | "
                     f"{fmt([x['best_test_err'] for x in ms])} | {np.mean([x['candidates'] for x in ms]):.0f} | "
                     f"{np.mean([x['epochs'] for x in ms]):.0f} |")
    def wins(a_: str, b_: str) -> int:
        return sum(r["methods"][a_]["hv"] > r["methods"][b_]["hv"] for r in runs)
    lines += ["", f"LEMONADE (grow + shrink) has the larger hypervolume in {wins(METHODS[0], METHODS[2])} of "
              f"{len(runs)} repetitions against grow-only Pareto, in {wins(METHODS[0], METHODS[3])} against random "
              f"architectures from scratch, and in {wins(METHODS[0], METHODS[4])} against the seed trained longer.",
              ""]
    lines += ["## Repair of approximate children (validation accuracy, all approximate children of all repetitions)",
              "", "| method | children | parent | right after the morph | after the fine-tune | repaired |",
              "|---|---|---|---|---|---|"]
    for label in METHODS[:2]:
        rs = [x for r in runs for x in r.get("repairs", {}).get(label, [])]
        if not rs:
            lines.append(f"| {label} | 0 | - | - | - | - |")
            continue
        lines.append(f"| {label} | {len(rs)} | {fmt([x['parent'] for x in rs], 100)} | "
                     f"{fmt([x['before'] for x in rs], 100)} | {fmt([x['after'] for x in rs], 100)} | "
                     f"{fmt([x['after'] - x['before'] for x in rs], 100)} points |")
    return "\n".join(lines) + "\n"


def _run(s: Setting) -> dict[str, Any]:
    return run_rep(s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--image-size", type=int, default=14, help="resize to this; 0: native size")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--train-limit", type=int, default=1000)
    ap.add_argument("--seed-epochs", type=int, default=7)
    ap.add_argument("--budget-epochs", type=int, default=31)
    ap.add_argument("--ft-epochs", type=int, default=2)
    ap.add_argument("--random-archs", type=int, default=6)
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--accept", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--ft-lr-factor", type=float, default=0.5)
    ap.add_argument("--ref-params", type=int, default=60000)
    ap.add_argument("--quick", action="store_true", help="tiny budget, 2 repetitions: checks the code runs")
    ap.add_argument("--out", default=None, help="prefix of .md/.json/.png (default bench/results/pareto)")
    ap.add_argument("--from-json", default=None, help="only rebuild the report and plot from a saved JSON")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.train_limit, args.seed_epochs, args.budget_epochs, args.random_archs = 2, 200, 1, 5, 2
    out = Path(args.out or HERE / "results" / ("pareto_quick" if args.quick else "pareto"))
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        runs, meta = saved["runs"], saved["meta"]
    else:
        settings = [Setting(rep, args.dataset, args.image_size or None, args.train_limit, args.seed_epochs,
                            args.budget_epochs, args.ft_epochs, args.random_archs, args.candidates, args.accept,
                            args.lr, args.ft_lr_factor, args.ref_params) for rep in range(args.reps)]
        t0 = time.time()
        meta = {"command": ("python bench/pareto_front.py " + " ".join(sys.argv[1:])).strip(), "seconds": 0.0,
                "args": vars(args), "settings": [asdict(x) for x in settings]}
        runs = []
        partial = out.parent / f"{out.name}_partial.jsonl"      # survives an interrupted run
        partial.write_text("")
        with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
            for r in pool.imap_unordered(_run, settings, chunksize=1):
                runs.append(r)
                with partial.open("a") as f:
                    f.write(json.dumps(r) + "\n")
        runs.sort(key=lambda r: r["rep"])
        meta["seconds"] = time.time() - t0
        out.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
        partial.unlink()
    plot = out.parent / f"{out.name}_fronts.png"
    fronts_plot(runs, plot, int(meta["args"]["ref_params"]))
    text = report(runs, meta, plot.name)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
