"""Does morph search find a better network than training from scratch, at equal SGD steps?

This measures *search algorithms*, in-process and without Ray (the Tune runner adds scheduling,
not accuracy; SGD steps are counted exactly here). It uses the same pieces as ``morphnas search``:
the action space, ``SpaceMutator``, ``build_strategy``, ``Population``, ``train`` and ``evaluate``.

Every method gets the same data, the same total budget of SGD steps (``--budget-epochs`` epochs
of the training split, seed training included) and the same selection rule: validation accuracy
chooses the reported network, and the test split is evaluated only for a network that becomes the
validation-best so far (what the method would report at that point of its budget). Methods:

* **morph search** with each strategy (``hill_climb``, ``evolution``, ``tpe``, ``gp`` when it is
  registered): the seed is trained ``--seed-epochs``, then children (1-2 function-preserving
  morphs of a member) are fine-tuned ``--ft-epochs`` each; each strategy runs **plain** and with
  **successive halving** over each batch of ``--children`` proposals (every child gets a first
  ``--rung-epochs`` fine-tune, the top 1/``--eta`` by validation accuracy continue to
  ``--ft-epochs``);
* **random morphs** (NASH's baseline): the ``random_walk`` strategy, same fine-tunes;
* **random architectures from scratch**: ``--random-archs`` architectures drawn from the same
  space (random morph sequences of the seed, re-initialised), each trained an equal share;
* **seed trained longer**: the seed architecture from scratch for the whole budget;
* **Table 2 check** (reported apart): hill climbing's best child vs. the same architecture
  trained from scratch for as many steps as the child's whole lineage (seed + its fine-tunes).

All training uses SGDR (cosine with warm restarts, per step): from scratch with cycles of 1, 2, 4,
... epochs (so 3, 7, 15 and 31 epochs end a cycle), fine-tunes with 1-epoch cycles at ``--ft-lr-factor``
of the seed's LR. Repetitions differ in seeds *and* in the validation split; mean ± 95% confidence
interval (t distribution). Writes a markdown report, the raw numbers (JSON) and an anytime plot.

    .venv/bin/python bench/search_efficiency.py --jobs 2            # the full run (see BENCHMARKS.md)
    .venv/bin/python bench/search_efficiency.py --quick --jobs 2    # a smoke test of the same code
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from morphnas.search.trial.child import make_child

HERE = Path(__file__).resolve().parent
ACTIONS = {"ops": {"deepen": {}, "widen": {"factor": [1.5, 2.0]}, "insert_path": {},
                   "morph_block": {"k1": [1, 3], "k2": [1, 3]}},
           "actions_per_child": [1, 2], "constraints": {"max_params": 200000}}
STRATEGY_KNOBS = {"hill_climb": {}, "evolution": {"population_size": 6, "sample_size": 3}, "tpe": {},
                  "gp": {}, "random_walk": {}}
DATASETS = {"mnist5k": {"image_size": 14}, "digits": {"image_size": None}}


@dataclass(frozen=True)
class Setting:
    dataset: str
    rep: int
    image_size: int | None
    train_limit: int | None
    seed_epochs: int
    budget_epochs: int
    ft_epochs: int
    rung_epochs: int
    eta: int
    children: int
    random_archs: int
    lr: float
    ft_lr_factor: float
    strategies: tuple[str, ...]
    baselines: bool = True
    val_fraction: float = 0.1


# ------------------------------------------------------------------------------ one repetition
class Tracker:
    """Cumulative SGD steps of one method and its validation-selected incumbent over time."""

    def __init__(self, data: Any, label: str):
        self.data, self.label = data, label
        self.steps = 0
        self.best_val, self.best_test, self.best_net = -1.0, float("nan"), None
        self.curve: list[tuple[int, float]] = []      # (cumulative steps, test error of the incumbent)
        self.t0 = time.time()

    def spend(self, steps: int) -> None:
        self.steps += steps

    def offer(self, net: Any, val: float) -> None:
        from morphnas.search.trial.train import evaluate
        if val > self.best_val:
            self.best_val, self.best_net = val, net
            self.best_test = evaluate(net, self.data.test)
            self.curve.append((self.steps, 1.0 - self.best_test))

    def result(self, extra_seconds: float = 0.0, **kw: Any) -> dict[str, Any]:
        from morphnas.spaces.counting import count
        return {"val": self.best_val, "test": self.best_test, "steps": self.steps,
                "params": count(self.best_net).params, "seconds": time.time() - self.t0 + extra_seconds,
                "curve": self.curve, **kw}


def scratch_spec(s: Setting, epochs: int):
    from morphnas.search.trial.train import TrainSpec
    return TrainSpec(epochs, s.lr, schedule="sgdr", restart_epochs=1, restart_mult=2)


def ft_spec(s: Setting, epochs: int):
    from morphnas.search.trial.train import TrainSpec
    return TrainSpec(epochs, s.lr * s.ft_lr_factor, schedule="sgdr", restart_epochs=1, restart_mult=1)


def reinit(net: Any, seed: int) -> Any:
    """The same architecture with fresh weights (what 'trained from scratch' starts from)."""
    import torch
    out = net.copy()
    gen = torch.Generator().manual_seed(seed)
    for e in out.edges():
        out.replace_layer(e.name, e.layer, e.layer.init_params(gen, out.dtype))
    return out


def morph_search(s: Setting, data: Any, seed_net: Any, seed_rep: Any, seed_seconds: float, strategy: str,
                 halving: bool, label: str, budget: int, spe: int) -> tuple[dict[str, Any], Any]:
    from morphnas.search.state.population import Member, Population
    from morphnas.search.state.records import TrialResult
    from morphnas.search.strategies import build_strategy
    from morphnas.search.strategies.mutator import SpaceMutator
    from morphnas.search.trial.train import train
    from morphnas.spaces.actions import ActionSpace
    from morphnas.spaces.counting import count

    tr = Tracker(data, label)
    tr.spend(seed_rep.steps)
    tr.offer(seed_net, seed_rep.val_acc)
    nets, lineage = {"m0": seed_net}, {"m0": seed_rep.steps}
    pop = Population()
    pop.add(Member("m0", None, 0, 0, seed_rep.val_acc, count(seed_net).params, 0, "m0"))
    mutator = SpaceMutator(ActionSpace.from_dict(ACTIONS), lambda mid: nets[mid])
    knobs = {**STRATEGY_KNOBS[strategy], **({"children": s.children} if strategy == "hill_climb" else {})}
    strat = build_strategy({"name": strategy, **knobs}, mutator, seed=s.rep)
    rung = s.rung_epochs if halving else s.ft_epochs
    born = 0
    while True:
        left = (budget - tr.steps) // spe                      # whole epochs still affordable
        n_fit = left // rung
        batch = []
        while len(batch) < min(s.children, n_fit):
            p = strat.propose(pop)
            if p is None:
                break
            batch.append(p)
        # Successive halving: how many of the batch continue after the first rung, within budget.
        keep = math.ceil(len(batch) / s.eta) if halving else 0
        while halving and batch and len(batch) * rung + keep * (s.ft_epochs - rung) > left:
            keep -= 1
        if not batch:
            break
        first = []
        for p in batch:
            born += 1
            mid = f"m{born}"
            child = make_child(nets[p.parent_id], p.actions, data, seed=s.rep * 1000 + born).network
            child, reps = train(child, data, ft_spec(s, rung), seed=s.rep * 1000 + born)
            tr.spend(reps[-1].steps)
            tr.offer(child, reps[-1].val_acc)
            nets[mid], lineage[mid] = child, lineage[p.parent_id] + reps[-1].steps
            first.append([mid, p, reps[-1].val_acc])
        for entry in sorted(first, key=lambda e: -e[2])[:keep]:   # promoted: continue the 1-epoch cycles
            mid = entry[0]
            child, reps = train(nets[mid], data, ft_spec(s, s.ft_epochs - rung), seed=s.rep * 1000 + 500 + born)
            tr.spend(reps[-1].steps)
            tr.offer(child, reps[-1].val_acc)
            nets[mid], entry[2] = child, reps[-1].val_acc
            lineage[mid] += reps[-1].steps
        for mid, p, val in first:
            par = pop.get(p.parent_id)
            r = TrialResult(mid, p.parent_id, par.depth + 1, "COMPLETE", values=(val,),
                            params=count(nets[mid]).params, actions=tuple(a.to_json() for a in p.actions),
                            extra={"proposal_id": p.proposal_id})
            pop.add(Member.from_result(r, int(mid[1:])))
            strat.observe(r, pop)
    best = pop.best()
    out = tr.result(seed_seconds, children=born, best_ops=list(best.ops), best_depth=best.depth,
                    lineage_steps=lineage[best.id])
    return out, (nets[best.id], lineage[best.id], best)


def run_rep(s: Setting) -> dict[str, Any]:
    """Every method on one (dataset, repetition); returns their results and anytime curves."""
    import torch

    from morphnas.search.config import DataConfig
    from morphnas.search.data.core import load_data
    from morphnas.search.trial.train import train
    from morphnas.spaces.actions import ActionSpace
    from morphnas.spaces.counting import count
    from morphnas.spaces.registry import create_network
    torch.set_num_threads(1)
    torch.manual_seed(s.rep)
    data = load_data(DataConfig(dataset=s.dataset, image_size=s.image_size, train_limit=s.train_limit,
                                val_fraction=s.val_fraction, augment="none"), seed=s.rep)
    spe = math.ceil(len(data.train) / 64)
    budget = s.budget_epochs * spe
    seed_net = create_network("tiny_resnet", num_classes=data.num_classes, seed=s.rep)
    t = time.time()
    seed_trained, seed_reps = train(seed_net, data, scratch_spec(s, s.seed_epochs), seed=s.rep)
    seed_seconds = time.time() - t
    out: dict[str, Any] = {"dataset": s.dataset, "rep": s.rep, "budget_steps": budget, "steps_per_epoch": spe,
                           "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
                           "methods": {}}
    methods = out["methods"]
    table2 = None
    for strategy in s.strategies:
        for halving in (False, True):
            label = f"{strategy}{' + halving' if halving else ''}"
            if strategy == "random_walk":
                if halving:
                    continue
                label = "random morphs (random_walk)"
            res, best = morph_search(s, data, seed_trained, seed_reps[-1], seed_seconds, strategy, halving,
                                     label, budget, spe)
            methods[label] = res
            if strategy == "hill_climb" and not halving:
                table2 = best
            print(f"[{s.dataset} rep {s.rep}] {label}: test acc {res['test']:.4f}, {res['children']} children ({res['seconds']:.0f}s)",
                  file=sys.stderr, flush=True)
    if not s.baselines:
        return out
    # Random architectures of the same space, from scratch, equal shares of the budget.
    space = ActionSpace.from_dict({**ACTIONS, "actions_per_child": [1, 6]})
    rng = np.random.default_rng([s.rep, 100])
    tr = Tracker(data, "random architectures from scratch")
    share = s.budget_epochs // s.random_archs
    for k in range(s.random_archs):
        arch = make_child(seed_net, space.sample(seed_net, rng), data, seed=s.rep * 10 + k).network
        tr_offset = tr.steps
        _, reps = train(reinit(arch, s.rep * 10 + k), data, scratch_spec(s, share), seed=s.rep * 10 + k,
                        on_epoch=lambda rep, net: (setattr(tr, "steps", tr_offset + rep.steps),
                                                   tr.offer(net, rep.val_acc)))
        tr.steps = tr_offset + reps[-1].steps
    methods["random architectures from scratch"] = tr.result()
    # The seed architecture from scratch for the whole budget (every epoch's snapshot is a candidate).
    tr = Tracker(data, "seed trained longer")
    _, reps = train(reinit(seed_net, s.rep + 50), data, scratch_spec(s, s.budget_epochs), seed=s.rep + 50,
                    on_epoch=lambda rep, net: (setattr(tr, "steps", rep.steps), tr.offer(net, rep.val_acc)))
    methods["seed trained longer (SGDR)"] = tr.result()
    # Table 2: hill climbing's best child vs. its architecture from scratch with its lineage's steps.
    if table2 is not None:
        from morphnas.search.trial.train import evaluate
        child, lineage_steps, member = table2
        ep = max(1, round(lineage_steps / spe))
        t = time.time()
        scratch, reps = train(reinit(child, s.rep + 7), data, scratch_spec(s, ep), seed=s.rep + 9)
        out["table2"] = {"morphed_val": member.val_acc, "morphed_test": evaluate(child, data.test),
                         "scratch_val": reps[-1].val_acc, "scratch_test": evaluate(scratch, data.test),
                         "lineage_steps": lineage_steps, "scratch_steps": reps[-1].steps,
                         "params": count(child).params, "ops": list(member.ops), "depth": member.depth,
                         "scratch_seconds": time.time() - t}
    print(f"[{s.dataset} rep {s.rep}] done", file=sys.stderr, flush=True)
    return out


# ------------------------------------------------------------------------------ statistics and report
def ci95(xs: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (Student t, n - 1 degrees of freedom)."""
    from scipy.stats import t
    m = float(np.mean(xs))
    if len(xs) < 2:
        return m, float("nan")
    return m, float(t.ppf(0.975, len(xs) - 1) * np.std(xs, ddof=1) / math.sqrt(len(xs)))


def fmt(xs: list[float], scale: float = 100.0, digits: int = 2) -> str:
    m, h = ci95([x * scale for x in xs])
    return f"{m:.{digits}f} ± {h:.{digits}f}"


def method_table(runs: list[dict[str, Any]]) -> list[str]:
    labels = list(runs[0]["methods"])
    ref = "random architectures from scratch"
    ref_err = float(np.mean([1 - r["methods"][ref]["test"] for r in runs])) if ref in runs[0]["methods"] else 0.0
    lines = ["| method | test error % | val error % | SGD steps | wall s | params | vs random archs |",
             "|---|---|---|---|---|---|---|"]
    for k in labels:
        rs = [r["methods"][k] for r in runs]
        err = float(np.mean([1 - x["test"] for x in rs]))
        rel = f"{100 * (err - ref_err) / ref_err:+.0f}%" if ref_err > 0 else "n/a"
        lines.append(f"| {k} | {fmt([1 - x['test'] for x in rs])} | {fmt([1 - x['val'] for x in rs])} | "
                     f"{np.mean([x['steps'] for x in rs]):.0f} | {np.mean([x['seconds'] for x in rs]):.0f} | "
                     f"{np.mean([x['params'] for x in rs]):.0f} | {rel} |")
    return lines


def table2_table(runs: list[dict[str, Any]]) -> list[str]:
    rs = [r["table2"] for r in runs if "table2" in r]
    if not rs:
        return []
    wins = sum(x["morphed_test"] > x["scratch_test"] for x in rs)
    return ["| network | test error % | val error % | SGD steps | params |", "|---|---|---|---|---|",
            f"| hill climbing's best child (morphed, fine-tuned) | {fmt([1 - x['morphed_test'] for x in rs])} | "
            f"{fmt([1 - x['morphed_val'] for x in rs])} | {np.mean([x['lineage_steps'] for x in rs]):.0f} "
            f"(its lineage) | {np.mean([x['params'] for x in rs]):.0f} |",
            f"| the same architecture from scratch | {fmt([1 - x['scratch_test'] for x in rs])} | "
            f"{fmt([1 - x['scratch_val'] for x in rs])} | {np.mean([x['scratch_steps'] for x in rs]):.0f} | "
            f"{np.mean([x['params'] for x in rs]):.0f} |",
            "", f"The morphed child has the lower test error in {wins} of {len(rs)} repetitions "
            f"(lineage depth {', '.join(str(x['depth']) for x in rs)})."]


def anytime_plot(by_ds: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Test error of the validation-selected incumbent vs cumulative SGD steps: mean and 95% band."""
    import warnings

    import matplotlib
    matplotlib.use("Agg")
    warnings.filterwarnings("ignore", "Mean of empty slice")
    warnings.filterwarnings("ignore", "Degrees of freedom")
    import matplotlib.pyplot as plt
    from scipy.stats import t as student
    fig, axes = plt.subplots(1, len(by_ds), figsize=(7 * len(by_ds), 5), squeeze=False)
    for ax, (ds, runs) in zip(axes[0], by_ds.items()):
        budget = runs[0]["budget_steps"]
        grid = np.linspace(0, budget, 200)
        for i, k in enumerate(runs[0]["methods"]):
            ys = []
            for r in runs:
                curve = r["methods"][k]["curve"]
                xs = np.array([c[0] for c in curve])
                es = np.array([c[1] for c in curve])
                pos = np.searchsorted(xs, grid, side="right") - 1
                ys.append(np.where(pos >= 0, es[np.clip(pos, 0, None)], np.nan))
            y = np.array(ys) * 100
            m = np.nanmean(y, axis=0) if np.isfinite(y).any() else y[0]
            n = np.isfinite(y).sum(axis=0)
            sd = np.nanstd(y, axis=0, ddof=1) if len(ys) > 1 else np.zeros_like(m)
            h = np.where(n > 1, student.ppf(0.975, np.maximum(n - 1, 1)) * sd / np.sqrt(np.maximum(n, 1)), 0)
            style = "--" if "halving" in k else ("-." if "scratch" in k or "longer" in k else "-")
            line, = ax.plot(grid, m, style, label=k, color=plt.cm.tab10(i) if i < 10 else "black", lw=1.6)
            ax.fill_between(grid, m - h, m + h, color=line.get_color(), alpha=0.12)
        ax.set_title(f"{ds}: {len(runs)} repetitions, mean and 95% CI")
        ax.set_xlabel("cumulative SGD steps (seed training included)")
        ax.set_ylabel("test error % of the validation-best network so far")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def cycles(epochs: int) -> str:
    """The SGDR cycle lengths (1, 2, 4, ...) that ``epochs`` epochs of from-scratch training go through."""
    out, start, n = [], 0, 1
    while start < epochs:
        out.append(str(min(n, epochs - start)) + ("" if start + n <= epochs else " (cut)"))
        start, n = start + n, 2 * n
    return ", ".join(out)


def load_saved(path: Path) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """A finished run's JSON, or the ``_partial.jsonl`` of an interrupted one (its meta rebuilt)."""
    if path.suffix != ".jsonl":
        saved = json.loads(path.read_text())
        return saved["runs"], saved["meta"]
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by_ds: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(runs, key=lambda r: (r["dataset"] != "mnist5k", r["rep"])):
        by_ds.setdefault(r["dataset"], []).append(r)
    meta = json.loads(path.with_name(path.name.replace("_partial.jsonl", "_meta.json")).read_text())
    meta["command"] += f" (interrupted: {len(runs)} of the planned dataset x repetition runs)"
    return by_ds, meta


def report(by_ds: dict[str, list[dict[str, Any]]], meta: dict[str, Any], plot_name: str) -> str:
    a = meta["args"]
    out = ["# Search efficiency at equal compute (SGD steps)", "",
           "Produced by `bench/search_efficiency.py`: in-process, no Ray — it measures the search algorithms "
           "(strategies, action space, mutator, training code of `morphnas search`), counting SGD steps exactly. "
           f"Command: `{meta['command']}`; total wall time {meta['seconds'] / 60:.1f} min with {a['jobs']} worker "
           "processes of one torch thread each, on 2 CPU cores shared with other work "
           "(so wall seconds are only roughly comparable between methods).", "",
           f"Seed: `tiny_resnet` (ResNet-8, width 8) trained {a['seed_epochs']} epochs at lr {a['lr']} with SGDR "
           f"(cycles of {cycles(a['seed_epochs'])} epochs). Budget per method: {a['budget_epochs']} epochs of the training split "
           "(seed included). Morph search: children of 1-2 morphs (deepen, widen ×1.5/×2, insert_path, "
           f"morph_block), fine-tuned {a['ft_epochs']} epochs at lr {a['lr'] * a['ft_lr_factor']:g} (SGDR, 1-epoch "
           f"cycles), in batches of {a['children']}; successive halving: {a['rung_epochs']} epoch for every child, "
           f"the top 1/{a['eta']} continue to {a['ft_epochs']}. Random architectures: {a['random_archs']} random "
           f"sequences of 1-6 morphs of the seed, re-initialised, {a['budget_epochs'] // a['random_archs']} epochs "
           f"each (SGDR cycles {cycles(a['budget_epochs'] // a['random_archs'])}). Seed trained longer: the seed "
           f"architecture from scratch, SGDR cycles {cycles(a['budget_epochs'])} epochs. Selection by validation accuracy only (from-scratch methods may pick any epoch's snapshot); "
           "test accuracy is measured once per network that becomes the validation-best. "
           f"{a['reps']} repetitions, each with its own seeds and its own validation split; mean ± 95% CI "
           "(t distribution). `vs random archs`: relative change of the mean test error.", "",
           f"Anytime plot: [{plot_name}]({plot_name})", ""]
    for ds, runs in by_ds.items():
        r0 = runs[0]
        out += [f"## {ds}", "",
                f"Images {meta['image_size'][ds] or 'native'}; train {r0['n_train']}, validation {r0['n_val']}, "
                f"test {r0['n_test']} (fixed); {r0['steps_per_epoch']} steps per epoch, budget "
                f"{r0['budget_steps']} steps.", ""]
        out += method_table(runs) + [""]
        t2 = table2_table(runs)
        if t2:
            out += [f"### Paper Table 2 check on {ds}", ""] + t2 + [""]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ main
def gp_available() -> bool:
    """``gp`` is being written elsewhere; include it only when ``build_strategy`` knows it."""
    try:
        from morphnas.search.strategies import strategy_class
        strategy_class("gp")
        return True
    except Exception:
        return False


def _run(s: Setting) -> dict[str, Any]:
    return run_rep(s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="mnist5k,digits")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (repetitions side by side)")
    ap.add_argument("--train-limit", type=int, default=256, help="training images kept (both datasets)")
    ap.add_argument("--val-fraction", type=float, default=0.1, help="of the non-test images, held out for selection")
    ap.add_argument("--seed-epochs", type=int, default=3)
    ap.add_argument("--budget-epochs", type=int, default=15)
    ap.add_argument("--ft-epochs", type=int, default=2)
    ap.add_argument("--rung-epochs", type=int, default=1)
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--children", type=int, default=4)
    ap.add_argument("--random-archs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--ft-lr-factor", type=float, default=0.5)
    ap.add_argument("--strategies", default="hill_climb,evolution,tpe,gp,random_walk")
    ap.add_argument("--no-baselines", action="store_true", help="morph searches only (to try their settings)")
    ap.add_argument("--quick", action="store_true", help="tiny budget and 2 repetitions: checks the code runs")
    ap.add_argument("--out", default=None, help="prefix of the .md/.json/.png (default bench/results/search, "
                                                "with --quick bench/results/search_quick)")
    ap.add_argument("--from-json", default=None, help="only rebuild the report and plot from a saved JSON")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.train_limit, args.seed_epochs, args.budget_epochs = 2, 200, 1, 5
        args.children, args.random_archs = 2, 2
    out = Path(args.out or HERE / "results" / ("search_quick" if args.quick else "search"))
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        by_ds, meta = load_saved(Path(args.from_json))
    else:
        strategies = tuple(x for x in args.strategies.split(",") if x != "gp" or gp_available())
        settings = [Setting(ds, rep, DATASETS[ds]["image_size"], args.train_limit,
                            args.seed_epochs, args.budget_epochs, args.ft_epochs, args.rung_epochs, args.eta,
                            args.children, args.random_archs, args.lr, args.ft_lr_factor, strategies,
                            not args.no_baselines, args.val_fraction)
                    for rep in range(args.reps) for ds in args.datasets.split(",")]
        t0 = time.time()
        cmd = "python bench/search_efficiency.py " + " ".join(sys.argv[1:])
        meta = {"command": cmd.strip(), "seconds": 0.0, "args": vars(args), "strategies": list(strategies),
                "image_size": {ds: DATASETS[ds]["image_size"] for ds in args.datasets.split(",")}}
        results: list[dict[str, Any]] = []
        partial = out.parent / f"{out.name}_partial.jsonl"      # survives an interrupted run
        partial.write_text("")
        meta_file = out.parent / f"{out.name}_meta.json"
        meta_file.write_text(json.dumps(meta))
        with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
            for r in pool.imap_unordered(_run, settings, chunksize=1):
                results.append(r)
                with partial.open("a") as f:
                    f.write(json.dumps(r) + "\n")
                meta["seconds"] = time.time() - t0
                meta_file.write_text(json.dumps(meta))
        by_ds = {ds: sorted((r for r in results if r["dataset"] == ds), key=lambda r: r["rep"])
                 for ds in args.datasets.split(",")}
        out.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": by_ds}, indent=1))
        partial.unlink()
        meta_file.unlink()
    plot = out.parent / f"{out.name}_anytime.png"
    anytime_plot(by_ds, plot)
    text = report(by_ds, meta, plot.name)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
