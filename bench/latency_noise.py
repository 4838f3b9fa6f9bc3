"""How steady is the latency a trial measures, and what does measuring cost?

``search/trial/latency.py`` times ``repeats`` forward passes and keeps the median. On a machine whose
cores other trials share, a pass can be slowed by whatever runs beside it. This measures, for a few
seeds at batch 1 and one thread: the median latency from ``--rounds`` independent measurements
with the default settings (20 repeats, 3 warm-up passes), their spread (max/min), and the wall time
one measurement takes, first on an idle core and then while another process trains a network on
the other core (what two trials side by side look like).

    .venv/bin/python bench/latency_noise.py
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time


def _busy(stop) -> None:
    """A training loop on one thread (the neighbouring trial)."""
    import torch
    torch.set_num_threads(1)
    from morphnas.morphism.compile import compile_network
    from morphnas.spaces.registry import create_network
    net = compile_network(create_network("resnet20", num_classes=10))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    while not stop.is_set():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()


def measure(names: list[str], rounds: int) -> dict[str, tuple[float, float, float]]:
    import torch
    torch.set_num_threads(1)
    from morphnas.search.trial.latency import measure_latency
    from morphnas.spaces.registry import create_network
    out = {}
    for name in names:
        net = create_network(name, num_classes=10)
        vals, cost = [], []
        for _ in range(rounds):
            t = time.perf_counter()
            vals.append(measure_latency(net))
            cost.append(time.perf_counter() - t)
        out[name] = (statistics.median(vals), max(vals) / min(vals), statistics.median(cost))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="tiny_resnet,resnet20,resnet56")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    names = args.nets.split(",")
    quiet = measure(names, args.rounds)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    p = ctx.Process(target=_busy, args=(stop,))
    p.start()
    time.sleep(8)                               # the neighbour is training before we measure
    loaded = measure(names, args.rounds)
    stop.set()
    p.join()
    print(f"latency at batch 1, 1 thread; {args.rounds} measurements of the default setting (median of 20 "
          f"passes after 3 warm-up) per cell; load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| network | idle core: latency ms | spread max/min | one measurement s | beside a training "
          "process: latency ms | spread max/min | one measurement s | slowdown |")
    print("|---|---|---|---|---|---|---|---|")
    for n in names:
        q, b = quiet[n], loaded[n]
        print(f"| {n} | {q[0]:.3f} | {q[1]:.2f} | {q[2]:.3f} | {b[0]:.3f} | {b[1]:.2f} | {b[2]:.3f} | "
              f"{b[0] / q[0]:.2f}x |")


if __name__ == "__main__":
    main()
