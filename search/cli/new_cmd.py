"""``morphnas new SPEC -o NET [--seed N] [--perturb] [--classes N]``: write a network directory.

``--perturb`` randomises BN statistics/affine parameters and activation slopes
(:func:`morphnas.morphism.perturb.perturb`) so that identity-like parts are non-trivial, the usual
starting point for checking that a morph preserves the function. An existing ``-o`` is replaced
only with ``--force``, atomically (see :mod:`morphnas.search.state.fsutil`); outputs inside a run are refused.
"""
from __future__ import annotations

from morphnas.morphism.perturb import perturb
from morphnas.morphism.serialize import save_network
from morphnas.search.cli._common import MAX_CLASSES, add_force, int_arg, load_net, positive_int
from morphnas.search.cli.registry import register_command
from morphnas.search.state.fsutil import atomic_dir, check_output
from morphnas.spaces.counting import count


@register_command("new", position=20)
def add_parser(sub) -> None:
    p = sub.add_parser("new", help="build a network (by name, from a saved one, or torchvision:<model>) and save it",
                       description="Build or copy a network and save it as a directory (network.json + weights.pt).")
    p.add_argument("spec", metavar="SPEC", help="seed/variant name, saved network directory, or torchvision:<model>")
    p.add_argument("-o", "--output", metavar="NET", required=True, help="directory to write")
    p.add_argument("--seed", metavar="N", default="0", help="seed of the initial weights and of --perturb (default 0)")
    p.add_argument("--perturb", action="store_true",
                   help="randomise BN stats/affine and activation slopes so identity parts are non-trivial")
    p.add_argument("--classes", metavar="N", help="number of classes (networks built by name only)")
    add_force(p, "network directory -o")
    p.set_defaults(run=run)


def run(args) -> int:
    seed = int_arg(args.seed, "--seed")
    net = load_net(args.spec, num_classes=positive_int(args.classes, "--classes", limit=MAX_CLASSES), seed=seed)
    target = check_output(args.output, args.force, "-o")
    if args.perturb:
        net = perturb(net, seed=seed)
        net.meta["perturbed_seed"] = seed
    with atomic_dir(target, "-o") as tmp:
        save_network(net, tmp)
    out = target
    c = count(net)
    print(f"wrote {out} ({net.meta.get('name') or args.spec}: {c.params:,} params, {c.flops:,} MACs"
          f"{', perturbed' if args.perturb else ''})")
    return 0
