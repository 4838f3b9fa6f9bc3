"""In-memory splits vs streaming through a DataLoader, on CIFAR-shaped data (3x32x32, 10 classes).

The dataset is what a user's own ``Dataset`` usually is: 8-bit images in memory or on disk, each
item converted to float and normalised in ``__getitem__`` (as torchvision's ``ToTensor`` +
``Normalize`` do). morphnas either stacks every item once into one float32 tensor per split (the
in-memory path: ``data.stream: false``) or reads the items batch by batch through a
``DataLoader`` with ``data.workers`` processes (``data.stream: true``). For each path the table
gives the one-off cost of preparing the split, the float32 bytes it holds in every trial process,
and the throughput of a training epoch two ways: the batches alone (the data path's own cost), and
batches feeding SGD steps of ResNet-20 (what a trial does). Rounds are interleaved so load from
other processes hits every path alike; medians are reported.

    .venv/bin/python bench/data_stream.py [--n 4096] [--batch 128] [--rounds 3] [--train-batches 8] [--md FILE]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch.utils.data import Dataset

torch.set_num_threads(1)

from morphnas.morphism.compile import compile_network  # noqa: E402
from morphnas.search.config import DataConfig  # noqa: E402
from morphnas.search.data.core import load_data  # noqa: E402
from morphnas.search.data.user import Datasets  # noqa: E402
from morphnas.search.plugins import provide  # noqa: E402
from morphnas.spaces.seeds.builders import cifar_resnet  # noqa: E402

MEAN = torch.tensor([0.49, 0.48, 0.45]).view(3, 1, 1)
STD = torch.tensor([0.25, 0.24, 0.26]).view(3, 1, 1)


class Cifarish(Dataset):
    """8-bit 3x32x32 images held as uint8 (as CIFAR-10's files are), converted per item."""

    def __init__(self, n: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
        self.labels = torch.randint(0, 10, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return (self.images[i].float() / 255 - MEAN) / STD, int(self.labels[i])


def make(n: int) -> Datasets:
    return Datasets(train=Cifarish(n), val=Cifarish(max(64, n // 10), 1), test=Cifarish(64, 2))


def epoch_loader_only(split, batch: int, gen: torch.Generator) -> int:
    seen = 0
    for x, y in split.batches(batch, shuffle=True, gen=gen):
        seen += len(y)
    return seen


def epoch_train(split, batch: int, gen: torch.Generator, module, opt, limit: int) -> int:
    seen = 0
    for i, (x, y) in enumerate(split.batches(batch, shuffle=True, gen=gen)):
        if i >= limit:
            break
        loss = torch.nn.functional.cross_entropy(module(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
    return seen


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096, help="training images")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--train-batches", type=int, default=8, help="SGD steps timed per round (ResNet-20)")
    ap.add_argument("--md", default=None, help="also write the table to this file")
    args = ap.parse_args(argv)

    provide("bench_cifarish", lambda: make(args.n))
    paths = {"in memory": {"stream": False}, "stream, 0 workers": {"stream": True, "workers": 0},
             "stream, 1 worker": {"stream": True, "workers": 1}, "stream, 2 workers": {"stream": True, "workers": 2}}
    splits, prep, held = {}, {}, {}
    for name, kw in paths.items():
        t0 = time.perf_counter()
        data = load_data(DataConfig(dataset="python:bench_cifarish", **kw), seed=0)
        prep[name] = time.perf_counter() - t0
        splits[name] = data.train
        x = getattr(data.train, "x", None)
        held[name] = 0 if x is None else x.numel() * x.element_size()
    module = compile_network(cifar_resnet(depth=20, width=16, in_channels=3, input_size=32, num_classes=10))
    opt = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
    loader_rate = {k: [] for k in paths}
    train_rate = {k: [] for k in paths}
    for r in range(args.rounds):
        for name in paths:
            gen = torch.Generator().manual_seed(r)
            t0 = time.perf_counter()
            n = epoch_loader_only(splits[name], args.batch, gen)
            loader_rate[name].append(n / (time.perf_counter() - t0))
            gen = torch.Generator().manual_seed(r)
            t0 = time.perf_counter()
            n = epoch_train(splits[name], args.batch, gen, module, opt, args.train_batches)
            train_rate[name].append(n / (time.perf_counter() - t0))
    base_l = statistics.median(loader_rate["in memory"])
    base_t = statistics.median(train_rate["in memory"])
    lines = [f"Data paths on CIFAR-shaped data: {args.n} training images 3x32x32, batch {args.batch}, "
             f"{args.rounds} interleaved rounds, torch 1 thread ({torch.__version__}, {sys.platform}).",
             "",
             "| path | prepare (s) | float32 held per process (MiB) | batches alone (img/s) | vs memory "
             f"| ResNet-20 SGD, {args.train_batches} steps (img/s) | vs memory |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name in paths:
        lr_, tr_ = statistics.median(loader_rate[name]), statistics.median(train_rate[name])
        lines.append(f"| {name} | {prep[name]:.2f} | {held[name] / 2**20:.1f} | {lr_:,.0f} | {lr_ / base_l:.2f}x "
                     f"| {tr_:,.0f} | {tr_ / base_t:.2f}x |")
    text = "\n".join(lines)
    print(text)
    if args.md:
        with open(args.md, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
