"""Run plots: the lineage tree, the Pareto front and per-member architecture drawings.

Inputs are leaderboard rows (anything with the attributes of :class:`~.leaderboard.Row`), so the
plots do not depend on Optuna. Figures are drawn with ``matplotlib.figure.Figure`` directly, not
``pyplot``: no global figure state, and no GUI backend is ever selected (the driver draws while a
search runs, possibly without a display).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from morphnas.search.study.rows import front_rows, pareto_points  # noqa: F401 - one front for plot and leaderboard
from morphnas.spaces.draw import draw_network

FAIL_COLOR = "#d62728"


def _tree_layout(rows: Sequence[Any]) -> tuple[dict[str, tuple[float, float]], dict[str, list[str]]]:
    """x by depth-first leaf order (parents centred over their children), y = -lineage depth."""
    ids = {r.member_id for r in rows}
    order = {r.member_id: (r.trial, r.member_id) for r in rows}
    children: dict[str, list[str]] = {m: [] for m in ids}
    roots = []
    for r in sorted(rows, key=lambda r: order[r.member_id]):
        if r.parent_id in ids and r.parent_id != r.member_id:
            children[r.parent_id].append(r.member_id)
        else:
            roots.append(r.member_id)
    pos: dict[str, tuple[float, float]] = {}
    next_leaf = 0.0
    # Post-order walk with an explicit stack: hill climbing makes lineages hundreds of members deep.
    for root in roots:
        stack = [(root, 0, False)]
        while stack:
            m, depth, expanded = stack.pop()
            kids = children[m]
            if not kids:
                pos[m] = (next_leaf, -float(depth))
                next_leaf += 1.0
            elif expanded:
                xs = [pos[k][0] for k in kids]
                pos[m] = ((min(xs) + max(xs)) / 2, -float(depth))
            else:
                stack.append((m, depth, True))
                stack.extend((k, depth + 1, False) for k in reversed(kids))
    return pos, children


def lineage_tree(rows: Sequence[Any], path: str | Path, title: str = "lineage") -> Path:
    """Parent -> child tree of the run's members, edges labelled by the ops that made the child.

    Nodes are coloured by validation accuracy; failed trials are red and marked FAIL.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pos, children = _tree_layout(rows)
    by_id = {r.member_id: r for r in rows}
    width = max(1.0, max((x for x, _ in pos.values()), default=0.0) + 1)
    depth = max(1.0, -min((y for _, y in pos.values()), default=0.0) + 1)
    fig = Figure(figsize=(min(40.0, 2.0 + 1.6 * width), min(40.0, 1.5 + 1.5 * depth)))
    ax = fig.add_subplot()
    accs = [r.val_acc for r in rows if r.val_acc is not None and r.state == "COMPLETE"]
    lo, hi = (min(accs), max(accs)) if accs else (0.0, 1.0)
    if hi - lo < 1e-6:  # one accuracy only: give the colour bar a readable span around it
        lo, hi = lo - 0.05, hi + 0.05
    norm = Normalize(lo, hi)
    cmap = colormaps["viridis"]
    small = len(rows) <= 60
    # One LineCollection and one scatter per marker kind: per-edge artists made big runs slow to draw.
    segments, labels = [], []
    for parent, kids in children.items():
        for k in kids:
            (x0, y0), (x1, y1) = pos[parent], pos[k]
            segments.append([(x0, y0 - 0.1), (x1, y1 + 0.1)])
            ops = by_id[k].ops_list
            if ops and small:
                # one op per line, closer to the child than the parent: sibling edges fan out there
                labels.append((x0 + 0.62 * (x1 - x0), y0 + 0.62 * (y1 - y0), "\n".join(ops)))
    ax.add_collection(LineCollection(segments, colors="#777777", linewidths=1.0, zorder=1))
    for x, y, text in labels:
        ax.text(x, y, text, fontsize=7, ha="center", va="center", color="#333333",
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
    ok = [m for m in pos if by_id[m].state == "COMPLETE"]
    bad = [m for m in pos if by_id[m].state != "COMPLETE"]
    if ok:
        colors = [cmap(norm(by_id[m].val_acc)) if by_id[m].val_acc is not None else "#999999" for m in ok]
        ax.scatter([pos[m][0] for m in ok], [pos[m][1] for m in ok], s=260 if small else 60, c=colors,
                   edgecolors="black", zorder=3)
    if bad:
        ax.scatter([pos[m][0] for m in bad], [pos[m][1] for m in bad], s=260 if small else 60, color=FAIL_COLOR,
                   edgecolors="black", marker="X", zorder=3)
    if small:
        for m, (x, y) in pos.items():
            r = by_id[m]
            acc = "FAIL" if r.state != "COMPLETE" else (f"{r.val_acc:.3f}" if r.val_acc is not None else "-")
            ax.text(x + 0.13, y, f"{m}\n{acc}", fontsize=7, ha="left", va="center")
    if accs:
        fig.colorbar(_scalar_mappable(norm, cmap), ax=ax, label="validation accuracy", shrink=0.7)
    ax.set_title(f"{title} ({len(rows)} members)")
    ax.set_xlim(-0.7, width - 0.3)
    ax.set_ylim(-depth + 0.4, 0.6)
    if depth <= 30:
        ax.set_yticks([-d for d in range(int(depth))], [str(d) for d in range(int(depth))])
    else:
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{-v:.0f}"))
    ax.set_ylabel("lineage depth")
    ax.set_xticks([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110, pil_kwargs={"compress_level": 1})  # fast encode: redrawn per record
    return path


def _scalar_mappable(norm, cmap):
    sm = ScalarMappable(norm=norm, cmap=cmap)
    sm.set_array([])
    return sm


def pareto_front(rows: Sequence[Any], path: str | Path, x: str = "params", y: str = "val_acc",
                 objectives: Sequence[str] = ()) -> Path:
    """Accuracy against a cost (``params``, ``flops`` or ``latency_ms``) of every finished member, the
    front highlighted. With the study's ``objectives`` (multi-objective), the front marked is the
    rows' ``pareto`` flag (all objectives: with a third one, members off the drawn step line can be
    on the front); else the (x, y) front."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    done, front = front_rows(rows, x, y)
    pts = [(float(getattr(r, x)), float(getattr(r, y))) for r in done]
    marked = [i for i, r in enumerate(done) if r.pareto] if len(objectives) > 1 else front
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.add_subplot()
    if pts:
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=30, color="#bbbbbb", label="members", zorder=2)
        ax.step([pts[i][0] for i in front], [pts[i][1] for i in front], where="post", color="#1f77b4", lw=1.2,
                zorder=3)
        ax.scatter([pts[i][0] for i in marked], [pts[i][1] for i in marked], s=55, color="#1f77b4",
                   edgecolors="black", label="Pareto front", zorder=4)
        for i in marked:
            ax.annotate(done[i].member_id, pts[i], xytext=(4, 4), textcoords="offset points", fontsize=7)
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no finished members yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel({"params": "parameters", "flops": "FLOPs (multiply-accumulates)",
                   "latency_ms": "latency (ms, measured on the worker)"}.get(x, x))
    ax.set_ylabel({"val_acc": "validation accuracy"}.get(y, y))
    over = f" over {', '.join(objectives)}\n" if len(objectives) > 2 else " "
    ax.set_title(f"Pareto front{over}({len(marked)} of {len(pts)} finished members)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110, pil_kwargs={"compress_level": 1})  # fast encode: redrawn per record
    return path


def architecture(net, path: str | Path, base=None, title: str | None = None) -> Path:
    """The member's architecture drawing (``spaces.draw.draw_network``): what the child gained over
    ``base``, its parent, highlighted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_network(net, path, base=base, title=title)
    return path
