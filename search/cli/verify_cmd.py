"""``morphnas verify A B [--dtype float32|float64] [--json] [--batch N] [--seed N] [--tol T]``.

Runs both networks in eval mode on the same random batch and prints the maximum absolute output
difference and the relative error (max abs error / max abs output of A). With ``--tol`` the exit
code is 1 when the relative error exceeds it (or is not a number), so scripts can gate on
preservation. ``--json`` is strict JSON: a NaN error is ``null`` with ``"nan": true``.
"""
from __future__ import annotations

import json
import math

from morphnas.morphism.verify import output_diff
from morphnas.search.cli._common import MAX_BATCH, dtype_arg, int_arg, json_safe, load_net, positive_float, positive_int
from morphnas.search.cli.registry import register_command


@register_command("verify", position=40)
def add_parser(sub) -> None:
    p = sub.add_parser("verify", help="output difference between two networks (function preservation)",
                       description="Compare two networks (A is the reference) on one random batch in eval mode.")
    p.add_argument("a", metavar="A", help="reference network (saved directory or name)")
    p.add_argument("b", metavar="B", help="network to compare")
    p.add_argument("--dtype", default="float64", help="float32 or float64 (default float64)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--batch", metavar="N", default="4", help="batch size of the random input (default 4)")
    p.add_argument("--seed", metavar="N", default="0", help="seed of the random input (default 0)")
    p.add_argument("--tol", metavar="T", help="exit 1 if the relative error exceeds T")
    p.set_defaults(run=run)


def run(args) -> int:
    dtype = dtype_arg(args.dtype)
    batch = positive_int(args.batch, "--batch", limit=MAX_BATCH)
    seed = int_arg(args.seed, "--seed")
    tol = positive_float(args.tol, "--tol") if args.tol is not None else None
    a = load_net(args.a)
    b = load_net(args.b)
    d = output_diff(a, b, dtype=dtype, batch=batch, seed=seed)
    ok = tol is None or (math.isfinite(d.rel_err) and d.rel_err <= tol)
    if args.json:
        out = json_safe({**d.to_json(), "batch": batch, "seed": seed})
        print(json.dumps({**out, **({"tol": tol, "ok": ok} if tol is not None else {})}, allow_nan=False))
    else:
        print(f"max_abs_err {d.max_abs_err:.3e}  rel_err {d.rel_err:.3e}  (max |output| {d.max_abs_out:.3g}, "
              f"{d.dtype}, batch {batch}, seed {seed})" + ("" if tol is None else f"  {'OK' if ok else 'FAIL'} at tol {tol:g}"))
    return 0 if ok else 1
