"""Growing a vision transformer by exact morphs vs training the target size from scratch, at equal
training FLOPs (forward + backward multiply-adds, ``training_flops``).

Three methods, one budget: what the **target** ViT spends in ``--budget-epochs`` epochs.

* **grown**: the small ViT trains on ``--grow-fraction`` of the budget, then is grown to the target
  size by exact morphs applied through ``make_child`` (``widen`` of the model width x2 with random
  Net2Net shares, ``widen`` x2 of every MLP hidden layer, then one ``deepen_block`` after every block:
  depth x2), its AdamW state carried through the morphs (``carried_state``), and trains on for the
  rest of the budget (the morph's own check passes are counted too);
* **target from scratch**: the target architecture (the same sizes, built by the ``tiny_vit`` seed,
  standard attention scale) trained for the whole budget;
* **small trained longer**: the small ViT trained for the whole budget;
* **control** (``small_restart``): the grown lineage's first phase and schedule, the small ViT going
  on ungrown after the growth point (its optimizer state kept): what the schedule alone does.

Every method trains with AdamW on a cosine to zero (the grown one: a cosine per phase, the second
from the full LR again: ``--schedule restart``, chosen on validation in a pilot); its answer is the
final network (no selection), its test error measured once. After every epoch the validation loss
and error are recorded against the FLOPs spent so far (monitoring: not counted). The compute the
grown model needs to reach the from-scratch model's final validation loss is read off its curve
(linear between epochs).

    .venv/bin/python bench/grow_transformer.py --reps 5 --jobs 2
    .venv/bin/python bench/grow_transformer.py --quick          # a smoke test of the same code (< 30 s)
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _checkout import use_checkout  # noqa: E402

use_checkout()     # an installed morphnas as it is, else this checkout

from search_efficiency import ci95, fmt  # noqa: E402

from morphnas.morphism.graph import Network  # noqa: E402
from morphnas.search.config import DataConfig  # noqa: E402
from morphnas.search.data.core import load_data  # noqa: E402
from morphnas.search.trial.child import VERIFY_BATCH, make_child  # noqa: E402
from morphnas.search.trial.grow import carried_state, validation_loss  # noqa: E402
from morphnas.search.trial.train import TrainSpec, evaluate, train, training_flops  # noqa: E402
from morphnas.spaces.actions import Action  # noqa: E402
from morphnas.spaces.counting import count  # noqa: E402
from morphnas.spaces.registry import create_network  # noqa: E402

METHODS = ("grown", "scratch", "small", "small_restart")
LABELS = {"grown": "grown (small, then morphed to the target size)", "scratch": "target size from scratch",
          "small": "small trained longer", "small_restart": "small, grown's two-phase schedule, not grown (control)"}


@dataclass(frozen=True)
class Setting:
    rep: int
    dim: int = 32                 # the small ViT (tiny_vit at 14x14, 7x7 patches: 4 tokens + a class token)
    depth: int = 2
    heads: int = 2
    mlp_dim: int = 64
    budget_epochs: int = 20       # the budget: this many epochs of the target (dim x2, depth x2, MLP x2)
    grow_fraction: float = 0.25   # share of the budget the small ViT trains before it is grown (whole target
    #                               epochs remain after growth)
    schedule: str = "restart"     # grown: a new cosine at growth ("restart") or one over the lineage ("continue")
    grow_lr_factor: float = 1.0   # grown, schedule "restart": the new cosine starts at this x lr
    carry_state: bool = True      # grown: the optimizer state mapped through the morphs (False: a fresh AdamW)
    warmup: int = 0               # restart: epochs at a constant 0.1 x lr after the growth point (both lineages)
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    train_limit: int | None = None
    methods: tuple[str, ...] = METHODS


def spec(s: Setting, epochs: int, lr_factor: float = 1.0, **kw: Any) -> TrainSpec:
    return TrainSpec(epochs, s.lr * lr_factor, weight_decay=s.weight_decay, optimizer=s.optimizer, schedule="cosine",
                     **kw)


def small_net(s: Setting) -> Network:
    return create_network("tiny_vit", input_size=14, patch=7, dim=s.dim, depth=s.depth, heads=s.heads,
                          mlp_dim=s.mlp_dim, seed=s.rep)


def target_net(s: Setting) -> Network:
    return create_network("tiny_vit", input_size=14, patch=7, dim=2 * s.dim, depth=2 * s.depth, heads=s.heads,
                          mlp_dim=2 * s.mlp_dim, seed=s.rep + 100)


def growth_actions(s: Setting, seed: int) -> list[Action]:
    """Width x2 (model width, then each MLP hidden layer), then a new block after every block."""
    acts = [Action("widen", "embed", {"factor": 2, "split": "random"}, seed)]
    acts += [Action("widen", f"encoder.layers.{i}.h", {"factor": 2, "split": "random"}, seed + 1 + i)
             for i in range(s.depth)]
    acts += [Action("deepen_block", f"encoder.layers.{i}.out", {}, seed + 100 + i) for i in range(s.depth)]
    return acts


class Curve:
    """Validation loss and error after every epoch against the training FLOPs spent so far."""

    def __init__(self, data: Any):
        self.data, self.points = data, []

    def add(self, net: Network, val_acc: float, flops: float) -> None:
        self.points.append((float(flops), validation_loss(net, self.data), 1.0 - float(val_acc)))


def result(net: Network, curve: Curve, data: Any, t0: float, **kw: Any) -> dict[str, Any]:
    return {"test": evaluate(net, data.test), "val_loss": curve.points[-1][1], "val_err": curve.points[-1][2],
            "flops": curve.points[-1][0], "params": count(net).params, "seconds": time.time() - t0,
            "curve": curve.points, **kw}


def from_scratch(s: Setting, data: Any, net: Network, epochs: int) -> dict[str, Any]:
    t0, curve = time.time(), Curve(data)
    out, _ = train(net, data, spec(s, epochs), seed=s.rep + 50,
                   on_epoch=lambda rep, n: curve.add(n, rep.val_acc, rep.train_flops))
    return result(out, curve, data, t0, epochs=epochs)


def grown(s: Setting, data: Any, budget: float, grow: bool = True) -> dict[str, Any]:
    """The grown lineage; ``grow=False``: its control, the same first phase and schedule with the small
    ViT going on ungrown (its optimizer state kept) for the rest of the budget."""
    t0, curve = time.time(), Curve(data)
    small, target = small_net(s), target_net(s)
    f_small, f_target = training_flops(small, len(data.train)), training_flops(target, len(data.train))
    # whole epochs of the target after growth; the small ViT gets what is left (less than one of its
    # epochs unspent). The preservation check runs parent and child forward on VERIFY_BATCH
    # validation images: counted.
    e_big = max(1, round((1 - s.grow_fraction) * s.budget_epochs))
    check = (count(small).flops + count(target).flops) * min(VERIFY_BATCH, len(data.val))
    e_small = max(1, int((budget - e_big * f_target - check) // f_small))
    e_rest = int((budget - e_small * f_small) // f_small)     # the control's second phase
    state: dict[str, Any] = {}
    total = None if s.schedule == "restart" else e_small + (e_big if grow else e_rest)
    parent, _ = train(small, data, spec(s, e_small, total_epochs=total), seed=s.rep + 60,
                      on_epoch=lambda rep, n: curve.add(n, rep.val_acc, rep.train_flops),
                      on_optimizer_state=lambda st: state.update(opt=st))
    if not grow:
        base = curve.points[-1][0]
        out = second_phase(s, parent, data, e_rest, e_small, total, state["opt"] if s.carry_state else None,
                           curve, base, f_small)
        return result(out, curve, data, t0, epochs=(e_small, e_rest), grown_at=base)
    child = make_child(parent, growth_actions(s, 1000 * s.rep), data, seed=s.rep)
    if count(child.network).params != count(target).params or count(child.network).flops != count(target).flops:
        raise SystemExit(f"the grown network ({count(child.network).params} params) is not the target's size "
                         f"({count(target).params})")
    spent = curve.points[-1][0] + check
    out = second_phase(s, child.network, data, e_big, e_small, total,
                       carried_state(parent, child, state["opt"]) if s.carry_state else None, curve, spent, f_target)
    return result(out, curve, data, t0, epochs=(e_small, e_big), grown_at=spent,
                  preservation_error=child.preservation_error)


def second_phase(s: Setting, net: Network, data: Any, epochs: int, offset: int, total: int | None, opt: Any,
                 curve: Curve, base: float, f_epoch: float) -> Network:
    """The lineage after the growth point: ``s.warmup`` epochs at a constant tenth of the LR (restart
    only), then the cosine; the optimizer state goes on from phase to phase."""
    state = {"opt": opt}
    warm = min(s.warmup, epochs - 1) if total is None else 0
    if warm:
        net, _ = train(net, data, TrainSpec(warm, 0.1 * s.lr * s.grow_lr_factor, weight_decay=s.weight_decay,
                                            optimizer=s.optimizer, schedule="constant"),
                       seed=s.rep + 80, optimizer_state=opt, on_optimizer_state=lambda st: state.update(opt=st),
                       on_epoch=lambda rep, n: curve.add(n, rep.val_acc, base + rep.train_flops))
        base += warm * f_epoch
    phase = spec(s, epochs - warm, 1.0 if total else s.grow_lr_factor, epoch_offset=offset if total else 0,
                 total_epochs=total)
    out, _ = train(net, data, phase, seed=s.rep + 70, optimizer_state=state["opt"],
                   on_epoch=lambda rep, n: curve.add(n, rep.val_acc, base + rep.train_flops))
    return out


def reach(curve: list[list[float]], level: float) -> float | None:
    """The FLOPs at which ``curve``'s validation loss first reaches ``level`` (linear between epochs)."""
    prev = None
    for f, vl, _ in curve:
        if vl <= level:
            if prev is None or prev[1] <= vl:
                return f
            return prev[0] + (f - prev[0]) * (prev[1] - level) / (prev[1] - vl)
        prev = (f, vl)
    return None


# ------------------------------------------------------------------------------ one repetition
def run_rep(s: Setting) -> dict[str, Any]:
    torch.set_num_threads(1)
    torch.manual_seed(s.rep)
    data = load_data(DataConfig(dataset="mnist5k", image_size=14, train_limit=s.train_limit, val_fraction=0.1,
                                augment="none"), seed=s.rep)
    small, target = small_net(s), target_net(s)
    f_small, f_target = training_flops(small, len(data.train)), training_flops(target, len(data.train))
    budget = float(f_target * s.budget_epochs)
    out: dict[str, Any] = {"setting": asdict(s), "budget_flops": budget, "n_train": len(data.train),
                           "small_params": count(small).params, "target_params": count(target).params,
                           "flops_ratio": f_target / f_small, "methods": {}}
    for m in s.methods:
        t = time.time()
        if m == "grown":
            r = grown(s, data, budget)
        elif m == "scratch":
            r = from_scratch(s, data, target, s.budget_epochs)
        elif m == "small_restart":
            r = grown(s, data, budget, grow=False)
        elif m == "small":
            r = from_scratch(s, data, small, int(budget // f_small))
        else:
            raise SystemExit(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
        out["methods"][m] = r
        print(f"[rep {s.rep}] {m}: test err {100 * (1 - r['test']):.2f}%, val loss {r['val_loss']:.4f} "
              f"({time.time() - t:.0f}s)", file=sys.stderr, flush=True)
    if "scratch" in out["methods"]:
        level = out["methods"]["scratch"]["val_loss"]
        for r in out["methods"].values():
            f = reach(r["curve"], level)
            r["reach_fraction"] = None if f is None else f / out["methods"]["scratch"]["flops"]
    return out


# ------------------------------------------------------------------------------ report
def reach_fractions(runs: list[dict[str, Any]], k: str, after_growth: bool = False) -> list[float | None]:
    """Per repetition: the FLOPs at which method ``k``'s curve first reaches the from-scratch model's
    final validation loss, as a fraction of the from-scratch FLOPs (None: never). ``after_growth``:
    only the grown network's own points count (from the growth on)."""
    out = []
    for r in runs:
        x, ref = r["methods"][k], r["methods"]["scratch"]
        curve = [p for p in x["curve"] if p[0] > x["grown_at"]] if after_growth else x["curve"]
        f = reach(curve, ref["val_loss"])
        out.append(None if f is None else f / ref["flops"])
    return out


def fmt_reach(fr: list[float | None]) -> str:
    got = [f for f in fr if f is not None]
    if not got:
        return f"never (0 of {len(fr)})"
    m, h = ci95(got)
    return f"{m:.2f} ± {h:.2f}" + (f" ({len(got)} of {len(fr)} reach it)" if len(got) < len(fr) else "")


def mean_curve(runs: list[dict[str, Any]], k: str, grid: np.ndarray, col: int = 1,
               after_growth: bool = False) -> np.ndarray:
    """Method ``k``'s curve (column ``col``: 1 val loss, 2 val error) averaged over repetitions on
    ``grid`` (linear between epochs; NaN where a repetition has no point yet)."""
    ys = []
    for r in runs:
        x = r["methods"][k]
        c = np.array([p for p in x["curve"] if not after_growth or p[0] > x["grown_at"]])
        ys.append(np.interp(grid, c[:, 0], c[:, col], left=np.nan, right=np.nan))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # no curve there yet: an empty mean
        return np.nanmean(np.array(ys), axis=0)


def mean_reach(runs: list[dict[str, Any]], k: str, after_growth: bool = False) -> float | None:
    """On the mean curves: where method ``k``'s mean validation loss (every repetition has a point)
    first reaches the from-scratch model's mean final one, as a fraction of the budget."""
    grid = np.linspace(0, runs[0]["budget_flops"], 2001)
    y = mean_curve(runs, k, grid, after_growth=after_growth)
    starts = [r["methods"][k]["curve"][0][0] if not after_growth else
              next(p[0] for p in r["methods"][k]["curve"] if p[0] > r["methods"][k]["grown_at"]) for r in runs]
    y[grid < max(starts)] = np.nan
    level = float(np.mean([r["methods"]["scratch"]["val_loss"] for r in runs]))
    pts = [[float(f), float(v), 0.0] for f, v in zip(grid, y) if np.isfinite(v)]
    f = reach(pts, level)
    return None if f is None else f / runs[0]["budget_flops"]


def table(runs: list[dict[str, Any]]) -> list[str]:
    lines = ["| method | test error % | final val loss | final val error % | reaches scratch's final val loss at "
             "(× scratch FLOPs) | params | GFLOPs used | wall s |", "|---|---|---|---|---|---|---|---|"]
    for k in [m for m in METHODS if m in runs[0]["methods"]]:
        rs = [r["methods"][k] for r in runs]
        rf = fmt_reach(reach_fractions(runs, k)) if "scratch" in runs[0]["methods"] else ""
        if k in ("grown", "small_restart") and rf:
            rf += f"; {'the grown network itself' if k == 'grown' else 'its second phase'} (after the growth point): " \
                  f"{fmt_reach(reach_fractions(runs, k, True))}"
        lines.append(f"| {LABELS[k]} | {fmt([1 - x['test'] for x in rs])} | {fmt([x['val_loss'] for x in rs], 1, 4)} "
                     f"| {fmt([x['val_err'] for x in rs])} | {rf} | {np.mean([x['params'] for x in rs]):.0f} | "
                     f"{np.mean([x['flops'] for x in rs]) / 1e9:.2f} | {np.mean([x['seconds'] for x in rs]):.0f} |")
    return lines


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib   # lazy: only the report needs it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt   # lazy: after the backend is chosen
    budget = runs[0]["budget_flops"]
    grid = np.linspace(0, budget, 300)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for i, k in enumerate(m for m in METHODS if m in runs[0]["methods"]):
        for ax, col in zip(axes, (1, 2)):
            mean = mean_curve(runs, k, grid, col) * (100 if col == 2 else 1)
            ax.plot(grid / 1e9, mean, color=plt.cm.tab10(i), lw=1.6, label=LABELS[k])
    if "grown" in runs[0]["methods"]:
        g = np.mean([r["methods"]["grown"]["grown_at"] for r in runs]) / 1e9
        for ax in axes:
            ax.axvline(g, color="grey", ls=":", lw=1, label="growth point (mean)")
    if "scratch" in runs[0]["methods"]:
        axes[0].axhline(np.mean([r["methods"]["scratch"]["val_loss"] for r in runs]), color="grey", ls="--", lw=0.8,
                        label="scratch's final val loss (mean)")
    axes[0].set_ylabel("validation loss (cross-entropy)")
    axes[1].set_ylabel("validation error %")
    for ax in axes:
        ax.set_xlabel("training GFLOPs (forward + backward multiply-adds)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(f"ViT growth on mnist5k 14x14: mean of {len(runs)} repetitions (linear between epochs)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(runs: list[dict[str, Any]], meta: dict[str, Any], plot_name: str) -> str:
    s, r0 = runs[0]["setting"], runs[0]
    g = [r["methods"]["grown"] for r in runs if "grown" in r["methods"]]
    out = ["# Growing a ViT by exact morphs vs the target size from scratch, at equal training FLOPs", "",
           f"`{meta['command']}` — {meta['seconds'] / 60:.1f} min, {meta['jobs']} "
           f"process{'es' if meta['jobs'] > 1 else ''} of one torch thread. "
           f"Mean ± 95% CI over {len(runs)} repetitions (t distribution); each repetition has its own seeds and "
           "validation split. Data: mnist5k at 14x14, 10% of the non-test images for validation, a fixed "
           "1,000-image test split.", "",
           f"Small: `tiny_vit` 7x7 patches, width {s['dim']}, {s['depth']} blocks, {s['heads']} heads, MLP "
           f"{s['mlp_dim']} ({r0['small_params']} params); target: width {2 * s['dim']}, {2 * s['depth']} blocks, "
           f"MLP {2 * s['mlp_dim']} ({r0['target_params']} params, {r0['flops_ratio']:.2f}x the small one's FLOPs). "
           f"Budget: {s['budget_epochs']} target epochs = {r0['budget_flops'] / 1e9:.2f} GFLOPs on "
           f"{r0['n_train']} images. {s['optimizer']} lr {s['lr']:g}, weight decay {s['weight_decay']:g}, "
           f"batch 64, cosine to 0; grown: the small ViT for {s['grow_fraction']:g} of the budget, schedule "
           f"`{s['schedule']}`" + ("" if s.get("carry_state", True) else ", a fresh optimizer after growth")
           + (f", {s['warmup']} warm-up epoch(s) at 0.1 x lr after it" if s.get("warmup") else "")
           + (f", the grown phase's cosine from {s['grow_lr_factor']:g} x lr" if s["schedule"] == "restart" else "")
           + ".", "", f"Curves: [{plot_name}]({plot_name})", ""]
    out += table(runs) + [""]
    if "scratch" in runs[0]["methods"]:
        out += ["Paired by repetition (same data split), against the target from scratch:", "",
                "| method − scratch | test error (points) | final val loss | better test error in |",
                "|---|---|---|---|"]
        for k in [m for m in METHODS if m in runs[0]["methods"] and m != "scratch"]:
            d_err = [r["methods"]["scratch"]["test"] - r["methods"][k]["test"] for r in runs]
            d_vl = [r["methods"][k]["val_loss"] - r["methods"]["scratch"]["val_loss"] for r in runs]
            out.append(f"| {LABELS[k]} | {fmt(d_err)} | {fmt(d_vl, 1, 4)} | {sum(d < 0 for d in d_err)} of "
                       f"{len(runs)} |")
        out.append("")
    out += ["| method | lowest val loss on the curve | reached at (× budget) | "
            "val loss at the growth point → one epoch after |",
            "|---|---|---|---|"]
    for k in [m for m in METHODS if m in runs[0]["methods"]]:
        rs = [r["methods"][k] for r in runs]
        lows = [min(rs_i["curve"], key=lambda p: p[1]) for rs_i in rs]
        after = ""
        if k in ("grown", "small_restart"):
            before = fmt([[p[1] for p in x["curve"] if p[0] <= x["grown_at"]][-1] for x in rs], 1, 4)
            after = before + " → " + fmt([next(p[1] for p in x["curve"] if p[0] > x["grown_at"]) for x in rs], 1, 4)
        out.append(f"| {LABELS[k]} | {fmt([p[1] for p in lows], 1, 4)} | "
                   f"{fmt([p[0] / r['budget_flops'] for p, r in zip(lows, runs)], 1, 2)} | {after} |")
    out.append("")
    if g:
        out += ["grown: epochs (small, grown) " + ", ".join(f"{x['epochs'][0]}+{x['epochs'][1]}" for x in g)
                + "; preservation error of the morph " + ", ".join(f"{x['preservation_error']:.1e}" for x in g)
                + ".", ""]
        if "scratch" in runs[0]["methods"]:
            per = {k: reach_fractions(runs, k) for k in METHODS if k in runs[0]["methods"]}
            per["grown network after growth"] = reach_fractions(runs, "grown", True)
            if "small_restart" in per:
                per["control after the growth point"] = reach_fractions(runs, "small_restart", True)
            mr = {"grown lineage": mean_reach(runs, "grown"), "grown network after growth":
                  mean_reach(runs, "grown", True), "small trained longer": mean_reach(runs, "small")}
            if "small_restart" in runs[0]["methods"]:
                mr["control (small, two phases)"] = mean_reach(runs, "small_restart")
            out += ["On the mean curves (where every repetition has a point), the from-scratch model's mean final "
                    "validation loss is first reached at (× the budget): "
                    + "; ".join(f"{k} {'never' if v is None else f'{v:.2f}'}" for k, v in mr.items()) + ".", ""]
            out += ["Reach fractions per repetition (× scratch FLOPs; the from-scratch model's own: its final loss "
                    "first reached earlier when it ends above its lowest): " + "; ".join(
                        f"{k}: " + ", ".join("never" if f is None else f"{f:.2f}" for f in v) for k, v in per.items())
                    + ".", ""]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--first-rep", type=int, default=0, help="repetition seeds start here (pilots use 100+)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--methods", default=None, help="comma-separated subset of " + ", ".join(METHODS))
    ap.add_argument("--budget-epochs", type=int, default=None, help="the budget in target epochs (default 20)")
    ap.add_argument("--grow-fraction", type=float, default=None, help="share of the budget before growth (0.25)")
    ap.add_argument("--schedule", choices=("continue", "restart"), default=None)
    ap.add_argument("--grow-lr-factor", type=float, default=None, help="schedule restart: the grown phase's peak "
                    "LR as a multiple of --lr (default 1)")
    ap.add_argument("--warmup", type=int, default=0, help="restart: epochs at a constant 0.1 x lr after the "
                    "growth point (grown and control)")
    ap.add_argument("--fresh-state", action="store_true", help="grown: a fresh optimizer after growth (an ablation)")
    ap.add_argument("--optimizer", choices=("adamw", "sgd"), default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--weight-decay", type=float, default=None)
    ap.add_argument("--quick", action="store_true", help="width 8, 256 images, 4 target epochs, 1 repetition")
    ap.add_argument("--out", default=None)
    ap.add_argument("--from-json", default=None, help="only rebuild the report and plot from a saved JSON")
    args = ap.parse_args()
    out = Path(args.out or HERE / "results" / ("grow_transformer_quick" if args.quick else "grow_transformer"))
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        runs, meta = saved["runs"], saved["meta"]
    else:
        s = Setting(0)
        if args.quick:
            s = replace(s, dim=8, depth=1, mlp_dim=16, budget_epochs=4, train_limit=256)
        for knob in ("budget_epochs", "grow_fraction", "schedule", "grow_lr_factor", "optimizer", "lr", "weight_decay"):
            if getattr(args, knob) is not None:
                s = replace(s, **{knob: getattr(args, knob)})
        if args.warmup:
            s = replace(s, warmup=args.warmup)
        if args.fresh_state:
            s = replace(s, carry_state=False)
        if args.methods:
            s = replace(s, methods=tuple(args.methods.split(",")))
        settings = [replace(s, rep=args.first_rep + k) for k in range(1 if args.quick else args.reps)]
        t0 = time.time()
        if args.jobs == 1:
            runs = [run_rep(x) for x in settings]
        else:
            with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
                runs = list(pool.imap_unordered(run_rep, settings, chunksize=1))
        runs.sort(key=lambda r: r["setting"]["rep"])
        meta = {"command": "python bench/grow_transformer.py " + " ".join(sys.argv[1:]), "seconds": time.time() - t0,
                "jobs": args.jobs}
        out.parent.joinpath(out.name + ".json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    png = out.parent / f"{out.name}_curves.png"
    plot(runs, png)
    text = report(runs, meta, png.name)
    out.parent.joinpath(out.name + ".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
