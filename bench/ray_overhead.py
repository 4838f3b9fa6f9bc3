"""Ray Tune's per-trial overhead: one ~30 s trial through the search machinery vs called directly.

    .venv/bin/python bench/ray_overhead.py [--seconds 30] [--out bench/results/ray_overhead.md]

The trial is the seed job of a search (tiny ResNet on digits upscaled to 32x32, 1 torch thread),
its epoch count calibrated so the direct call takes about ``--seconds``. Timed, all with the same
job (same seeds, same work, a member directory written every epoch):

* direct: ``runner.execute(job)`` in this process, cold (data not loaded yet) and warm (once
  before and once after the Tune trials: the shared machine's load drifts);
* Tune: ``Tuner(runner.run_trial)`` as the driver builds it (1 CPU, reuse_actors), two trials one
  after the other: the first starts a fresh worker process (import torch, load the data), the
  second reuses it (what most trials of a search get); Ray itself already running;
* the whole driver: ``morphnas search`` with ``budget.trials=0`` (only the seed trial), i.e.
  ``ray.init`` + Tune + recording the member in the Optuna study + plots, minus nothing.

The overhead of a Tune trial is (its wall time - the direct call's) / the direct call's.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from morphnas.search.config import config_from_dict
from morphnas.search.trial import worker
from morphnas.search.trial.jobs import environment
from morphnas.search.trial.jobs import seed_job as build_seed_job
from morphnas.search.tune.adapters import trial_dirname
from morphnas.search.tune.trainable import trainable_with_resources

DATA = {"dataset": "digits", "image_size": 32}


def seed_job(run_dir: Path, member: str, epochs: int) -> dict:
    """The seed job exactly as the driver builds it (``seed_job`` + the session's ``environment``)."""
    cfg = config_from_dict({"name": "ov", "runs_dir": str(run_dir.parent), "data": DATA,
                            "seed": {"network": "tiny_resnet", "epochs": epochs}, "budget": {"trials": 0}})
    job = build_seed_job(cfg).replace(**environment(cfg, run_dir, 0.0, None)).to_json()
    job["run_dir"], job["member_id"], job["member_path"] = str(run_dir), member, f"members/{member}"
    return job


def direct(job: dict, cold: bool) -> float:
    if cold:
        worker.clear_data_cache()
    t = time.perf_counter()
    worker.execute(job, lambda metrics: None)
    return time.perf_counter() - t


class Times:
    """A Tune callback noting when each trial completes (driver-side clock)."""

    def __init__(self):
        from ray.tune import Callback

        outer = self
        self.done: list[float] = []

        class _CB(Callback):
            def on_trial_complete(self, iteration, trials, trial, **info):
                outer.done.append(time.perf_counter())

        self.callback = _CB()


def through_tune(job: dict, root: Path) -> tuple[float, float, float]:
    """(ray.init s, trial 1 s, trial 2 s): two identical trials in sequence on one 1-CPU Tune."""
    import ray
    from ray import tune
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    t_init = time.perf_counter() - t0
    try:
        times = Times()
        jobs = [dict(job, member_id=f"t{i}", member_path=f"members/t{i}") for i in (1, 2)]
        tuner = tune.Tuner(
            trainable_with_resources(1, 0.0),
            param_space={"job": tune.grid_search(jobs)},
            tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True,
                                        trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(name="overhead", storage_path=str(root / "ray"), verbose=0,
                                      callbacks=[times.callback], failure_config=tune.FailureConfig(max_failures=0)))
        start = time.perf_counter()
        results = tuner.fit()
        if results.errors or len(times.done) != 2:
            raise RuntimeError(f"the Tune trials failed: {results.errors}")
        return t_init, times.done[0] - start, times.done[1] - times.done[0]
    finally:
        ray.shutdown()


def whole_driver(epochs: int, root: Path) -> float:
    from morphnas.search.run.driver import Driver
    cfg = config_from_dict({"name": "drv", "runs_dir": str(root), "data": DATA, "random_seed": 0,
                            "seed": {"network": "tiny_resnet", "epochs": epochs}, "budget": {"trials": 0},
                            "actions": {"ops": {"widen": {}}},
                            "ray": {"num_cpus": 1}, "final": {"enabled": False}})
    t = time.perf_counter()
    Driver(cfg, echo=lambda s: None).run()
    return time.perf_counter() - t


def main() -> None:
    torch.set_num_threads(1)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0, help="target length of the trial")
    ap.add_argument("--out", default=None, help="also write the table (markdown) here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="ovh") as tmp:
        root = Path(tmp)
        run_dir = root / "direct"
        # Calibrate: 2 epochs (warm), then the epoch count that makes the trial ~--seconds.
        direct(seed_job(run_dir, "cal0", 1), cold=True)
        per_epoch = direct(seed_job(run_dir, "cal", 2), cold=False) / 2
        epochs = max(1, round(args.seconds / per_epoch))
        job = seed_job(run_dir, "d1", epochs)
        d_cold = direct(job, cold=True)
        d_warm1 = direct(dict(job, member_id="d2", member_path="members/d2"), cold=False)
        t_init, t1, t2 = through_tune(seed_job(root / "tune", "t", epochs), root / "tune")
        # Direct again after Tune: the load of the shared machine drifts, so the warm reference
        # is the mean of one run before and one after the Tune trials (both shown).
        d_warm2 = direct(dict(job, member_id="d3", member_path="members/d3"), cold=False)
        t_drv = whole_driver(epochs, root / "drv")
    d_warm = (d_warm1 + d_warm2) / 2

    rows = [
        ("direct call, cold (loads the data)", d_cold, None),
        ("direct call, warm (before Tune)", d_warm1, None),
        ("direct call, warm (after Tune)", d_warm2, None),
        ("Tune trial 1: new worker process (vs cold)", t1, (t1 - d_cold) / d_cold),
        ("Tune trial 2: reused worker (vs mean of warm)", t2, (t2 - d_warm) / d_warm),
        ("whole driver, seed-only search incl. ray.init + study (vs cold)", t_drv, (t_drv - d_cold) / d_cold),
    ]
    lines = [f"Trial: seed job, tiny_resnet on digits 32x32, {epochs} epochs (~{per_epoch:.2f} s/epoch), "
             f"1 torch thread; `ray.init` (local, 1 CPU) took {t_init:.1f} s (once per search, not per trial).",
             "", "| path | wall s | overhead vs direct |", "|---|---|---|"]
    for name, s, ov in rows:
        lines.append(f"| {name} | {s:.2f} | {'' if ov is None else f'{100 * ov:+.1f}%'} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        cmd = "OMP_NUM_THREADS=1 .venv/bin/python bench/ray_overhead.py " + " ".join(sys.argv[1:])
        load = os.getloadavg()[0]
        Path(args.out).write_text(
            "# Ray Tune per-trial overhead\n\n"
            f"Command: `{cmd.strip()}`  \nMeasured {time.strftime('%Y-%m-%d %H:%M')} on the 2-core machine "
            f"(1-min load average at the end: {load:.1f}; other jobs share the cores, so the absolute "
            "times vary; each ratio compares runs made back to back).\n\n" + table + "\n\n"
            "Target: a trial run through the search machinery costs <= 10% more than the training "
            "called directly. The reused-worker row is what most trials of a search see (Tune keeps "
            "the worker with `reuse_actors=True`); the first trial of a worker also pays the worker's "
            "start (python + torch import + data load) and the whole-driver row adds `ray.init`, "
            "recording the member in the Optuna study and drawing its plots once.\n")


if __name__ == "__main__":
    main()
