"""Morph search against "train the seed longer" at equal training FLOPs (forward + backward multiply-adds).

Every method gets the same data, the same budget of training FLOPs (what the seed trained longer
spends in ``--budget-epochs`` epochs; scoring passes and rungs count) and the same selection rule:
the validation-best snapshot so far is the method's answer; its test error is measured once, when
it becomes the incumbent. A snapshot whose FLOPs lie past the budget does not count. The methods
use the product's own code: the ``grow`` strategy and the worker's ``execute`` (make the child,
score candidates, carry the optimizer state, train), ``make_child`` and ``train`` for the others.

* **seed trained longer**: the seed architecture from scratch on SGDR cycles of ``--cycle`` epochs;
  its **snapshot ensemble** averages the probabilities of its last 3 cycle-end snapshots;
* **grow (rung / gradient / first)**: the ``grow`` strategy: the seed trains one cycle, then each
  cycle continues its parent (weights, momentum, schedule), grown at the first ``--growth-points``
  restarts by the best of ``--candidates`` random morphs (scored as named; ``first`` takes a random one);
  its lineage ensemble averages the last 3 cycle-end networks of the lineage;
* **hill climbing** (NASH), plain and with successive halving: ``--children`` children of 1-2 morphs
  per generation, fine-tuned ``--ft-epochs`` at a tenth... of the seed's LR (``--ft-lr-factor``); its
  **population ensemble** averages the 3 validation-best members;
* **random architectures from scratch**: ``--random-archs`` random morph sequences of the seed,
  re-initialised, each trained an equal share of the FLOPs;
* **Table 2 check**: grow (rung)'s final architecture trained from scratch with the lineage's FLOPs.

    .venv/bin/python bench/equal_flops.py --regime r1 --reps 5 --jobs 2
    .venv/bin/python bench/equal_flops.py --quick          # a smoke test of the same code (CI-sized)
    python bench/equal_flops.py --device cuda ...           # every training on the GPU (bench/gpu_check.py)
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _checkout import use_checkout  # noqa: E402

use_checkout()     # an installed morphnas as it is, else this checkout (gpu_check runs it uninstalled)

from search_efficiency import ci95, fmt, reinit  # noqa: E402

from morphnas.morphism.compile import compile_network  # noqa: E402
from morphnas.morphism.serialize import load_network, save_network  # noqa: E402
from morphnas.search.config import DataConfig, config_from_dict  # noqa: E402
from morphnas.search.data.core import load_data  # noqa: E402
from morphnas.search.state.population import Member, Population  # noqa: E402
from morphnas.search.state.records import TrialResult  # noqa: E402
from morphnas.search.strategies import build_strategy  # noqa: E402
from morphnas.search.strategies.mutator import SpaceMutator  # noqa: E402
from morphnas.search.trial.child import make_child  # noqa: E402
from morphnas.search.trial.jobs import child_job, environment, seed_job  # noqa: E402
from morphnas.search.trial.train import TrainSpec, evaluate, train, training_flops  # noqa: E402
from morphnas.search.trial.worker import execute  # noqa: E402
from morphnas.spaces.actions import ActionSpace  # noqa: E402
from morphnas.spaces.counting import count  # noqa: E402
from morphnas.spaces.registry import create_network  # noqa: E402

OPS = {"deepen": {}, "widen": {"factor": [2.0]}, "insert_path": {}, "morph_block": {"k1": [1, 3], "k2": [1, 3]}}
REGIMES = {   # (seed width, training images kept (None: all), budget epochs)
    "r1": (2, None, 40), "r1x3": (2, None, 120), "r2": (8, None, 40), "r3": (8, 640, 31),
}


@dataclass(frozen=True)
class Setting:
    regime: str
    rep: int
    width: int
    train_limit: int | None
    budget_epochs: int
    cycle: int = 4
    lr: float = 0.1
    candidates: int = 4
    growth_points: int = 3
    rung_fraction: float = 0.25
    children: int = 4
    ft_epochs: int = 2
    ft_lr_factor: float = 0.5
    random_archs: int = 4
    grow_actions: tuple[int, int] = (1, 2)    # morphs per grow candidate (the action space's actions_per_child)
    methods: tuple[str, ...] = ("seed", "grow:rung", "grow:gradient", "grow:first", "hill", "hill+halving",
                                "random", "table2")
    device: str = "cpu"                       # where every training runs (--device)


DEVICE = "cpu"   # the repetition's device, set by run_rep in its own process


def _train(*args: Any, **kw: Any) -> Any:
    return train(*args, device=DEVICE, **kw)


class Tracker:
    """A method's spent FLOPs and its validation-selected incumbent (only snapshots within budget)."""

    def __init__(self, data: Any, budget: float):
        self.data, self.budget = data, budget
        self.flops = 0
        self.best_val, self.best_test, self.best_net = -1.0, float("nan"), None
        self.curve: list[tuple[float, float]] = []     # (FLOPs, test error of the incumbent)
        self.t0 = time.time()

    def offer(self, net: Any, val: float, flops: float) -> None:
        if flops > self.budget * (1 + 1e-9) or val <= self.best_val:
            return
        self.best_val, self.best_net = val, net
        self.best_test = evaluate(net, self.data.test)
        self.curve.append((float(flops), 1.0 - self.best_test))

    def result(self, **kw: Any) -> dict[str, Any]:
        return {"val": self.best_val, "test": self.best_test, "flops": min(self.flops, self.budget),
                "params": count(self.best_net).params if self.best_net is not None else 0,
                "seconds": time.time() - self.t0, "curve": self.curve, **kw}


def ensemble_test(nets: list[Any], data: Any) -> float:
    """Test accuracy of the averaged softmax of ``nets`` (eval mode)."""
    with torch.no_grad():
        probs = sum(torch.softmax(compile_network(n).eval()(data.test.x), 1) for n in nets)
    return float((probs.argmax(1) == data.test.y).float().mean())


def sgdr(s: Setting, epochs: int, lr: float | None = None, cycle: int | None = None) -> TrainSpec:
    return TrainSpec(epochs, lr or s.lr, schedule="sgdr", restart_epochs=cycle or s.cycle, restart_mult=1)


def epoch_flops(net: Any, data: Any) -> int:
    return training_flops(net, len(data.train))


# ------------------------------------------------------------------------------ methods
def seed_longer(s: Setting, data: Any, seed_net: Any, budget: float) -> dict[str, Any]:
    tr = Tracker(data, budget)
    snaps: list[Any] = []

    def on_epoch(rep, net):
        tr.offer(net, rep.val_acc, rep.train_flops)
        if rep.epoch % s.cycle == 0:
            snaps.append(net)
    _, reps = _train(reinit(seed_net, s.rep + 50), data, sgdr(s, s.budget_epochs), seed=s.rep + 50, on_epoch=on_epoch)
    tr.flops = reps[-1].train_flops
    return tr.result(ensemble_test=ensemble_test(snaps[-3:], data))


def grow(s: Setting, data: Any, seed_net: Any, budget: float, scoring: str, root: Path) -> dict[str, Any]:
    """The ``grow`` strategy, its jobs built as the driver builds them and run by the worker's execute."""
    (root / "seed_net").mkdir(parents=True, exist_ok=True)
    save_network(reinit(seed_net, s.rep + 50), root / "seed_net")
    cfg = config_from_dict({
        "name": f"grow_{scoring}", "runs_dir": str(root), "random_seed": s.rep,
        "seed": {"network": str(root / "seed_net"), "epochs": s.cycle, "lr": s.lr, "schedule": "sgdr",
                 "restart_epochs": s.cycle, "restart_mult": 1},
        "data": {"dataset": "mnist5k", "image_size": 14, "train_limit": s.train_limit, "val_fraction": 0.1,
                 "augment": "none"},
        "actions": {"ops": OPS, "actions_per_child": list(s.grow_actions), "constraints": {"max_params": 200000}},
        "strategy": {"name": "grow", "candidates": s.candidates, "scoring": scoring, "rung_fraction": s.rung_fraction,
                     "growth_points": s.growth_points},
        "budget": {"trials": 1000}})
    run = root / cfg.name
    env = environment(cfg, run, 1.0 if DEVICE != "cpu" else 0.0, None)
    tr = Tracker(data, budget)
    ends: list[Any] = []
    pop = Population()

    def run_job(job) -> TrialResult:
        base = tr.flops
        mdir = run / job.member_path

        def report(m):
            r = json.loads(m["trial_result"])
            net = load_network(mdir)
            tr.offer(net, m["val_acc"], base + r["train_flops"])
        res = execute(job, report)
        tr.flops = base + res.train_flops
        ends.append(load_network(mdir))
        return res

    res = run_job(seed_job(cfg).replace(**env))
    pop.add(Member.from_result(res, born=0))
    mutator = SpaceMutator(ActionSpace.from_dict(cfg.actions), lambda mid: load_network(run / pop.get(mid).path))
    strat = build_strategy(cfg.strategy, mutator, cfg.random_seed)
    strat.observe(res, pop)
    idx = 1
    grown: list[str] = []
    while tr.flops < budget:
        prop = strat.propose(pop)
        if prop is None:
            break
        job = child_job(cfg, run, pop, prop, idx).replace(**env)
        res = run_job(job)
        if res.state == "COMPLETE":
            pop.add(Member.from_result(res, born=idx))
            grown += [f"{a['op']}" for a in res.actions]
        strat.observe(res, pop)
        idx += 1
    final = ends[-1]
    return tr.result(ensemble_test=ensemble_test(ends[-3:], data), final_params=count(final).params,
                     grown=grown, cycles=idx, lineage_flops=tr.flops, final_net=str(run / pop.get(f"m{idx - 1}").path)
                     if f"m{idx - 1}" in pop else None)


def hill_climb(s: Setting, data: Any, seed_net: Any, budget: float, halving: bool,
               section: dict[str, Any] | None = None) -> dict[str, Any]:
    """NASH hill climbing (or another sibling-training strategy: ``section``) with the product's
    strategy, mutator, make_child and train, in FLOPs; children of a batch are proposed together."""
    tr = Tracker(data, budget)
    seed_trained, reps = _train(reinit(seed_net, s.rep + 50), data, sgdr(s, s.cycle), seed=s.rep + 50)
    tr.flops = reps[-1].train_flops
    tr.offer(seed_trained, reps[-1].val_acc, tr.flops)
    nets = {"m0": seed_trained}
    pop = Population()
    pop.add(Member("m0", None, 0, 0, reps[-1].val_acc, count(seed_trained).params, 0, "m0"))
    mutator = SpaceMutator(ActionSpace.from_dict({"ops": OPS, "actions_per_child": [1, 2],
                                                  "constraints": {"max_params": 200000}}), lambda mid: nets[mid])
    strat = build_strategy(section or {"name": "hill_climb", "children": s.children}, mutator, seed=s.rep)
    ft = replace(sgdr(s, s.ft_epochs, s.lr * s.ft_lr_factor, 1))
    born = 0
    while tr.flops < budget:
        batch = []
        while len(batch) < s.children:
            p = strat.propose(pop)
            if p is None:
                break
            batch.append(p)
        if not batch:
            break
        first = []
        rung = 1 if halving else s.ft_epochs
        for p in batch:
            born += 1
            child = make_child(nets[p.parent_id], p.actions, data, seed=s.rep * 1000 + born).network
            base = tr.flops
            trained, reps = _train(child, data, replace(ft, epochs=rung), seed=s.rep * 1000 + born,
                                  on_epoch=lambda rep, net, b=base: tr.offer(net, rep.val_acc, b + rep.train_flops))
            tr.flops = base + reps[-1].train_flops
            nets[f"m{born}"] = trained
            first.append([f"m{born}", p, reps[-1].val_acc])
        if halving:
            for entry in sorted(first, key=lambda e: -e[2])[:max(1, len(first) // 3)]:
                base = tr.flops
                trained, reps = _train(nets[entry[0]], data, replace(ft, epochs=s.ft_epochs - 1),
                                      seed=s.rep * 1000 + 500 + born,
                                      on_epoch=lambda rep, net, b=base: tr.offer(net, rep.val_acc, b + rep.train_flops))
                tr.flops = base + reps[-1].train_flops
                nets[entry[0]], entry[2] = trained, reps[-1].val_acc
        for mid, p, val in first:
            par = pop.get(p.parent_id)
            c = count(nets[mid])
            r = TrialResult(mid, p.parent_id, par.depth + 1, "COMPLETE", values=(val,), params=c.params,
                            flops=c.flops, extra={"proposal_id": p.proposal_id})
            r = replace(r, values=tuple(float(v) for v in strat.objective_values(r)))
            pop.add(Member(mid, p.parent_id, par.depth + 1, born, val, c.params, c.flops, mid))
            strat.observe(r, pop)
    top = [nets[m.id] for m in pop.ranked()[:3]]
    return tr.result(ensemble_test=ensemble_test(top, data), members=len(pop))


def random_archs(s: Setting, data: Any, seed_net: Any, budget: float) -> dict[str, Any]:
    tr = Tracker(data, budget)
    space = ActionSpace.from_dict({"ops": OPS, "actions_per_child": [1, 6], "constraints": {"max_params": 200000}})
    rng = np.random.default_rng([s.rep, 100])
    for k in range(s.random_archs):
        arch = make_child(seed_net, space.sample(seed_net, rng), data, seed=s.rep * 10 + k).network
        epochs = max(1, int(budget / s.random_archs // epoch_flops(arch, data)))
        base = tr.flops
        _, reps = _train(reinit(arch, s.rep * 10 + k), data, sgdr(s, epochs), seed=s.rep * 10 + k,
                        on_epoch=lambda rep, net, b=base: tr.offer(net, rep.val_acc, b + rep.train_flops))
        tr.flops = base + reps[-1].train_flops
    return tr.result()


def table2(s: Setting, data: Any, grown: dict[str, Any]) -> dict[str, Any] | None:
    """Grow's final architecture from scratch, on the same schedule, with the lineage's FLOPs."""
    if not grown.get("final_net"):
        return None
    net = load_network(grown["final_net"])
    epochs = max(1, int(grown["lineage_flops"] // epoch_flops(net, data)))
    tr = Tracker(data, grown["lineage_flops"])
    _, reps = _train(reinit(net, s.rep + 7), data, sgdr(s, epochs), seed=s.rep + 9,
                    on_epoch=lambda rep, n: tr.offer(n, rep.val_acc, rep.train_flops))
    tr.flops = reps[-1].train_flops
    return tr.result(epochs=epochs, grown_test=grown["test"])


# ------------------------------------------------------------------------------ one repetition
def run_rep(s: Setting) -> dict[str, Any]:
    global DEVICE
    DEVICE = s.device
    torch.set_num_threads(1)
    torch.manual_seed(s.rep)
    data = load_data(DataConfig(dataset="mnist5k", image_size=14, train_limit=s.train_limit, val_fraction=0.1,
                                augment="none"), seed=s.rep)
    seed_net = create_network("tiny_resnet", num_classes=10, seed=s.rep, width=s.width, input_size=14)
    budget = float(epoch_flops(seed_net, data) * s.budget_epochs)
    out: dict[str, Any] = {"setting": asdict(s), "budget_flops": budget, "n_train": len(data.train),
                           "seed_params": count(seed_net).params, "methods": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for m in s.methods:
            t = time.time()
            if m == "seed":
                r = seed_longer(s, data, seed_net, budget)
            elif m.startswith("grow:"):
                r = grow(s, data, seed_net, budget, m.split(":")[1], Path(tmp) / m.replace(":", "_"))
            elif m.startswith("hill"):
                r = hill_climb(s, data, seed_net, budget, halving=m.endswith("halving"))
            elif m == "lemonade":     # its validation-best member (accuracy is one of its objectives)
                r = hill_climb(s, data, seed_net, budget, halving=False,
                               section={"name": "lemonade", "cost": ["params"], "candidates": 8,
                                        "accept": s.children})
            elif m == "random":
                r = random_archs(s, data, seed_net, budget)
            elif m == "table2":
                if "grow:rung" not in out["methods"]:
                    continue
                r = table2(s, data, out["methods"]["grow:rung"])
                if r is None:
                    continue
            else:
                raise SystemExit(f"unknown method {m!r}")
            out["methods"][m] = r
            print(f"[{s.regime} rep {s.rep}] {m}: test err {100 * (1 - r['test']):.2f}% "
                  f"({time.time() - t:.0f}s)", file=sys.stderr, flush=True)
    return out


# ------------------------------------------------------------------------------ report
LABELS = {"seed": "seed trained longer", "grow:rung": "grow (rung scoring)", "grow:gradient": "grow (gradient scoring)",
          "grow:first": "grow (no scoring: random morph)", "hill": "hill climbing", "hill+halving":
          "hill climbing + halving", "lemonade": "LEMONADE (grow-only), its validation-best member",
          "random": "random architectures from scratch",
          "table2": "Table 2: grown architecture from scratch, lineage FLOPs"}
ENSEMBLES = {"seed": "snapshot ensemble (last 3 cycles)", "grow:rung": "lineage ensemble (last 3 cycles)",
             "hill": "population ensemble (top 3)"}


def table(runs: list[dict[str, Any]]) -> list[str]:
    ref = [1 - r["methods"]["seed"]["test"] for r in runs if "seed" in r["methods"]]
    lines = ["| method | test error % | vs seed trained longer | params of the answer | GFLOPs used | wall s |",
             "|---|---|---|---|---|---|"]
    order = [m for m in LABELS if m in runs[0]["methods"]] + [m for m in runs[0]["methods"] if m not in LABELS]
    for k in order:
        rs = [r["methods"][k] for r in runs if k in r["methods"]]
        errs = [1 - x["test"] for x in rs]
        rel = f"{100 * (np.mean(errs) - np.mean(ref)) / np.mean(ref):+.0f}%" if ref and k != "seed" else ""
        lines.append(f"| {LABELS.get(k, k)} | {fmt(errs)} | {rel} | {np.mean([x['params'] for x in rs]):.0f} | "
                     f"{np.mean([x['flops'] for x in rs]) / 1e9:.2f} | {np.mean([x['seconds'] for x in rs]):.0f} |")
        if k in ENSEMBLES and all("ensemble_test" in x for x in rs):
            e = [1 - x["ensemble_test"] for x in rs]
            rel = f"{100 * (np.mean(e) - np.mean(ref)) / np.mean(ref):+.0f}%" if ref else ""
            lines.append(f"| &nbsp;&nbsp;{ENSEMBLES[k]} | {fmt(e)} | {rel} | (3 networks) | | |")
    return lines


def anytime(runs_by: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(runs_by), figsize=(7 * len(runs_by), 5), squeeze=False)
    for ax, (reg, runs) in zip(axes[0], runs_by.items()):
        budget = runs[0]["budget_flops"]
        grid = np.linspace(0, budget, 200)
        for i, k in enumerate(m for m in runs[0]["methods"] if m != "table2"):
            ys = []
            for r in runs:
                c = r["methods"][k]["curve"]
                xs, es = np.array([p[0] for p in c]), np.array([p[1] for p in c])
                pos = np.searchsorted(xs, grid, side="right") - 1
                ys.append(np.where(pos >= 0, es[np.clip(pos, 0, None)], np.nan))
            y = np.array(ys) * 100
            with np.errstate(all="ignore"):
                m = np.nanmean(y, axis=0)
            ax.plot(grid / 1e9, m, "-" if k.startswith("grow") else "--", label=LABELS.get(k, k),
                    color=plt.cm.tab10(i), lw=1.6)
        ax.set_title(f"{reg}: {len(runs)} repetitions (mean)")
        ax.set_xlabel("training GFLOPs (forward + backward multiply-adds), scoring included")
        ax.set_ylabel("test error % of the validation-best network so far")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(runs_by: dict[str, list[dict[str, Any]]], meta: dict[str, Any], plot: str) -> str:
    out = ["# Morph search vs the seed trained longer, at equal training FLOPs", "",
           f"`{meta['command']}` — {meta['seconds'] / 60:.1f} min, {meta['jobs']} processes of one torch thread on "
           "2 shared cores. Mean ± 95% CI over repetitions (t distribution); each repetition has its own seeds "
           "and validation split. Data: mnist5k at 14x14 (real MNIST digits), 10% of the non-test images held "
           "out for selection, a fixed 1,000-image test split.", "", f"Anytime plot: [{plot}]({plot})", ""]
    for reg, runs in runs_by.items():
        s = runs[0]["setting"]
        out += [f"## {reg}: seed width {s['width']} ({runs[0]['seed_params']} params), "
                f"{runs[0]['n_train']} training images, budget {s['budget_epochs']} seed epochs = "
                f"{runs[0]['budget_flops'] / 1e9:.2f} GFLOPs", "",
                f"SGDR cycles of {s['cycle']} epochs at lr {s['lr']}; grow: {s['candidates']} candidates at each of "
                f"the first {s['growth_points']} restarts (rung = {s['rung_fraction']} epoch), "
                f"{s['grow_actions'][0]}-{s['grow_actions'][1]} morphs per candidate; hill climbing: "
                f"{s['children']} children per generation, {s['ft_epochs']} epochs at lr "
                f"{s['lr'] * s['ft_lr_factor']:g}; {s['random_archs']} random architectures.", ""]
        out += table(runs) + [""]
        g = [r["methods"]["grow:rung"] for r in runs if "grow:rung" in r["methods"]]
        if g:
            out += [f"grow (rung) grew by: " + "; ".join(", ".join(x["grown"]) or "-" for x in g) + "; final params "
                    + ", ".join(str(x["final_params"]) for x in g) + ".", ""]
    return "\n".join(out) + "\n"


def _run(s: Setting) -> dict[str, Any]:
    return run_rep(s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regime", default="r1", help="comma-separated: " + ", ".join(REGIMES))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--methods", default=None, help="comma-separated subset of the methods")
    ap.add_argument("--quick", action="store_true", help="2 epochs of budget on 256 images, 1 repetition")
    ap.add_argument("--grow-actions", default=None, help="morphs per grow candidate, 'lo,hi' (default 1,2)")
    ap.add_argument("--growth-points", type=int, default=None)
    ap.add_argument("--candidates", type=int, default=None)
    ap.add_argument("--cycle", type=int, default=None, help="SGDR cycle length in epochs (default 4)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--device", default="cpu", help="train on this device (cuda: the workers' jobs ask for the GPU)")
    ap.add_argument("--from-json", default=None, help="only rebuild the report and plot from a saved JSON")
    ap.add_argument("--merge", action="append", default=[], metavar="JSON",
                    help="with --from-json: add the methods of another saved run of the same regimes and repetitions")
    args = ap.parse_args()
    out = Path(args.out or HERE / "results" / ("equal_flops_quick" if args.quick else "equal_flops"))
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        runs_by, meta = saved["runs"], saved["meta"]
        for extra in args.merge:
            more = json.loads(Path(extra).read_text())
            for reg, runs in more["runs"].items():
                by_rep = {r["setting"]["rep"]: r for r in runs}
                for r in runs_by.get(reg, []):
                    other = by_rep.get(r["setting"]["rep"])
                    if other is None or other["budget_flops"] != r["budget_flops"]:
                        raise SystemExit(f"--merge {extra}: {reg} rep {r['setting']['rep']} is missing or differs")
                    for k, v in other["methods"].items():
                        r["methods"].setdefault(k, v)
            meta["command"] += f" + {more['meta']['command']}"
            meta["seconds"] += more["meta"]["seconds"]
    else:
        settings = []
        for reg in args.regime.split(","):
            width, limit, budget = REGIMES[reg]
            s = Setting(reg, 0, width, limit, budget)
            if args.quick:
                s = replace(s, train_limit=256, budget_epochs=6, cycle=2, candidates=2, growth_points=1,
                            children=2, random_archs=2)
            if args.methods:
                s = replace(s, methods=tuple(args.methods.split(",")))
            s = replace(s, device=args.device)
            if args.grow_actions:
                s = replace(s, grow_actions=tuple(int(x) for x in args.grow_actions.split(",")))
            for knob in ("growth_points", "candidates", "cycle"):
                if getattr(args, knob) is not None:
                    s = replace(s, **{knob: getattr(args, knob)})
            settings += [replace(s, rep=rep) for rep in range(1 if args.quick else args.reps)]
        t0 = time.time()
        partial = out.parent / f"{out.name}_partial.jsonl"
        partial.write_text("")
        results = []
        with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
            for r in pool.imap_unordered(_run, settings, chunksize=1):
                results.append(r)
                with partial.open("a") as f:
                    f.write(json.dumps(r) + "\n")
        runs_by = {}
        for r in sorted(results, key=lambda r: (r["setting"]["regime"], r["setting"]["rep"])):
            runs_by.setdefault(r["setting"]["regime"], []).append(r)
        meta = {"command": "python bench/equal_flops.py " + " ".join(sys.argv[1:]), "seconds": time.time() - t0,
                "jobs": args.jobs}
        out.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": runs_by}, indent=1))
        partial.unlink()
    plot = out.parent / f"{out.name}_anytime.png"
    anytime(runs_by, plot)
    text = report(runs_by, meta, plot.name)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
