"""``morphnas describe SPEC [--classes N] [--json] [--draw FILE] [--edges]``: what a network is.

The JSON form is for scripts: name, params (paper convention, docs/design.md, "Paper facts"), params_mb, flops (MACs
of conv and FC layers), input/output shape, numbers of edges and blobs, layers by kind, blocks.
``--draw FILE`` needs an existing folder, replaces an existing FILE only with ``--force`` (atomically),
and never writes inside a run.
"""
from __future__ import annotations

import json
from collections import Counter

from morphnas.morphism.graph import Network
from morphnas.search.cli._common import MAX_CLASSES, add_force, load_net, positive_int
from morphnas.search.cli.registry import CLIError, register_command
from morphnas.search.state.fsutil import atomic_file, check_output
from morphnas.spaces.counting import count
from morphnas.spaces.draw import draw_network


@register_command("describe", position=10)
def add_parser(sub) -> None:
    p = sub.add_parser("describe", help="parameters, FLOPs and layout of a network",
                       description="Describe a seed or paper-variant name, a saved network directory, "
                                   "or torchvision:<model>.")
    p.add_argument("spec", metavar="SPEC", help="seed/variant name, saved network directory, or torchvision:<model>")
    p.add_argument("--classes", metavar="N", help="number of classes (networks built by name only)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--draw", metavar="FILE", help="also draw the network to FILE (.png or .svg)")
    p.add_argument("--edges", action="store_true", help="list every edge (human output)")
    add_force(p, "--draw FILE")
    p.set_defaults(run=run)


def describe(net: Network) -> dict:
    """The JSON-able description printed by ``describe --json``."""
    c = count(net)
    shapes = net.shapes()
    return {
        "name": net.meta.get("name"),
        **c.to_json(),
        "input_shape": list(net.input_shape),
        "output_shape": list(shapes[net.output_blob]),
        "edges": len(net),
        "blobs": net.graph.number_of_nodes(),
        "layers": dict(sorted(Counter(e.layer.kind for e in net.edges()).items())),
        "blocks": len(net.meta.get("blocks", [])),
    }


def _human(d: dict) -> str:
    def big(n: int) -> str:
        for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
            if n >= div:
                return f"{n / div:.3g}{unit}"
        return str(n)
    lines = [
        f"network   {d['name'] or '(unnamed)'}",
        f"input     {tuple(d['input_shape'])} -> output {tuple(d['output_shape'])}",
        f"params    {d['params']:,} ({d['params_mb']:.3f} MB)",
        f"flops     {d['flops']:,} MACs ({big(d['flops'])})",
        f"graph     {d['edges']} edges, {d['blobs']} blobs, {d['blocks']} residual blocks",
        "layers    " + ", ".join(f"{k} x{v}" for k, v in d["layers"].items()),
    ]
    return "\n".join(lines)


def run(args) -> int:
    classes = positive_int(args.classes, "--classes", limit=MAX_CLASSES)
    if args.draw and not args.draw.lower().endswith((".png", ".svg")):
        raise CLIError(f"--draw {args.draw!r}: the file name must end in .png or .svg")
    target = check_output(args.draw, args.force, "--draw", kind="file") if args.draw else None
    net = load_net(args.spec, num_classes=classes)
    if target is not None:
        with atomic_file(target, "--draw") as tmp:
            draw_network(net, tmp)
    d = describe(net)
    if args.json:
        print(json.dumps(d))
    else:
        print(_human(d))
        if args.edges:
            print(net.summary())
        if args.draw:
            print(f"drawing   {args.draw}")
    return 0
