"""One Tune session of a run: Ray start-up, the Tuner (with ASHA if asked), signal handling, shutdown.

The driver (:mod:`morphnas.search.run.driver`) decides everything about trials; this module only runs Tune around it.
``TuneSession(cfg, run_dir)`` is a context manager: entering starts (or joins) Ray and works out the
session's resources (GPUs per trial, trials at a time), leaving shuts down a Ray it started.
:meth:`TuneSession.fit` runs the Tuner until the driver says ``FINISHED``; Ctrl-C / SIGTERM are
handed to :meth:`SessionDriver.interrupt` (the driver stops the trials and keeps them pending).

Start-up fails within seconds, in one line, when the cluster cannot run a trial at all (more CPUs
or GPUs per trial than any node has: Tune would wait forever) or when ``ray.address`` answers
nothing. A local Ray this module starts is recorded in ``run_dir/ray_session.json``; if the driver
was killed (kill -9) its Ray processes outlive it, so the next session of the same run ends the
processes of exactly that recorded session (never another Ray session) before starting its own.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Callable, Protocol

from morphnas.morphism.errors import MorphnasError
from morphnas.search.config import TRACKERS, Config
from morphnas.search.plugins import load_object, provided
from morphnas.search.state.rundir import RunDir
from morphnas.search.trial.hold import HOLD
from morphnas.search.trial.worker import METRIC
from morphnas.search.tune import adapters
from morphnas.search.tune.trainable import trainable_with_resources

SESSION_FILE = "ray_session.json"
RAY_ERRORS_FILE = "ray_errors.log"   # Ray's own error text of a dead worker, kept out of the terminal
CONNECT_TIMEOUT = 5.0      # seconds to wait for ray.address to answer
# Ray loggers whose messages alarm more than they inform; shown with --verbose.
_NOISY = ("ray._private.authentication.authentication_token_setup", "ray.tune.analysis.experiment_analysis")


class ClusterError(MorphnasError):
    """The Ray cluster cannot run this search's trials (resources, address)."""


class SessionDriver(adapters.TuneDriver, Protocol):
    """What a session needs of the driver besides the Tune callbacks."""

    def interrupt(self, signal_name: str) -> None: ...


class TuneSession:
    def __init__(self, cfg: Config, run_dir: RunDir, verbose: bool = False):
        self.cfg = cfg
        self.run_dir = run_dir
        self.verbose = verbose
        self._started_ray = False
        self.gpus = 0.0          # per trial, decided once Ray is up
        self.concurrent = 1      # trials at a time

    # ------------------------------------------------------------------------- Ray
    def __enter__(self) -> "TuneSession":
        import ray  # lazy: Ray reads the environment set below when it starts
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"     # ours stops trials and keeps them pending
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        # Holds report nothing (they are no members; schedulers and searchers must not see them). Our
        # children always report the metric, so Tune's check for it only stands in the holds' way.
        os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
        if not self.verbose:
            for name in _NOISY:
                logging.getLogger(name).setLevel(logging.ERROR)
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if self.cfg.ray.address:
                check_reachable(self.cfg.ray.address)
                ray.init(address=self.cfg.ray.address, **kw)
            else:
                end_dead_session(self.run_dir.root)
                share_import_paths()
                ray.init(address="local", num_cpus=self.cfg.ray.num_cpus, **kw)
                record_session(self.run_dir.root)
            self._started_ray = True
        try:
            resources = ray.cluster_resources()
            self.gpus = gpus_per_trial(self.cfg.resources.gpus_per_trial, resources)
            check_fits(self.cfg.resources.cpus_per_trial, self.gpus, _node_resources(ray), resources)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        cpus = float(resources.get("CPU", 1))
        self.concurrent = self.cfg.resources.max_concurrent or max(1, int(cpus // self.cfg.resources.cpus_per_trial))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._started_ray:
            import ray  # lazy: see __enter__
            ray.shutdown()
            self._started_ray = False
            if not self.cfg.ray.address:
                (self.run_dir.root / SESSION_FILE).unlink(missing_ok=True)

    # ------------------------------------------------------------------------- Tune
    def fit(self, driver: SessionDriver, num_samples: int, name: str) -> None:
        """Run Tune until the driver has nothing more to suggest (or is interrupted)."""
        from ray import tune  # lazy: see __enter__
        scheduler = None
        if self.cfg.ray.asha:
            from ray.tune.schedulers import ASHAScheduler  # lazy: only runs with ray.asha
            scheduler = ASHAScheduler(time_attr="training_iteration", metric=METRIC, mode="max",
                                      max_t=max(1, self.cfg.finetune.epochs, self.cfg.seed.epochs),
                                      grace_period=self.cfg.ray.grace_period,
                                      reduction_factor=self.cfg.ray.reduction_factor)
        tuner = tune.Tuner(
            trainable_with_resources(self.cfg.resources.cpus_per_trial, self.gpus, provided()),
            tune_config=tune.TuneConfig(search_alg=adapters.MorphSearcher(driver), scheduler=scheduler,
                                        num_samples=max(1, num_samples), max_concurrent_trials=self.concurrent,
                                        reuse_actors=True, trial_dirname_creator=adapters.trial_dirname,
                                        trial_name_creator=adapters.trial_dirname),
            run_config=tune.RunConfig(name=name, storage_path=str(self.run_dir.ray),
                                      stop=adapters.InterruptStopper(driver),
                                      callbacks=[adapters.ErrorCallback(driver), adapters.quiet_progress(),
                                                 *make_callbacks(self.cfg)],
                                      verbose=0,
                                      # run_trial turns every exception into a FAIL report, so only a dying
                                      # worker or node reaches Tune as an error: a retry re-runs that job.
                                      failure_config=tune.FailureConfig(max_failures=self.cfg.ray.max_failures)),
        )
        handler = _signal_handler(driver)
        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in old:
            signal.signal(s, handler)
        quiet = None if self.verbose else RayErrorsToFile(self.run_dir.root / RAY_ERRORS_FILE)
        try:
            if quiet is not None:
                quiet.install()
            tuner.fit()
        finally:
            if quiet is not None:
                quiet.remove()
            for s, h in old.items():
                signal.signal(s, h)


class _TrialFailureRecords(logging.Filter):
    """Drops Tune's "Trial task failed for trial ..." records (each with a traceback of Ray's internals),
    its closing "Trials did not complete" (the driver has said which member failed, and why) and
    "Saving experiment state ... failed" (a full disk, which the driver reports in one line)."""

    def __init__(self, sink: "RayErrorsToFile"):
        super().__init__()
        self.sink = sink

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith(("Trial task failed", "Trials did not complete", "Saving experiment state")):
            self.sink.write([record.getMessage(), str(record.exc_info[1]) if record.exc_info else ""])
            return False
        return True


class RayErrorsToFile:
    """While Tune runs, Ray's text of a worker that died goes to ``path`` instead of the terminal.

    Only a dying worker or node reaches Tune as an error (``run_trial`` turns everything a child
    raises into a FAIL report), and the driver says what happened in one line of its own: the trial
    is re-run (``ray.max_failures``) or recorded FAIL. Ray prints the same event twice and at length:
    the raylet's advice (from a thread of Ray's driver, through ``ray._private.worker.print_to_stdstream``,
    Ray's only hook for it) and Tune's "Trial task failed" traceback (a logging record). Both are kept,
    whole, in ``path`` (``--verbose`` leaves Ray's printing alone)."""

    def __init__(self, path: Path):
        self.path = path
        self._filter = _TrialFailureRecords(self)
        self._original: Callable[..., Any] | None = None

    def write(self, lines: list[str]) -> None:
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + "\n".join(x for x in lines if x) + "\n")
        except OSError:       # a full or read-only disk: the driver's own line still says what happened
            pass

    # "Saving experiment state ... failed" (a full disk) comes from experiment_state: the driver's own
    # writes fail too and stop the run in one line.
    LOGGERS = ("ray.tune.execution.tune_controller", "ray.tune.tune", "ray.tune.execution.experiment_state")

    def install(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self._filter)
        import ray._private.worker as ray_worker  # lazy: Ray is imported only by a search
        original = getattr(ray_worker, "print_to_stdstream", None)
        if original is None:      # another Ray version: its printing stays as it is
            return

        def print_to_stdstream(data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            if data.get("pid") == "raylet":
                self.write([str(x) for x in data.get("lines", [])])
            else:
                original(data, *args, **kwargs)
        self._original = original
        ray_worker.print_to_stdstream = print_to_stdstream

    def remove(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)
        if self._original is not None:
            import ray._private.worker as ray_worker  # lazy: see install
            ray_worker.print_to_stdstream = self._original
            self._original = None


def share_import_paths() -> None:
    """Put the driver's own import folders (the working directory, the script's folder, PYTHONPATH)
    on the PYTHONPATH of the local Ray workers it starts, so a user's ``package.module:name`` imports
    there as it does here. A cluster's nodes need the package installed (or a runtime_env)."""
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    for p in [os.getcwd(), *sys.path[:1]]:
        p = os.path.abspath(p or os.getcwd())
        if p not in parts and os.path.isdir(p):
            parts.append(p)
    os.environ["PYTHONPATH"] = os.pathsep.join(parts)


def make_callbacks(cfg: Config) -> list[Any]:
    """Ray Tune logger callbacks of ``ray.callbacks`` (names or import paths) with their
    ``ray.callback_options``; a tracker whose package is missing is one line saying what to install."""
    out = []
    for name in cfg.ray.callbacks:
        options = dict(cfg.ray.callback_options.get(name) or {})
        if ":" in name:
            cls = load_object(name, "ray.callbacks")
        else:
            module, attr = TRACKERS[name]
            try:
                cls = getattr(importlib.import_module(module), attr)
            except ImportError as e:
                raise ClusterError(f"ray.callbacks: {name!r} needs a package that is not installed ({e}); "
                                   f"install it (e.g. pip install {name if name != 'tensorboard' else 'tensorboardX'}) "
                                   f"or drop it from ray.callbacks") from None
        try:
            cb = cls(**options)
        except Exception as e:  # the tracker's own constructor (bad option, missing login)
            first = (str(e).strip().splitlines() or [""])[0]
            raise ClusterError(f"ray.callbacks: {name!r} with ray.callback_options {options} raised "
                               f"{type(e).__name__}: {first}") from None
        _guard_setup(cb, name, options)
        _skip_holds(cb)
        out.append(cb)
    return out


_TRIAL_HOOKS = ("on_trial_start", "on_trial_restore", "on_trial_save", "on_trial_result", "on_trial_complete",
                "on_trial_recover", "on_trial_error", "on_checkpoint")


def _skip_holds(cb: Any) -> None:
    """A tracker sees the members' trials only: a hold (a warm worker waiting for the next child,
    not a trial of the search) would be an empty run in MLflow or W&B. The tracker's class is
    replaced by a subclass whose per-trial hooks pass holds by (so ``isinstance`` checks still hold)."""
    cls = type(cb)

    def skipping(hook: str) -> Any:
        inner = getattr(cls, hook)

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            trial = kwargs.get("trial")
            if trial is not None and HOLD in (getattr(trial, "config", None) or {}):
                return None
            return inner(self, *args, **kwargs)
        method.__name__ = hook
        return method
    hooks = {h: skipping(h) for h in _TRIAL_HOOKS if callable(getattr(cls, h, None))}
    try:
        cb.__class__ = type(cls.__name__, (cls,), {**hooks, "__module__": cls.__module__})
    except TypeError:     # a class that refuses a subclass (slots, C types): it sees the holds too
        pass


def _guard_setup(cb: Any, name: str, options: dict[str, Any]) -> None:
    """Make a failing ``setup`` of a tracker (no server, a refused login, a backend the tracker
    refuses) one :class:`ClusterError` line naming it, not a traceback out of Tune."""
    setup = getattr(cb, "setup", None)
    if not callable(setup):
        return

    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return setup(*args, **kwargs)
        except Exception as e:  # the tracker's own code
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise ClusterError(f"ray.callbacks: {name!r} (ray.callback_options {options}) failed to start: "
                               f"{type(e).__name__}: {first}; fix its options or drop it from ray.callbacks") from None
    cb.setup = guarded


def check_callbacks(cfg: Config) -> None:
    """Build every tracker of ``ray.callbacks`` and run its ``setup`` once (what Tune does first), so
    a tracker that cannot start fails before the run directory exists."""
    for cb in make_callbacks(cfg):
        if callable(getattr(cb, "setup", None)):
            cb.setup(stop=None, num_samples=1, total_num_samples=1)


def _signal_handler(driver: SessionDriver) -> Callable[[int, FrameType | None], None]:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        driver.interrupt(signal.Signals(signum).name)
    return on_signal


def gpus_per_trial(configured: float | None, resources: dict[str, Any]) -> float:
    """``resources.gpus_per_trial``, or (None) one GPU per trial when the cluster has any."""
    if configured is not None:
        return float(configured)
    return 1.0 if resources.get("GPU", 0) >= 1 else 0.0


# ------------------------------------------------------------------------------- checks
def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Fail at once if ``ray.address`` answers nothing (ray.init would wait for a long time)."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return      # let Ray parse (and reject) what it understands
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ClusterError(f"ray.address {address!r}: nothing answers there ({e.strerror or e}); start the cluster "
                           f"('ray start --head') or fix ray.address (leave it empty for a local Ray)") from None


def _node_resources(ray: Any) -> list[dict[str, float]]:
    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive", True)]


def check_fits(cpus: float, gpus: float, nodes: list[dict[str, float]], total: dict[str, Any]) -> None:
    """A trial runs on one node: if no node has the CPUs and GPUs it asks for, Tune would wait forever."""
    if any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        return
    have = f"{float(total.get('CPU', 0)):g} CPU(s) and {float(total.get('GPU', 0)):g} GPU(s)"
    biggest_cpu = max((n.get("CPU", 0) for n in nodes), default=0)
    biggest_gpu = max((n.get("GPU", 0) for n in nodes), default=0)
    if not any(n.get("CPU", 0) >= cpus for n in nodes):
        fix = f"resources.cpus_per_trial={cpus:g} > {biggest_cpu:g}, the most any node has; lower it"
    else:
        fix = f"resources.gpus_per_trial={gpus:g} > {biggest_gpu:g}, the most any node has; lower it"
    raise ClusterError(f"the Ray cluster has {have} ({len(nodes)} node(s)): {fix} "
                       f"(e.g. morphnas resume RUN --set ...) or add nodes")


# ------------------------------------------------------------------------------- a killed driver's Ray
def record_session(root: Path) -> None:
    """Remember the local Ray session this driver started (its temp dir is unique to it)."""
    try:
        import ray  # lazy: see TuneSession.__enter__
        node: Any = ray._private.worker._global_node
        session_dir = node.get_session_dir_path()
    except Exception:  # no local node to record: nothing to end later
        return
    tmp = root / f"{SESSION_FILE}.tmp"
    tmp.write_text(json.dumps({"session_dir": str(session_dir), "driver_pid": os.getpid(), "started": time.time()}))
    os.replace(tmp, root / SESSION_FILE)


def session_pids(session_dir: str) -> list[int]:
    """Processes of one Ray session: its session dir is on their command line or among their open files."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if session_dir in (entry / "cmdline").read_bytes().decode(errors="replace"):
                out.append(int(entry.name))
                continue
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd).startswith(session_dir + "/"):
                    out.append(int(entry.name))
                    break
        except OSError:   # gone, or not ours to inspect
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_dead_session(root: Path, wait: float = 5.0) -> list[int]:
    """End the processes of the run's recorded Ray session, left behind by a driver that died.

    Called under the run's lock (:class:`~.runstate.RunLock`), so the driver that recorded the
    session no longer runs. Returns the pids that were signalled: only processes of that one session
    (matched by its unique session dir), never another Ray session.
    """
    path = root / SESSION_FILE
    try:
        rec = json.loads(path.read_text())
        session_dir = str(rec["session_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if not session_dir.rstrip("/").split("/")[-1].startswith("session_"):
        return []     # not a Ray session dir: never signal on a malformed record
    pids = session_pids(session_dir)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(_alive(p) and not _zombie(p) for p in pids):
            time.sleep(0.1)
        if not any(_alive(p) and not _zombie(p) for p in pids):
            break
    path.unlink(missing_ok=True)
    return pids


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
