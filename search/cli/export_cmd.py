"""``morphnas export RUN [--trial N] -o DIR``: a member as a standalone PyTorch model."""
from __future__ import annotations

import argparse
import json

from morphnas.search.rundir import open_run

from .registry import CLIError, register_command


@register_command("export", position=90)
def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a run's network as spec + weights + a torch-only loader",
                       description="Write a member (default: the best finished trial) as model.json + weights.pt "
                                   "+ load_model.py (needs only torch), check that it reproduces the member's "
                                   "outputs, optionally also as TorchScript and torch.export files.")
    p.add_argument("run_dir", metavar="RUN", help="run directory (runs/<name>) or run name")
    p.add_argument("--trial", type=int, default=None, metavar="N",
                   help="trial number (default: the best finished trial by the first objective)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="directory to write")
    p.add_argument("--torchscript", action="store_true", help="also write model.torchscript.pt (torch.jit.trace)")
    p.add_argument("--torch-export", action="store_true", help="also write model.pt2 (torch.export)")
    p.add_argument("--tol", type=float, default=1e-5, help="relative tolerance of the reproduction check")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from morphnas.search.export import export_run

    if args.trial is not None and args.trial < 0:
        raise CLIError(f"--trial must be a trial number >= 0, got {args.trial}")
    if not args.tol > 0:
        raise CLIError(f"--tol must be positive, got {args.tol}")
    result, row = export_run(open_run(args.run_dir), args.output, trial=args.trial, torchscript=args.torchscript,
                             torch_export=args.torch_export, tol=args.tol)
    if args.json:
        print(json.dumps({**result.to_json(), "trial": row.trial, "member": row.member_id}, indent=1))
        return 0
    vals = ", ".join(f"{v:.6g}" for v in (row.values or ()))
    print(f"exported trial {row.trial} (member {row.member_id}, value {vals}) to {result.directory}")
    print(f"check: max_abs_err={result.max_abs_err:.3e} rel_err={result.rel_err:.3e}"
          + "".join(f", {k} rel_err={v:.3e}" for k, v in result.checks.items()))
    print(f"files: {', '.join(result.files)}")
    print(f"load with: python {result.directory}/load_model.py {result.directory} --check")
    return 0
