"""Import every torchvision classification CNN of issue 14 into the IR and check it.

For each model: build it with ``weights=None`` (seeded, no downloads), import it by tracing
(``from_torch``, eval mode), and compare the compiled IR with the model on one seeded batch in
float32. Reports imported?, max abs error, max relative error, params and FLOPs (the paper
convention of ``spaces/counting.py``: conv/FC MACs) and the import time; a refused model shows the
one-line refusal.

    .venv/bin/python bench/import_zoo.py [--size 224] [--models a,b,...] [--md FILE]
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import torch

torch.set_num_threads(1)

from morphnas.morphism.compile import compile_network  # noqa: E402
from morphnas.morphism.errors import MorphnasError  # noqa: E402
from morphnas.morphism.importer import from_torch  # noqa: E402
from morphnas.spaces.counting import count  # noqa: E402

# The 15 models of issue 14's table (7 imported before, 8 refused) plus the ones that come free.
MODELS = ["resnet18", "resnet50", "vgg11_bn", "mobilenet_v2", "regnet_x_400mf", "mnasnet0_5", "alexnet",
          "densenet121", "squeezenet1_0", "googlenet", "efficientnet_b0", "mobilenet_v3_small",
          "shufflenet_v2_x0_5", "convnext_tiny", "vit_b_16",
          "resnext50_32x4d", "wide_resnet50_2", "regnet_y_400mf", "mobilenet_v3_large", "efficientnet_b1",
          "inception_v3"]


def run(name: str, size: int) -> dict:
    import torchvision  # type: ignore[import-untyped]
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        model = torchvision.models.get_model(name, weights=None).eval()
    row: dict = {"model": name}
    t = time.perf_counter()
    try:
        net = from_torch(model, (3, size, size), verify=False)
    except MorphnasError as e:
        row.update(imported=False, reason=str(e), seconds=time.perf_counter() - t)
        return row
    row["seconds"] = time.perf_counter() - t
    x = torch.randn((1, 3, size, size), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = model(x), compile_network(net).eval()(x)
    err = (want - got).abs().max().item()
    c = count(net)
    row.update(imported=True, max_abs_err=err, rel_err=err / max(want.abs().max().item(), 1e-30),
               params=c.params, flops=c.flops, edges=len(net))
    return row


def table(rows: list[dict], size: int) -> str:
    lines = [f"| model | imported | max abs err | rel err | params | FLOPs (MACs) | import s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["imported"]:
            lines.append(f"| {r['model']} | yes | {r['max_abs_err']:.1e} | {r['rel_err']:.1e} | {r['params']:,} | "
                         f"{r['flops'] / 1e6:,.1f} M | {r['seconds']:.1f} |")
        else:
            lines.append(f"| {r['model']} | no: {r['reason']} | | | | | {r['seconds']:.1f} |")
    n = sum(r["imported"] for r in rows)
    lines.append(f"\n{n} of {len(rows)} import at {size}x{size}, float32, batch 1.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--md", help="also write the table to this file")
    args = ap.parse_args(argv)
    rows = []
    for name in args.models.split(","):
        rows.append(run(name, args.size))
        print(rows[-1], file=sys.stderr, flush=True)
    md = table(rows, args.size)
    print(md)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
