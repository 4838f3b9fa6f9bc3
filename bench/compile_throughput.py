"""Forward+backward throughput: compiled IR ResNet-20 vs the same network written by hand.

Both networks hold the same weights (the hand-written module loads the IR's state dict, whose keys
it shares one to one) and are checked to compute the same outputs before timing. Timings are
interleaved (hand, IR, hand, IR, ...) so load from other processes hits both alike; the table
reports the median of each and the median of the per-round ratios.

    .venv/bin/python bench/compile_throughput.py [--batch 32] [--rounds 15] [--iters 3] [--md FILE]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch import nn

torch.set_num_threads(1)

from morphnas.morphism.compile import compile_network  # noqa: E402
from morphnas.spaces.seeds.builders import cifar_resnet  # noqa: E402


class Block(nn.Module):
    """conv3-BN-PReLU-conv3-BN + shortcut -> PReLU, names as the IR builder's."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.prelu1 = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))
        self.prelu2 = nn.PReLU(cout)

    def forward(self, x):
        out = self.prelu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + (x if self.downsample is None else self.downsample(x))
        return self.prelu2(out)


class ResNetCifar(nn.Module):
    """He et al.'s CIFAR ResNet-(6n+2) with PReLU and projection shortcuts, written by hand."""

    def __init__(self, depth: int = 20, num_classes: int = 10, width: int = 16, in_channels: int = 3):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.prelu1 = nn.PReLU(width)
        cin = width
        for s in range(3):
            cout = width * 2 ** s
            blocks = []
            for b in range(n):
                blocks.append(Block(cin, cout, 2 if (s > 0 and b == 0) else 1))
                cin = cout
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.prelu1(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def step_time(model: nn.Module, x: torch.Tensor, y: torch.Tensor, iters: int) -> float:
    """Seconds per forward+backward step (train mode, cross-entropy loss)."""
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for _ in range(iters):
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
    return (time.perf_counter() - t0) / iters


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--iters", type=int, default=3, help="steps per timing")
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--md", help="also write the table (markdown) to this file")
    args = ap.parse_args(argv)

    net = cifar_resnet(args.depth)
    ir = compile_network(net)
    hand = ResNetCifar(args.depth)
    hand.load_state_dict(ir.state_dict())   # keys map one to one; a mismatch raises here
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (args.batch,), generator=gen)
    with torch.no_grad():
        ir.eval(), hand.eval()
        err = (ir(x) - hand(x)).abs().max().item()
    ir.train(), hand.train()
    for m in (hand, ir):            # warm-up: allocator, oneDNN primitive caches
        step_time(m, x, y, 2)
    t_hand, t_ir, ratios = [], [], []
    for r in range(args.rounds):
        pair = [("hand", hand), ("ir", ir)] if r % 2 == 0 else [("ir", ir), ("hand", hand)]
        got = {k: step_time(m, x, y, args.iters) for k, m in pair}
        t_hand.append(got["hand"])
        t_ir.append(got["ir"])
        ratios.append(got["ir"] / got["hand"])
    mh, mi, mr = statistics.median(t_hand), statistics.median(t_ir), statistics.median(ratios)
    rows = [
        f"| network | ms / step (median) | images / s | IR / hand |",
        f"|---|---:|---:|---:|",
        f"| hand-written PyTorch ResNet-{args.depth} | {mh * 1e3:.1f} | {args.batch / mh:.1f} | 1.000 |",
        f"| compiled IR ResNet-{args.depth} (fx GraphModule) | {mi * 1e3:.1f} | {args.batch / mi:.1f} | {mr:.3f} |",
    ]
    info = (f"forward+backward, train mode, batch {args.batch} x 3x32x32, 1 thread, torch {torch.__version__}, "
            f"{args.rounds} interleaved rounds x {args.iters} steps; ratio = median of per-round IR/hand; "
            f"per-round ratio range {min(ratios):.3f}-{max(ratios):.3f}; eval-mode output max abs diff {err:.1e}")
    table = "\n".join(rows)
    print(table)
    print(info)
    verdict = "within" if mr <= 1.05 else "NOT within"
    print(f"compiled IR is {verdict} 5% of hand-written (ratio {mr:.3f})")
    if args.md:
        cmd = "OMP_NUM_THREADS=1 .venv/bin/python bench/compile_throughput.py " + " ".join(argv or sys.argv[1:])
        with open(args.md, "w") as f:
            f.write(f"# Compiled IR vs hand-written PyTorch (ResNet-{args.depth})\n\n"
                    f"Command: `{cmd.strip()}`\n\n{table}\n\n{info}.\n\n"
                    f"Verdict: compiled IR {verdict} 5% of hand-written (ratio {mr:.3f}).\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
