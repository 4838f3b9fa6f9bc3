"""``morphnas morph NET --op OP [--site SITE] [--param K=V ...] [--module FILE] [--seed N] -o NET2``.

Applies one function-preserving morph op and saves the child. Without ``--site`` a valid site is
drawn from ``--seed``; ``--list-sites`` prints the op's sites instead. ``--module FILE`` is the
``module`` op's module description (passed as its ``module`` parameter). The child's
``meta["morphs"]`` gains the op's record, so a saved network carries its own lineage, and the
command checks preservation on a random batch (float64) unless ``--no-verify``. An existing
``-o`` (even NET itself) is replaced only with ``--force``, atomically: the child is written to a
temporary sibling and renamed over it, so NET is intact until the child is complete.
"""
from __future__ import annotations

import json
import os

import torch

from morphnas.morphism.module import library
from morphnas.morphism.ops import apply_op, default_registry
from morphnas.morphism.serialize import save_network
from morphnas.morphism.verify import output_diff
from morphnas.search.cli._common import add_force, int_arg, load_net
from morphnas.search.cli.registry import CLIError, register_command
from morphnas.search.state.fsutil import atomic_dir, check_output


@register_command("morph", position=30)
def add_parser(sub) -> None:
    p = sub.add_parser("morph", help="apply one function-preserving morph op and save the child",
                       description="Apply a morph op to a network (name or saved directory) and save the result.")
    p.add_argument("net", metavar="NET", help="seed/variant name, saved network directory, or torchvision:<model>")
    p.add_argument("--op", required=True, metavar="OP",
                   help="morph op name (e.g. morph_block, widen, deepen; a wrong name lists them all)")
    p.add_argument("--site", metavar="SITE", help="edge or blob to morph (default: drawn from --seed)")
    p.add_argument("--param", metavar="K=V", action="append", default=[], help="op parameter (repeatable)")
    p.add_argument("--module", metavar="FILE", help="module description (YAML/JSON) for --op module")
    p.add_argument("--seed", metavar="N", default="0", help="seed of the op's random choices and of the site (default 0)")
    p.add_argument("-o", "--output", metavar="NET2", help="directory to write the child to")
    p.add_argument("--list-sites", action="store_true", help="print the op's sites in NET and exit")
    p.add_argument("--json", action="store_true", help="print the record (and the check) as one JSON object")
    p.add_argument("--no-verify", action="store_true", help="skip the float64 preservation check")
    add_force(p, "network directory -o (also NET itself)")
    p.set_defaults(run=run)


def parse_param_args(items: list[str], module: str | None) -> dict[str, str]:
    """``["k1=3", "mode=dense"]`` -> ``{"k1": "3", "mode": "dense"}``; the op coerces the types."""
    params: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise CLIError(f"--param must look like KEY=VALUE (e.g. --param k1=3), got {item!r}")
        if key in params:
            raise CLIError(f"--param {key} is given twice ({params[key]!r} and {value!r})")
        params[key] = value.strip()
    if module is not None:
        if not os.path.exists(module) and module not in library.MODULES:
            raise CLIError(f"--module {module!r}: no such file (a YAML or JSON module description) and no "
                           f"built-in module of that name (built-in: {', '.join(library.MODULES)})")
        if "module" in params:
            raise CLIError("give the module file either as --module FILE or as --param module=FILE, not both")
        params["module"] = module
    return params


def run(args) -> int:
    registry = default_registry()
    op = registry.get(args.op)          # unknown names: one line with a close-match suggestion
    seed = int_arg(args.seed, "--seed")
    if not args.list_sites:
        # Argument mistakes first: loading a big network only to then refuse a flag wastes seconds.
        if not args.output:
            raise CLIError("-o/--output NET2 is required (the directory to write the child to), unless --list-sites")
        params = op.parse_params(parse_param_args(args.param, args.module))
        target = check_output(args.output, args.force, "-o")
    net = load_net(args.net)
    if args.list_sites:
        sites = op.sites(net)
        if args.json:
            print(json.dumps({"op": op.name, "site_kind": op.site_kind, "sites": sites}))
        else:
            print("\n".join(sites) if sites else f"(op {op.name} has no site in this network)")
        return 0
    child, record = apply_op(net, op, args.site, params, seed=seed, registry=registry)
    child.meta.setdefault("morphs", []).append(record.to_json())
    with atomic_dir(target, "-o") as tmp:
        save_network(child, tmp)
    out = target
    diff = None if args.no_verify else output_diff(net, child, dtype=torch.float64, batch=2, seed=seed)
    if args.json:
        print(json.dumps({"record": record.to_json(), "output": str(out),
                          "params_before": net.num_params(), "params_after": child.num_params(),
                          **({"check": diff.to_json()} if diff else {})}))
        return 0
    print(f"{record.summary()}  seed {record.seed}")
    print(f"  mode {record.mode}, zero fraction {record.zero_fraction:.3f}"
          + (f", error {record.error:.3e}" if record.error is not None else ""))
    if record.notes:
        print(f"  notes: {record.notes}")
    print(f"  edges +{len(record.new_edges)} -{len(record.removed_edges)}; params {net.num_params():,} -> "
          f"{child.num_params():,}")
    if diff is not None:
        print(f"  check (float64, batch 2): max_abs_err {diff.max_abs_err:.3e}, rel_err {diff.rel_err:.3e}")
    print(f"wrote {out}")
    return 0
