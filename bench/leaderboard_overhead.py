"""What the leaderboard costs the driver per member, and what an export costs.

    .venv/bin/python bench/leaderboard_overhead.py [--members 100]

Records ``--members`` results of a tiny ResNet (all pointing at one saved network) into a fresh
SQLite study, once without and once with publishing (architecture drawing + lineage tree + Pareto
plot refreshed after every record), and prints the mean time per record in blocks of 25 members
(publishing grows with the run: the lineage tree is redrawn whole). Then times ``export_network``
of the tiny ResNet and of ResNet-20 (with and without TorchScript / torch.export).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from morphnas.morphism.perturb import perturb
from morphnas.morphism.serialize import save_network
from morphnas.search.export.exporter import export_network
from morphnas.search.state.records import TrialResult
from morphnas.search.state.rundir import RunDir
from morphnas.search.study.leaderboard import Leaderboard
from morphnas.search.study.publish import Publisher
from morphnas.spaces.seeds.builders import cifar_resnet

SPACE = {"op": ["split", "deepen", "widen"], "stage": {"low": 0, "high": 2}}


def record_times(root: Path, n: int, publish: bool) -> list[float]:
    run = RunDir.at(root / ("pub" if publish else "plain")).make()
    net = perturb(cifar_resnet(depth=8, width=8, in_channels=1, input_size=8, num_classes=10), seed=0)
    path = save_network(net, run.member("shared"))
    lb = Leaderboard.for_run(run, ["maximize"], ["val_acc"], search_space=SPACE)
    record = Publisher(lb).record if publish else lb.record
    times = []
    for i in range(n):
        r = TrialResult(f"m{i}", None if i == 0 else f"m{(i - 1) // 3}", 0, "COMPLETE", values=(i / n,),
                        val_acc_history=(0.1, i / n), search_params={"op": "split", "stage": i % 3},
                        actions=({"op": "split", "site": "layer1.0.conv1"},), member_path=str(path))
        t = time.perf_counter()
        record(r)
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plain = record_times(Path(tmp), args.members, False)
        pub = record_times(Path(tmp), args.members, True)
        print("| members | record (no publish) ms | record + publish ms |")
        print("|---|---|---|")
        for lo in range(0, args.members, 25):
            hi = min(lo + 25, args.members)
            a = 1000 * sum(plain[lo:hi]) / (hi - lo)
            b = 1000 * sum(pub[lo:hi]) / (hi - lo)
            print(f"| {lo + 1}-{hi} | {a:.1f} | {b:.0f} |")
        print()
        print("| export | seconds | rel_err |")
        print("|---|---|---|")
        for name, net in (("tiny_resnet (1x8x8)", cifar_resnet(depth=8, width=8, in_channels=1, input_size=8)),
                          ("resnet20 (3x32x32)", cifar_resnet(depth=20))):
            for ts, te in ((False, False), (True, True)):
                t = time.perf_counter()
                res = export_network(perturb(net, 0), Path(tmp) / "exp", torchscript=ts, torch_export=te)
                label = name + (" + TorchScript + torch.export" if ts else "")
                print(f"| {label} | {time.perf_counter() - t:.2f} | {max([res.rel_err, *res.checks.values()]):.1e} |")


if __name__ == "__main__":
    main()
