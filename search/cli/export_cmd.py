"""``morphnas export RUN [--trial N | --member ID] -o DIR [--force]``: a member as a standalone PyTorch model.

The output never lands inside a run (``-o runs/r/members/m6`` would overwrite a member), an existing
DIR is replaced only with ``--force`` and then atomically (written beside it, then renamed), and the
member's directory read from the study must lie inside the run, else the run is refused as corrupt.
"""
from __future__ import annotations

import argparse
import dataclasses
import json

from morphnas.morphism.errors import did_you_mean
from morphnas.search.cli._common import add_force, positive_float
from morphnas.search.cli.registry import CLIError, register_command
from morphnas.search.state.fsutil import atomic_dir, check_output, confined
from morphnas.search.state.rundir import RunDir, open_run
from morphnas.search.study.rows import Row


@register_command("export", position=90)
def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a run's network as spec + weights + a torch-only loader",
                       description="Write a member (default: the best finished trial) as model.json + weights.pt "
                                   "+ load_model.py (needs only torch), check that it reproduces the member's "
                                   "outputs, optionally also as TorchScript, torch.export and ONNX files.")
    p.add_argument("run_dir", metavar="RUN", help="run directory (runs/<name>) or run name")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trial", type=int, default=None, metavar="N",
                       help="trial number (default: the best finished trial by the first objective)")
    which.add_argument("--member", default=None, metavar="ID", help="member id, e.g. m6 (as the leaderboard shows)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="directory to write")
    add_force(p, "export directory -o")
    p.add_argument("--ensemble", type=int, default=None, metavar="K",
                   help="export the K validation-best members as one model (their probabilities averaged)")
    p.add_argument("--torchscript", action="store_true", help="also write model.torchscript.pt (torch.jit.trace)")
    p.add_argument("--torch-export", action="store_true", help="also write model.pt2 (torch.export)")
    p.add_argument("--onnx", action="store_true",
                   help="also write model.onnx (opset 17, dynamic batch) and check it with onnxruntime "
                        "(pip install 'morphnas[onnx]')")
    p.add_argument("--tol", default="1e-5", help="relative tolerance of the reproduction check")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def member_trial(run: RunDir, member: str) -> int:
    """The trial number of member ``member`` in the run's study (one line naming the known ids if absent)."""
    from morphnas.search.study.leaderboard import Leaderboard  # lazy: Optuna, only when a run is read
    rows = Leaderboard.open(run).rows()
    for r in rows:
        if r.member_id == member:
            return r.trial
    ids = sorted({r.member_id for r in rows}, key=lambda m: (len(m), m))
    raise CLIError(f"--member {member!r}: no such member in {run.root}{did_you_mean(member, ids)}")


def check_member_path(run: RunDir, trial: int | None) -> None:
    """The member directory the study names must lie inside the run (a tampered study is refused)."""
    from morphnas.search.study.leaderboard import Leaderboard  # lazy: Optuna, only when a run is read
    lb = Leaderboard.open(run)
    rows = lb.rows()
    row = next((r for r in rows if r.trial == trial), None) if trial is not None else \
        next((r for r in rows if r.rank is not None), None)
    if row is not None and row.member_path:
        confined(str(lb.member_dir(row)), run.root, f"the study's member_path of {row.member_id}")


def _values(run_dir: RunDir, row: "Row") -> str:
    """``val_acc 0.93, params 5426, latency_ms 0.892`` (the study's objective names; else ``value ...``)."""
    from morphnas.search.study.leaderboard import Leaderboard  # lazy: Optuna, only when a run is read
    vals = list(row.values or ())
    names = Leaderboard.open(run_dir).study.metric_names or []
    if len(names) != len(vals):
        return "value " + ", ".join(f"{v:.6g}" for v in vals)
    return ", ".join(f"{n} {v:.6g}" for n, v in zip(names, vals))


def run(args: argparse.Namespace) -> int:
    from morphnas.search.export.exporter import export_run, onnx_modules  # lazy: Optuna, only when a run is read

    if args.trial is not None and args.trial < 0:
        raise CLIError(f"--trial must be a trial number >= 0, got {args.trial}")
    tol = positive_float(args.tol, "--tol")
    if args.onnx:
        onnx_modules()  # one line naming the extra, before the run is read
    run_dir = open_run(args.run_dir)
    if args.ensemble is not None:
        return run_ensemble(args, run_dir, tol)
    target = check_output(args.output, args.force, "-o")
    trial = member_trial(run_dir, args.member) if args.member is not None else args.trial
    check_member_path(run_dir, trial)
    with atomic_dir(target, "-o") as tmp:
        result, row = export_run(run_dir, tmp, trial=trial, torchscript=args.torchscript,
                                 torch_export=args.torch_export, onnx=args.onnx, tol=tol)
    result = dataclasses.replace(result, directory=target)
    if args.json:
        print(json.dumps({**result.to_json(), "trial": row.trial, "member": row.member_id}, indent=1))
        return 0
    print(f"exported trial {row.trial} (member {row.member_id}, {_values(run_dir, row)}) to {result.directory}")
    print(f"check: max_abs_err={result.max_abs_err:.3e} rel_err={result.rel_err:.3e}"
          + "".join(f", {k} rel_err={v:.3e}" for k, v in result.checks.items()))
    print(f"files: {', '.join(result.files)}")
    print(f"load with: python {result.directory}/load_model.py {result.directory} --check")
    return 0


def run_ensemble(args: argparse.Namespace, run_dir: RunDir, tol: float) -> int:
    """``--ensemble K``: the K validation-best members as one averaged model (``--onnx``: also as one ONNX graph)."""
    from morphnas.search.export.exporter import export_ensemble  # lazy: Optuna, only when a run is read
    if args.ensemble < 1:
        raise CLIError(f"--ensemble must be a number of members >= 1, got {args.ensemble}")
    if args.trial is not None or args.member is not None or args.torchscript or args.torch_export:
        raise CLIError("--ensemble chooses its members itself (the K validation-best); drop --trial/--member "
                       "and --torchscript/--torch-export")
    target = check_output(args.output, args.force, "-o")
    with atomic_dir(target, "-o") as tmp:
        result, rows = export_ensemble(run_dir, tmp, args.ensemble, tol=tol, onnx=args.onnx)
    result = dataclasses.replace(result, directory=target)
    if args.json:
        print(json.dumps({**result.to_json(), "members": [r.member_id for r in rows]}, indent=1))
        return 0
    print(f"exported an ensemble of {len(rows)} member(s) ({', '.join(f'{r.member_id} val_acc {r.val_acc:.4f}' for r in rows)}) "
          f"to {result.directory}")
    print(f"check: max_abs_err={result.max_abs_err:.3e} rel_err={result.rel_err:.3e}"
          + "".join(f", {k} rel_err={v:.3e}" for k, v in result.checks.items()))
    print(f"load with: python {result.directory}/load_model.py {result.directory} --check")
    return 0
