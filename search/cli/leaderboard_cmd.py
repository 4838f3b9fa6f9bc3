"""``morphnas leaderboard RUN [--top N] [--member ID] [--json] [--plots]``: the run's members ranked by objective.

``--member m6`` shows that member's row alone: member ids, unlike trial numbers, are what the
driver names networks by (``runs/<name>/members/m6``).
"""
from __future__ import annotations

import argparse
import json

from morphnas.morphism.errors import did_you_mean
from morphnas.search.cli.registry import CLIError, register_command
from morphnas.search.state.rundir import open_run
from morphnas.search.study.leaderboard import Leaderboard, Row
from morphnas.search.study.publish import draw_run_plots


@register_command("leaderboard", position=70)
def add_parser(sub) -> None:
    p = sub.add_parser("leaderboard", help="rank a run's networks by objective (with ops, params, FLOPs)",
                       description="Print a run's members ranked by the (first) objective; failed trials follow.")
    p.add_argument("run_dir", metavar="RUN", help="run directory (runs/<name>) or run name")
    p.add_argument("--top", type=int, default=None, metavar="N", help="only the N best finished trials")
    p.add_argument("--member", metavar="ID", help="only the row of this member (e.g. m6)")
    p.add_argument("--json", action="store_true", help="print a JSON list of rows")
    p.add_argument("--plots", action="store_true",
                   help="also redraw the lineage tree and Pareto plot into RUN/plots")
    p.set_defaults(run=run)


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _cut(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _state(r: Row) -> str:
    """State plus what resume and early stopping did (the driver notes them in ``extra``)."""
    notes = [n for n, on in (("re-run", r.extra.get("rerun")), ("early stop", r.extra.get("early_stopped"))) if on]
    text = r.state + (f" ({', '.join(notes)})" if notes else "")
    return f"{text}: {_cut(r.fail_reason, 60)}" if r.fail_reason else text


def format_table(rows: list[Row], objective_names: list[str] | None) -> str:
    """Fixed-width table; multi-objective studies get a value column per objective and a Pareto mark."""
    names = objective_names or []
    multi = any(r.values is not None and len(r.values) > 1 for r in rows) or len(names) > 1
    metric = names[0] if names else "val_acc"      # the task's metric, in its own units
    head = ["rank", "trial", "member", "parent", "ops", metric, "params", "FLOPs"]
    timed = any(r.latency_ms is not None for r in rows)   # runs before latency was measured: no column
    if timed:
        head.append("latency_ms")
    if multi:
        head += [f"obj:{n}" for n in names] + ["pareto"]
    head.append("state")
    table = [head]
    for r in rows:
        line = [str(r.rank) if r.rank is not None else "-", str(r.trial), r.member_id, r.parent_id or "-",
                _cut(r.ops or "(seed)" if r.parent_id is None else r.ops or "-", 48),
                _num((r.values[0] if r.values else r.val_acc) if r.state == "COMPLETE" else None, ".4f"),
                _num(r.params, ","), _num(r.flops, ",")]
        if timed:
            line.append(_num(r.latency_ms, ".3g"))
        if multi:
            vals = list(r.values or ())
            line += [_num(vals[i], ".6g") if i < len(vals) else "-" for i in range(len(names))]
            line.append("*" if r.pareto else "")
        line.append(_state(r))
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    right = {"rank", "trial", metric, "params", "FLOPs", "latency_ms"}
    out = []
    for row in table:
        cells = [c.rjust(w) if h in right or h.startswith("obj:") else c.ljust(w)
                 for c, w, h in zip(row, widths, head)]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    if args.top is not None and args.top < 1:
        raise CLIError(f"--top must be a positive number of trials, got {args.top}")
    lb = Leaderboard.open(open_run(args.run_dir))
    rows = lb.rows()
    if args.top is not None:
        rows = [r for r in rows if r.rank is not None][: args.top]
    if args.member is not None:
        picked = [r for r in rows if r.member_id == args.member]
        if not picked:
            ids = sorted({r.member_id for r in lb.rows()}, key=lambda m: (len(m), m))
            raise CLIError(f"--member {args.member!r}: no such member in {lb.study.study_name!r}"
                           f"{did_you_mean(args.member, ids)}")
        rows = picked
    if args.plots:
        files = draw_run_plots(lb, upload=False)  # the driver alone writes the study
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=1))
        return 0
    done = sum(r.state == "COMPLETE" for r in rows)
    print(f"study {lb.study.study_name!r} ({', '.join(lb.directions)}): "
          f"{len(lb.study.get_trials(deepcopy=False))} trial(s), showing {len(rows)}")
    print(format_table(rows, lb.study.metric_names))
    if args.plots:
        print("plots: " + ", ".join(str(p) for p in files.values()))
    if not done:
        print("(no finished trial yet)")
    return 0
