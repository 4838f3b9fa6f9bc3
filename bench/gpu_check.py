"""The device check: does a child train at the GPU's speed? One script, one markdown table.

Runs on any machine with one GPU, torch >= 2.4 and this checkout, without installing anything
(no Ray, Optuna or network needed; ``bench/_checkout.py`` maps the folders onto ``morphnas``):

    python bench/gpu_check.py                      # on the GPU, about 6-8 minutes
    python bench/gpu_check.py --cpu --quick        # the same code on the CPU in under a minute (CI)

Sections (each skipped, with the reason, when the time left is too short; ``--budget-s``):

1. **checks**: a split's batches on the device equal the CPU's for the same seed; one epoch of the
   loop on the device gives the CPU's loss; the settings ``auto`` resolves to.
2. **train step**: ResNet-20 forward + backward + SGD step on CIFAR-shaped tensors already on the
   device, hand-written PyTorch vs the compiled IR, fp32 vs bf16, channels-last off/on, eager vs
   ``torch.compile`` (the first step's time is the compile time; the break-even step count follows).
3. **morphed child**: ``morph20_3c3`` as compiled from the IR vs the same network written by hand.
4. **the search's loop**: :func:`morphnas.search.trial.train.train` (augmentation, schedule, checks,
   evaluation) on synthetic CIFAR-shaped data for the seed and the child, against the plain step.
5. **equal compute**: ``bench/equal_flops.py`` on the device at a GPU-sized regime (``r2``) when Optuna
   and mlxtend are installed (in a subprocess: this process never imports Optuna); otherwise
   section 4's rows are the speed of the units its strategies spend their budget on.
6. **workers sharing the GPU**: N = 1, 2, 4 processes train the same child side by side: throughput,
   projected children per hour (20 epochs of 45,000 images each) and GPU utilisation.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _checkout import use_checkout  # noqa: E402

SOURCE = use_checkout(force=True)    # always the code beside this script, installed or not

try:
    import yaml  # noqa: F401  (the config module reads YAML; this check never does)
except ImportError:                  # a bare GPU machine may lack PyYAML: a stand-in that is never called
    def _no_yaml(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("PyYAML is not installed (bench/gpu_check.py reads no YAML)")

    class _Loader:
        add_constructor = classmethod(lambda cls, *a, **k: None)
        construct_mapping = _no_yaml

    stub = types.ModuleType("yaml")
    stub.__dict__.update(YAMLError=type("YAMLError", (Exception,), {}), SafeLoader=_Loader, Loader=_Loader,
                         SafeDumper=_Loader, Dumper=_Loader, MappingNode=object, safe_load=_no_yaml,
                         safe_dump=_no_yaml, load=_no_yaml, dump=_no_yaml,
                         resolver=types.SimpleNamespace(BaseResolver=types.SimpleNamespace(DEFAULT_MAPPING_TAG="")))
    sys.modules["yaml"] = stub

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from compile_throughput import Block, ResNetCifar  # noqa: E402

from morphnas.morphism.compile import compile_network  # noqa: E402
from morphnas.search.data.containers import Data, Split  # noqa: E402
from morphnas.search.trial.accel import COMPILE_MIN_STEPS, bf16_supported, resolve_accel  # noqa: E402
from morphnas.search.trial.train import TrainSpec, make_optimizer, train  # noqa: E402
from morphnas.spaces.registry import create_network  # noqa: E402


# ------------------------------------------------------------------------------ hand-written child
class MorphBlock(Block):
    """A ResNet block after ``morph_block`` 3c3: half the identity shortcut (x 0.5) plus conv3-BN-PReLU-
    conv3-BN, with the IR's parameter names (``<block>.morph.conv1`` ...)."""

    def __init__(self, c: int, k1: int = 3, k2: int = 3):
        super().__init__(c, c, 1)
        self.morph = nn.Module()
        self.morph.conv1 = nn.Conv2d(c, c, k1, 1, k1 // 2, bias=False)
        self.morph.bn1 = nn.BatchNorm2d(c)
        self.morph.prelu1 = nn.PReLU(c)
        self.morph.conv2 = nn.Conv2d(c, c, k2, 1, k2 // 2, bias=False)
        self.morph.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        m = self.morph
        out = self.bn2(self.conv2(self.prelu1(self.bn1(self.conv1(x)))))
        out = out + m.bn2(m.conv2(m.prelu1(m.bn1(m.conv1(x))))) + x * 0.5
        return self.prelu2(out)


def hand_morph20() -> nn.Module:
    net = ResNetCifar(20)
    for s in range(3):
        layer = getattr(net, f"layer{s + 1}")
        for b in range(1, len(layer)):
            layer[b] = MorphBlock(16 * 2 ** s)
    return net


def pair(name: str) -> tuple[nn.Module, nn.Module, float]:
    """(hand-written, compiled IR, max output difference in eval mode) with the same weights."""
    ir = compile_network(create_network(name))
    hand = ResNetCifar(20) if name == "resnet20" else hand_morph20()
    hand.load_state_dict(ir.state_dict())       # the names map one to one; a mismatch raises
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        err = (ir.eval()(x) - hand.eval()(x)).abs().max().item()
    return hand.train(), ir.train(), err


# ------------------------------------------------------------------------------ timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_rate(model: nn.Module, device: torch.device, batch: int, dtype: torch.dtype | None, channels_last: bool,
              compiled: bool, steps: int, warmup: int) -> dict[str, float]:
    """A plain training step (autocast, cross-entropy, zero_grad, backward, SGD) on a batch already on
    the device, no read-back between steps: ms per step, images/s, and the first step's seconds."""
    model = copy.deepcopy(model).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, TrainSpec(epochs=1, lr=0.01))
    fn = torch.compile(model) if compiled else model
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(fn(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    t0 = time.perf_counter()
    step()
    sync(device)
    first = time.perf_counter() - t0
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    dt = (time.perf_counter() - t0) / steps
    return {"ms": dt * 1e3, "img_s": batch / dt, "first_s": first}


def synthetic(n: int, seed: int = 0, shape: tuple[int, ...] = (3, 32, 32)) -> Data:
    """CIFAR-shaped random data (speed only: nothing to learn), pad-crop + flip augmented like CIFAR."""
    g = torch.Generator().manual_seed(seed)

    def split(k: int) -> Split:
        return Split(torch.randn(k, *shape, generator=g), torch.randint(0, 10, (k,), generator=g))
    return Data(split(n), split(max(1, n // 9)), split(8), 10, shape, "crop_flip")


# ------------------------------------------------------------------------------ sections
class Report:
    def __init__(self, budget_s: float):
        self.lines: list[str] = []
        self.t0 = time.time()
        self.budget = budget_s

    def left(self) -> float:
        return self.budget - (time.time() - self.t0)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)
        print(*lines, sep="\n", flush=True)

    def section(self, title: str, need_s: float) -> bool:
        self.add("", f"## {title}", "")
        if self.left() < need_s:
            self.add(f"skipped: {self.left():.0f} s left of the budget, this section needs about {need_s:.0f} s "
                     f"(raise --budget-s)")
            return False
        return True


def checks(rep: Report, device: torch.device, a: argparse.Namespace) -> None:
    if not rep.section("1. checks", 5):
        return
    rep.add("| check | result |", "|---|---|")
    data = synthetic(96 if a.quick else 512)
    cpu = list(data.train.batches(32, shuffle=True, augment="crop_flip", gen=torch.Generator().manual_seed(3)))
    dev = list(data.on(device).train.batches(32, shuffle=True, augment="crop_flip",
                                             gen=torch.Generator().manual_seed(3)))
    same = all(torch.equal(xc, xd.cpu()) and torch.equal(yc, yd.cpu()) for (xc, yc), (xd, yd) in zip(cpu, dev))
    rep.add(f"| batches on {device.type} equal the CPU's (same seed, crop+flip) | "
            f"{'PASS' if same and len(cpu) == len(dev) else 'FAIL'} |")
    net = create_network("resnet20", width=4) if a.quick else create_network("resnet20")
    spec = TrainSpec(epochs=1, lr=0.05, batch_size=32)
    _, r_cpu = train(net, data, spec, seed=1, device="cpu")
    _, r_dev = train(net, data, spec, seed=1, device=device, precision="fp32", channels_last=False, compile=False)
    rel = abs(r_dev[0].train_loss - r_cpu[0].train_loss) / r_cpu[0].train_loss
    rep.add(f"| one epoch in fp32 on {device.type}: loss {r_dev[0].train_loss:.5f} vs CPU {r_cpu[0].train_loss:.5f} "
            f"(rel. diff {rel:.1e}, bound 1e-3) | {'PASS' if rel <= 1e-3 else 'FAIL'} |")
    steps = 20 * math.ceil(45000 / 128)
    rep.add(f"| `auto` on {device.type} for a 20-epoch CIFAR fine-tune ({steps} steps) | "
            f"{resolve_accel(device, planned_steps=steps).describe()} |",
            f"| `compile: auto` compiles from | {COMPILE_MIN_STEPS} planned steps |")


def throughput(rep: Report, device: torch.device, a: argparse.Namespace) -> dict[str, Any]:
    batch, steps, warm = (16, 3, 1) if a.quick else (128, 40, 5)
    rep.add("", f"## 2. train step: ResNet-20, batch {batch} x 3x32x32 on the device", "")
    hand, ir, err = pair("resnet20")
    low = torch.bfloat16 if bf16_supported(device) else torch.float16
    names = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    rep.add(f"eval-mode outputs of the two networks differ by at most {err:.1e}.", "",
            "| network | precision | channels-last | compile | ms / step | images / s | first step s |",
            "|---|---|---|---|---:|---:|---:|")
    rows: dict[tuple, dict[str, float]] = {}
    combos = [(d, cl, False) for d in (None, low) for cl in (False, True)]
    combos += [(None, False, True), (low, True, True)]
    for dtype, cl, comp in combos:
        for label, model in (("hand-written", hand), ("compiled IR", ir)):
            need = 90 if comp else 10
            if comp and a.quick:
                rep.add(f"| {label} | {names[dtype]} | {'on' if cl else 'off'} | on | skipped in --quick "
                        f"(a compile takes a minute) | | |")
                continue
            if rep.left() < need:
                rep.add(f"| {label} | {names[dtype]} | {'on' if cl else 'off'} | {'on' if comp else 'off'} | "
                        f"skipped: budget | | |")
                continue
            r = step_rate(model, device, batch, dtype, cl, comp, steps, warm)
            rows[(label, dtype, cl, comp)] = r
            rep.add(f"| {label} | {names[dtype]} | {'on' if cl else 'off'} | {'on' if comp else 'off'} | "
                    f"{r['ms']:.2f} | {r['img_s']:.0f} | {r['first_s']:.2f} |")
    for label in ("hand-written", "compiled IR"):
        e, c = rows.get((label, low, True, False)), rows.get((label, low, True, True))
        if e and c:
            saved = e["ms"] - c["ms"]
            comp_s = c["first_s"] - e["first_s"]
            even = f"{math.ceil(comp_s * 1e3 / saved)} steps" if saved > 0 else "never (no saving)"
            rep.add("", f"{label}: torch.compile took {comp_s:.1f} s and saves {saved:.2f} ms/step: break-even after "
                    f"{even} (accel.py assumes {COMPILE_MIN_STEPS}).")
    return {"low": low, "batch": batch, "rows": rows}


def child(rep: Report, device: torch.device, a: argparse.Namespace, tp: dict[str, Any]) -> None:
    if not rep.section("3. morphed child: morph20_3c3, IR vs hand-written", 15):
        return
    hand, ir, err = pair("morph20_3c3")
    gpu = device.type == "cuda"
    dtype, cl = (tp["low"], True) if gpu else (None, False)
    batch, steps, warm = (16, 3, 1) if a.quick else (128, 40, 5)
    rep.add(f"eval-mode outputs differ by at most {err:.1e}; {'bf16/fp16 + channels-last' if gpu else 'fp32'}, "
            f"eager, batch {batch}.", "", "| network | ms / step | images / s | IR / hand |", "|---|---:|---:|---:|")
    rh = step_rate(hand, device, batch, dtype, cl, False, steps, warm)
    ri = step_rate(ir, device, batch, dtype, cl, False, steps, warm)
    rep.add(f"| hand-written morph20_3c3 | {rh['ms']:.2f} | {rh['img_s']:.0f} | 1.000 |",
            f"| compiled IR morph20_3c3 | {ri['ms']:.2f} | {ri['img_s']:.0f} | {ri['ms'] / rh['ms']:.3f} |")


def loop(rep: Report, device: torch.device, a: argparse.Namespace, tp: dict[str, Any]) -> None:
    if not rep.section("4. the search's training loop (train(), settings auto)", 30):
        return
    n = 256 if a.quick else 10000
    batch = tp["batch"] if not a.quick else 32
    data = synthetic(n)
    rep.add(f"synthetic CIFAR-shaped data, {n} training images, batch {batch}, crop+flip on the device, one epoch "
            f"after a warm-up epoch (speed only); includes evaluation of {len(data.val)} images.", "",
            "| network | settings | s / epoch | training images / s |", "|---|---|---:|---:|")
    for name in ("resnet20", "morph20_3c3"):
        net = create_network(name, width=4) if a.quick else create_network(name)
        spec = TrainSpec(epochs=2, lr=0.01, batch_size=batch)
        stamps: list[float] = []
        t0 = time.perf_counter()
        train(net, data, spec, seed=0, device=device, on_epoch=lambda r, m: stamps.append(time.perf_counter()))
        dt = stamps[1] - stamps[0]
        acc = resolve_accel(device, planned_steps=2 * math.ceil(n / batch)).describe()
        rep.add(f"| {name}{' (width 4)' if a.quick else ''} | {acc} | {dt:.2f} | {n / dt:.0f} |")
        del t0


def equal_compute(rep: Report, device: torch.device, a: argparse.Namespace) -> None:
    if not rep.section("5. equal compute (bench/equal_flops.py on the device)", 60):
        return
    have = {m: importlib.util.find_spec(m) is not None for m in ("optuna", "mlxtend")}
    if a.quick or not all(have.values()):
        why = "--quick" if a.quick else ", ".join(f"{m} not installed" for m, ok in have.items() if not ok)
        rep.add(f"skipped ({why}): the search methods need Optuna (strategies) and mlxtend (mnist5k). Section 4's "
                f"rows are the speed of what they spend their budget on: seed epochs and child fine-tunes.")
        return
    out = Path(tempfile.mkdtemp()) / "equal_flops"
    cmd = [sys.executable, str(HERE / "equal_flops.py"), "--regime", "r2", "--reps", "1", "--jobs", "1",
           "--methods", "seed,grow:rung,hill", "--device", device.type, "--out", str(out)]
    limit = max(30.0, rep.left() - 200)
    rep.add(f"`{' '.join(cmd[1:])}` (limit {limit:.0f} s)", "")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, cwd=ROOT)
    except subprocess.TimeoutExpired:
        rep.add(f"timed out after {limit:.0f} s")
        return
    md = out.with_suffix(".md")
    if proc.returncode != 0 or not md.exists():
        rep.add(f"failed (exit {proc.returncode}): {(proc.stderr.strip().splitlines() or [''])[-1]}")
        return
    rep.add(*[ln for ln in md.read_text().splitlines() if ln.startswith("|")])


def _worker(rank: int, device: str, name: str, n: int, epochs: int, barrier: Any, results: Any) -> None:
    """One worker process: train the same child on its own copy of the data; puts (seconds, images)."""
    try:
        torch.set_num_threads(1)
        width = {"width": 4} if n < 1000 else {}
        net, data = create_network(name, **width), synthetic(n, seed=rank)
        data = data.on(device)
        barrier.wait(timeout=300)
        t0 = time.perf_counter()
        train(net, data, TrainSpec(epochs=epochs, lr=0.01, batch_size=128 if n >= 1000 else 32), seed=rank,
              device=device)
        results.put((rank, time.perf_counter() - t0, n * epochs, ""))
    except Exception as e:  # reported in the table, not lost in a child's stderr
        results.put((rank, 0.0, 0, f"{type(e).__name__}: {e}"))


class Utilisation(threading.Thread):
    """GPU utilisation samples from nvidia-smi (or torch.cuda.utilization) while a section runs."""

    def __init__(self, device: torch.device):
        super().__init__(daemon=True)
        self.device, self.samples, self.stop = device, [], threading.Event()
        self.smi = shutil.which("nvidia-smi")

    def read(self) -> float | None:
        if self.device.type != "cuda":
            return None
        if self.smi:
            try:
                out = subprocess.run([self.smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                      "-i", str(self.device.index or 0)], capture_output=True, text=True, timeout=5)
                return float(out.stdout.strip().splitlines()[0])
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return None
        try:
            return float(torch.cuda.utilization(self.device))
        except Exception:  # needs pynvml; no figure then
            return None

    def run(self) -> None:
        while not self.stop.wait(0.5):
            v = self.read()
            if v is not None:
                self.samples.append(v)

    def mean(self) -> str:
        return f"{statistics.mean(self.samples):.0f}%" if self.samples else "n/a"


def workers(rep: Report, device: torch.device, a: argparse.Namespace) -> None:
    counts = (1, 2) if a.quick else (1, 2, 4)
    if not rep.section(f"6. workers sharing the {device.type}: N processes train the same child", 60):
        return
    name = "resnet20" if a.quick else "morph20_3c3"
    n, epochs = (128, 1) if a.quick else (10000, 2)
    rep.add(f"each process: {name}{' (width 4)' if a.quick else ''}, {n} synthetic images x {epochs} epoch(s), "
            f"settings auto; timed from a common start after start-up. Children per hour are projected for a "
            f"20-epoch fine-tune on 45,000 images.", "",
            "| N | slowest process s | images / s (all) | per process | children / hour (projected) | GPU util |",
            "|---:|---:|---:|---:|---:|---:|")
    ctx = mp.get_context("spawn")
    for k in counts:
        if rep.left() < 40:
            rep.add(f"| {k} | skipped: budget | | | | |")
            continue
        util = Utilisation(device)
        barrier, results = ctx.Barrier(k), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(r, str(device), name, n, epochs, barrier, results))
                 for r in range(k)]
        for p in procs:
            p.start()
        util.start()
        res = [results.get(timeout=600) for _ in procs]
        for p in procs:
            p.join()
        util.stop.set()
        bad = [e for *_, e in res if e]
        if bad:
            rep.add(f"| {k} | FAIL: {bad[0]} | | | | |")
            continue
        slow = max(r[1] for r in res)
        rate = sum(r[2] for r in res) / slow
        per_hour = rate * 3600 / (20 * 45000)
        rep.add(f"| {k} | {slow:.1f} | {rate:.0f} | {rate / k:.0f} | {per_hour:.1f} | {util.mean()} |")


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="run on the CPU (no GPU needed: a smoke run, not a speed claim)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, no compile, no equal-compute run (CI)")
    ap.add_argument("--budget-s", type=float, default=450.0, help="stop starting sections after this (default 450)")
    ap.add_argument("--out", default=None, help="the markdown file (default bench/results/gpu_check[_cpu][_quick].md)")
    a = ap.parse_args(argv)
    if not a.cpu and not torch.cuda.is_available():
        print("no CUDA GPU visible to torch; run with --cpu for the smoke run", file=sys.stderr)
        return 2
    device = torch.device("cpu" if a.cpu else "cuda")
    if a.cpu:
        torch.set_num_threads(1)
    rep = Report(a.budget_s)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    cmd = "python bench/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rep.add(f"# Device check{' (CPU smoke run: not a speed claim)' if a.cpu else ''}", "",
            f"`{cmd.strip()}` on {gpu}; torch {torch.__version__}"
            f"{', CUDA ' + str(torch.version.cuda) if device.type == 'cuda' else ''}"
            f"{', bf16 ' + ('yes' if bf16_supported(device) else 'no')}; morphnas from {SOURCE}; "
            f"{os.cpu_count()} CPUs.")
    checks(rep, device, a)
    tp = throughput(rep, device, a)
    child(rep, device, a, tp)
    loop(rep, device, a, tp)
    equal_compute(rep, device, a)
    workers(rep, device, a)
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("ray", "optuna"))
    rep.add("", f"Total {time.time() - rep.t0:.0f} s. Ray or Optuna imported by this process: "
            f"{'yes: ' + ', '.join(heavy[:3]) if heavy else 'no'}.")
    out = Path(a.out) if a.out else HERE / "results" / f"gpu_check{'_cpu' if a.cpu else ''}{'_quick' if a.quick else ''}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(rep.lines) + "\n")
    print(f"\nwritten to {out}", file=sys.stderr)
    return 1 if "FAIL" in "\n".join(rep.lines) or heavy else 0


if __name__ == "__main__":
    sys.exit(main())
