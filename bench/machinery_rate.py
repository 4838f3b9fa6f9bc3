"""How close the search machinery runs to Ray Tune's own limit, and how busy the cores are.

    .venv/bin/python bench/machinery_rate.py [--children 16] [--out bench/results/machinery.md]

One run, one Ray instance (2 CPUs, 1 CPU per trial, concurrency 2), measured in this order:

* (b) **Tune's limit**: an empty function trainable (reports once) suggested by a searcher that never
  waits, with the driver's Tune settings (``reuse_actors``, ``max_concurrent_trials=2``, the same
  trial names and resources). Rate = trials / (first suggestion -> last completion).
* (a) **the machinery**: a real search (``random_walk``, which proposes whenever asked, so the
  strategy never waits) of ``--children`` children with **zero-epoch** fine-tunes: each child is
  morphed, verified against its parent, evaluated, saved, recorded in the run state and the Optuna
  study, drawn. Rate = children / (first child launched -> last child finished). Run twice: with the
  background publisher (the driver as shipped) and with the old synchronous recording (drawing and
  study writes inside Tune's completion callback), which also gives the driver's per-trial time in
  Tune's callbacks (``on_trial_complete``) before/after.
* (c) **CPU utilisation** of each core (``/proc/stat``, sampled every 0.5 s) during the quickstart
  (``morphnas search configs/quickstart.yaml`` in a fresh run directory).

The machine may be shared: the utilisation counts every process, and the rates drop under load;
the ratio a/b is the figure to compare (both are measured within the same minute).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------ (b) Tune alone
def empty_trainable(config):
    from ray import tune
    tune.report({"val_acc": 0.0})


def tune_limit(n: int, storage: Path) -> float:
    """Trials per minute of an empty trainable at concurrency 2 (Ray already running)."""
    from ray import tune
    from ray.tune.search import Searcher

    from morphnas.search.tune.adapters import trial_dirname

    class Eager(Searcher):
        def __init__(self):
            super().__init__(metric="val_acc", mode="max")
            self.given, self.done, self.t0, self.t1 = 0, 0, None, None

        def suggest(self, trial_id):
            if self.given >= n:
                return Searcher.FINISHED
            self.t0 = self.t0 or time.perf_counter()
            self.given += 1
            return {"job": {"member_id": f"e{self.given}"}}

        def on_trial_complete(self, trial_id, result=None, error=False):
            self.done += 1
            self.t1 = time.perf_counter()

    s = Eager()
    tune.Tuner(tune.with_resources(empty_trainable, {"cpu": 1, "gpu": 0}),
               tune_config=tune.TuneConfig(search_alg=s, num_samples=n, max_concurrent_trials=2, reuse_actors=True,
                                           trial_dirname_creator=trial_dirname,
                                           trial_name_creator=trial_dirname),
               run_config=tune.RunConfig(name="empty", storage_path=str(storage), verbose=0)).fit()
    assert s.done == n and s.t0 is not None and s.t1 is not None
    return n / (s.t1 - s.t0) * 60


# ------------------------------------------------------------------------------------ (a) machinery
class SyncPublisher:
    """The old recording: drawing, study writes and plot redraws inside Tune's callbacks."""

    def __init__(self, publisher, warn):
        self.publisher = publisher

    def submit(self, result):
        self.publisher.record(result, plots=True)

    def open(self, job):
        self.publisher.lb.open_trial(job)

    def flush(self):
        pass

    def close(self):
        pass


def machinery(n: int, root: Path, name: str, sync: bool) -> tuple[float, float, float, float]:
    """(children per minute, mean and max driver seconds per on_trial_complete, mean s per child suggest)."""
    from morphnas.search.config import config_from_dict
    from morphnas.search.run.driver import Driver
    from morphnas.search.study import publish

    cfg = config_from_dict({
        "name": name, "runs_dir": str(root), "random_seed": 0,
        "seed": {"network": "tiny_resnet", "epochs": 1, "lr": 0.1},
        "data": {"dataset": "digits"},
        "actions": {"ops": {"deepen": {}, "widen": {"factor": [1.5]}, "insert_path": {}}, "actions_per_child": 1,
                    "constraints": {"max_params": 200000}},
        "strategy": {"name": "random_walk"},
        "budget": {"trials": n}, "finetune": {"epochs": 0},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 2}, "ray": {"num_cpus": 2},
        "final": {"enabled": False},
    })
    marks: dict[str, float] = {}
    callback: list[float] = []
    suggest: list[float] = []

    class Timed(Driver):
        def _launch(self, trial_id, job):
            if job.kind == "child":
                marks.setdefault("first", time.perf_counter())
            return super()._launch(trial_id, job)

        def suggest(self, trial_id):
            t = time.perf_counter()
            out = super().suggest(trial_id)
            if isinstance(out, dict) and out.get("job", {}).get("kind") == "child":
                suggest.append(time.perf_counter() - t)
            return out

        def on_trial_complete(self, trial_id, result, error):
            t = time.perf_counter()
            super().on_trial_complete(trial_id, result, error)
            if trial_id in self.trials and self.trials[trial_id] != "m0":
                callback.append(time.perf_counter() - t)
                marks["last"] = time.perf_counter()

    old = publish.BackgroundPublisher
    if sync:
        publish.BackgroundPublisher = SyncPublisher     # type: ignore[misc, assignment]
    try:
        Timed(cfg, echo=lambda s: None).run()
    finally:
        publish.BackgroundPublisher = old               # type: ignore[misc]
    return (n / (marks["last"] - marks["first"]) * 60, statistics.mean(callback), max(callback),
            statistics.mean(suggest))


# ------------------------------------------------------------------------------------ (c) CPU
def _cpu_times() -> dict[str, tuple[int, int]]:
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        f = line.split()
        if f[0].startswith("cpu") and f[0] != "cpu":
            v = [int(x) for x in f[1:]]
            out[f[0]] = (sum(v), v[3] + v[4])          # total, idle + iowait
    return out


def quickstart_cpu(root: Path) -> tuple[float, dict[str, float], list[str]]:
    """(wall s, mean busy fraction per core, the progress lines) of the quickstart."""
    samples = [_cpu_times()]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.5):
            samples.append(_cpu_times())
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    out = subprocess.run([str(Path(sys.executable).parent / "morphnas"), "search", str(ROOT / "configs/quickstart.yaml"),
                          "--set", f"runs_dir={root}"], capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t
    stop.set()
    th.join()
    samples.append(_cpu_times())
    busy = {}
    for cpu in samples[0]:
        tot = samples[-1][cpu][0] - samples[0][cpu][0]
        idle = samples[-1][cpu][1] - samples[0][cpu][1]
        busy[cpu] = 1 - idle / tot if tot else 0.0
    return wall, busy, [ln for ln in out.stdout.splitlines() if ln.startswith("[")]


def main() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    ap = argparse.ArgumentParser()
    ap.add_argument("--children", type=int, default=16)
    ap.add_argument("--out", default=None, help="also write the table (markdown) here")
    ap.add_argument("--no-quickstart", action="store_true", help="skip (c)")
    args = ap.parse_args()
    import ray
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mrate") as tmp:
        root = Path(tmp)
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            limit = tune_limit(args.children, root / "tune")
            rate, cb_mean, cb_max, sg = machinery(args.children, root, "bg", sync=False)
            rate_sync, cb_sync_mean, cb_sync_max, sg_sync = machinery(args.children, root, "sync", sync=True)
        finally:
            ray.shutdown()
        qs = None if args.no_quickstart else quickstart_cpu(root / "qs")
    lines = [
        f"Machinery rate vs Ray Tune's limit ({args.children} trials each, concurrency 2, 1 CPU per trial; "
        f"load average {load:.1f} at start on {os.cpu_count()} cores: other processes shared the machine)",
        "",
        "| what | children / min | ratio to Tune's limit | driver s per trial in on_trial_complete (mean / max) "
        "| driver s per proposal (suggest, mean) |",
        "|---|---|---|---|---|",
        f"| (b) Tune, empty trainable (the limit) | {limit:.0f} | 1.00 | - | - |",
        f"| (a) machinery, zero-epoch children, background publisher | {rate:.0f} | {rate / limit:.2f} | "
        f"{cb_mean:.3f} / {cb_max:.3f} | {sg:.3f} |",
        f"| (a) machinery, old synchronous recording | {rate_sync:.0f} | {rate_sync / limit:.2f} | "
        f"{cb_sync_mean:.3f} / {cb_sync_max:.3f} | {sg_sync:.3f} |",
    ]
    if qs is not None:
        wall, busy, progress = qs
        running2 = sum("running 2" in ln for ln in progress)
        lines += ["", f"CPU utilisation during the quickstart ({wall:.0f} s wall, whole machine, /proc/stat every 0.5 s):",
                  "", "| core | busy |", "|---|---|"]
        lines += [f"| {cpu} | {b:.0%} |" for cpu, b in sorted(busy.items())]
        final = [ln for ln in progress if ln.startswith("[final] best")]
        lines += ["", f"Progress lines showing `running 2`: {running2} of {len(progress)}."
                  + (f" Quickstart result: `{final[0]}`" if final else "")]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
