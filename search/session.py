"""One Tune session of a run: Ray start-up, the Tuner (with ASHA if asked), signal handling, shutdown.

The driver (:mod:`.loop`) decides everything about trials; this module only runs Tune around it.
``TuneSession(cfg, run_dir)`` is a context manager: entering starts (or joins) Ray and works out the
session's resources (GPUs per trial, trials at a time), leaving shuts down a Ray it started.
:meth:`TuneSession.fit` runs the Tuner until the driver says ``FINISHED``; Ctrl-C / SIGTERM are
handed to :meth:`SessionDriver.interrupt` (the driver stops the trials and keeps them pending).
"""
from __future__ import annotations

import os
import signal
from types import FrameType, TracebackType
from typing import Any, Callable, Protocol

from . import runner
from .config import Config
from .rundir import RunDir


class SessionDriver(runner.TuneDriver, Protocol):
    """What a session needs of the driver besides the Tune callbacks."""

    def interrupt(self, signal_name: str) -> None: ...


class TuneSession:
    def __init__(self, cfg: Config, run_dir: RunDir):
        self.cfg = cfg
        self.run_dir = run_dir
        self._started_ray = False
        self.gpus = 0.0          # per trial, decided once Ray is up
        self.concurrent = 1      # trials at a time

    # ------------------------------------------------------------------------- Ray
    def __enter__(self) -> "TuneSession":
        import ray
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"     # ours stops trials and keeps them pending
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if self.cfg.ray.address:
                ray.init(address=self.cfg.ray.address, **kw)
            else:
                ray.init(address="local", num_cpus=self.cfg.ray.num_cpus, **kw)
            self._started_ray = True
        resources = ray.cluster_resources()
        self.gpus = gpus_per_trial(self.cfg.resources.gpus_per_trial, resources)
        cpus = float(resources.get("CPU", 1))
        self.concurrent = self.cfg.resources.max_concurrent or max(1, int(cpus // self.cfg.resources.cpus_per_trial))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._started_ray:
            import ray
            ray.shutdown()

    # ------------------------------------------------------------------------- Tune
    def fit(self, driver: SessionDriver, num_samples: int, name: str) -> None:
        """Run Tune until the driver has nothing more to suggest (or is interrupted)."""
        from ray import tune
        scheduler = None
        if self.cfg.ray.asha:
            from ray.tune.schedulers import ASHAScheduler
            scheduler = ASHAScheduler(time_attr="training_iteration", metric=runner.METRIC, mode="max",
                                      max_t=max(1, self.cfg.finetune.epochs, self.cfg.seed.epochs),
                                      grace_period=self.cfg.ray.grace_period,
                                      reduction_factor=self.cfg.ray.reduction_factor)
        tuner = tune.Tuner(
            runner.trainable_with_resources(self.cfg.resources.cpus_per_trial, self.gpus),
            tune_config=tune.TuneConfig(search_alg=runner.MorphSearcher(driver), scheduler=scheduler,
                                        num_samples=max(1, num_samples), max_concurrent_trials=self.concurrent,
                                        reuse_actors=True, trial_dirname_creator=runner.trial_dirname,
                                        trial_name_creator=runner.trial_dirname),
            run_config=tune.RunConfig(name=name, storage_path=str(self.run_dir.ray),
                                      stop=runner.InterruptStopper(driver), callbacks=[runner.ErrorCallback(driver)],
                                      verbose=0,
                                      # run_trial turns every exception into a FAIL report, so only a dying
                                      # worker or node reaches Tune as an error: a retry re-runs that job.
                                      failure_config=tune.FailureConfig(max_failures=self.cfg.ray.max_failures)),
        )
        handler = _signal_handler(driver)
        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in old:
            signal.signal(s, handler)
        try:
            tuner.fit()
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def _signal_handler(driver: SessionDriver) -> Callable[[int, FrameType | None], None]:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        driver.interrupt(signal.Signals(signum).name)
    return on_signal


def gpus_per_trial(configured: float | None, resources: dict[str, Any]) -> float:
    """``resources.gpus_per_trial``, or (None) one GPU per trial when the cluster has any."""
    if configured is not None:
        return float(configured)
    return 1.0 if resources.get("GPU", 0) >= 1 else 0.0
