"""Trials on Ray Tune: the trainable (runs on a worker) and the thin Tune adapters (run in the driver).

The trainable :func:`run_trial` gets one :class:`~.jobs.Job` (built by the driver, as JSON under
``config["job"]``): for a child it loads the parent (spec + weights), applies the proposal's
actions, verifies that the child computes the parent's function (a relative output error above
``tolerance`` fails the trial loudly, naming the ops), fine-tunes it at the low LR, and after every
epoch saves the child into its member directory and reports ``val_acc``. For the seed (member 0)
it builds (or loads) the seed and trains it. Every report carries the trial's
:class:`TrialResult` so far (JSON), so a trial stopped early by ASHA still has a full record. An
exception (NaN loss, CUDA out of memory, an op that does not apply...) becomes a final report with
state FAIL and the reason; only a dying process reaches Tune as an error. A trial whose config
is ``{"hold": ...}`` is no member but a *hold* (:func:`hold`): it keeps a free slot's worker process
alive while the strategy waits, so that trials really run side by side.

:class:`MorphSearcher`, :class:`ErrorCallback` and :class:`InterruptStopper` hold no search logic:
they forward Tune's callbacks to the driver (:mod:`.loop`), which owns all state. They take the
driver as a :class:`TuneDriver` (the callbacks only), so this module never imports the driver.
"""
from __future__ import annotations

import json
import math
import os
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import torch
from ray import tune
from ray.tune import Callback
from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from morphnas.morphism.errors import MorphnasError, PreservationError
from morphnas.morphism.graph import Network

from .jobs import HOLD, Job, as_job, read_wake
from .records import TrialResult

METRIC = "val_acc"
_DATA_CACHE: dict[str, Any] = {}


# ------------------------------------------------------------------------------------ worker side
def run_trial(config: dict[str, Any]) -> None:
    """The Tune function trainable. Reports once per epoch; never raises for a failed trial."""
    if HOLD in config:
        hold(config[HOLD])
        return
    job = as_job(config["job"])
    torch.set_num_threads(int(job.threads))
    start = time.time()
    job = job.replace(extra={**job.extra, **_where(), "started_at": start})
    try:
        execute(job, lambda metrics: tune.report(metrics), start)
    except Exception as e:  # any failure of this child is a FAIL trial; the search goes on
        reason = _reason(e)
        # The proposal's actions stand in for the morph records the failed child never got.
        res = _base_result(job, state="FAIL", fail_reason=reason, wall_time=time.time() - start,
                           actions=job.action_dicts())
        tune.report({METRIC: 0.0, "epoch": 0, "final": True, "trial_result": json.dumps(res.to_json())})


def hold(spec: Mapping[str, Any]) -> None:
    """A *hold* keeps a Tune slot (and its worker process) busy while the strategy has nothing to propose.

    Without it Tune keeps only one live actor while the searcher waits; when two trials are staged
    next, the second needs a new actor, which starts (a new Python process importing torch) slower
    than a short trial runs, and Tune hands it the first trial's cached actor and kills the cold one:
    every trial then runs in one process, one after another. A hold is a trial that imports the
    child's modules and loads the data into this process (useful for the next child), then waits
    until the driver bumps the wake counter (``run_dir/.wake``: a job was launched, the run was
    interrupted or ended) or until ``max_wait`` seconds passed (a node without the run's file system
    just holds briefly). The driver bumps it only after the launched job took the actor that freed
    up: a hold ending together with a real trial leaves Tune two idle actors, and it keeps one.
    It reports nothing: it is no member, and schedulers (ASHA) and the study never see it.
    """
    start = time.monotonic()
    torch.set_num_threads(int(spec.get("threads", 1)))
    wake = Path(spec["wake"])
    seen = int(spec.get("seen", 0))
    try:
        _warm_up()
        if spec.get("data"):
            _data_for(spec["data"], int(spec.get("data_seed", 0)))
    except Exception:  # the child that needs the imports or the data reports any problem with them
        pass
    while time.monotonic() - start < float(spec.get("max_wait", 20.0)):
        if read_wake(wake) > seen:
            return
        time.sleep(0.05)


def _warm_up() -> None:
    """Import what a child's job needs (seconds on a loaded machine), so the next child starts at once."""
    import morphnas.morphism.ops  # noqa: F401
    import morphnas.morphism.serialize  # noqa: F401
    import morphnas.morphism.verify  # noqa: F401
    import morphnas.spaces.counting  # noqa: F401

    from . import train  # noqa: F401


def _where() -> dict[str, Any]:
    """Which Ray node and process ran the trial (recorded with the result; useful on clusters)."""
    import socket
    try:
        import ray
        node = ray.get_runtime_context().get_node_id()
    except Exception:  # outside a Ray worker (tests, benchmarks): no node id to record
        node = None
    return {"node_id": node, "hostname": socket.gethostname(), "pid": os.getpid()}


def _reason(e: BaseException) -> str:
    if isinstance(e, MorphnasError):
        return f"{type(e).__name__}: {e}"
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return f"out of memory: {e}".splitlines()[0]
    tb = traceback.extract_tb(e.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(e).__name__}: {e}{where}"


def _base_result(job: Job, **kw: Any) -> TrialResult:
    extra = {"proposal_id": job.proposal_id, "attempt": job.attempt}
    extra.update(job.extra)
    return TrialResult(member_id=job.member_id, parent_id=job.parent_id, depth=job.depth,
                       search_params=job.search_params, member_path=job.member_path, extra=extra, **kw)


def _data(job: Job):
    return _data_for(job.data, job.data_seed)


def _data_for(fields: Mapping[str, Any], seed: int):
    """The data of this process' current run, loaded once per worker process (holds load it early)."""
    from .config import DataConfig
    from .data import load_data
    key = json.dumps([fields, seed], sort_keys=True)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = load_data(DataConfig(**fields), seed=seed)
    return _DATA_CACHE[key]


def build_seed(job: Job, data) -> Network:
    """The seed network: the checkpoint if given, else ``seed.network`` built for the data's shape."""
    from morphnas.spaces.resolve import resolve_network
    s = job.seed
    if s is None:
        raise MorphnasError(f"job of member {job.member_id}: a seed job needs 'seed' (network or checkpoint)")
    if s.checkpoint:
        from morphnas.morphism.serialize import load_network
        net = load_network(s.checkpoint)
    else:
        net = resolve_network(s.network, num_classes=data.num_classes, seed=job.net_seed,
                              input_size=data.input_shape[-1])
    if tuple(net.input_shape) != tuple(data.input_shape):
        raise MorphnasError(f"seed network {s.checkpoint or s.network!r} takes input {tuple(net.input_shape)} "
                            f"but the data is {tuple(data.input_shape)}; set data.image_size or pick a seed for "
                            f"{data.input_shape[0]}-channel images")
    out = net.shapes()[net.output_blob]
    if tuple(out) != (data.num_classes,):
        raise MorphnasError(f"seed network outputs {tuple(out)} but the data has {data.num_classes} classes")
    return net


def execute(job: Job | Mapping[str, Any], report: Callable[[dict[str, Any]], None],
            start: float | None = None) -> TrialResult:
    """Run one job (or its JSON) in this process (the trainable's body; also used by tests and the benchmark)."""
    from morphnas.morphism.ops import apply_op
    from morphnas.morphism.serialize import load_network, save_network
    from morphnas.morphism.verify import output_diff
    from morphnas.spaces.counting import count

    from .train import TrainSpec, evaluate, train

    job = as_job(job)
    start = time.time() if start is None else start
    data = _data(job)
    member_dir = Path(job.run_dir) / job.member_path
    records: list[dict[str, Any]] = []
    err = None
    if job.kind == "seed":
        net = build_seed(job, data)
    else:
        if job.parent_path is None or job.proposal is None:
            raise MorphnasError(f"job of member {job.member_id}: a child job needs 'parent_path' and 'proposal'")
        parent = load_network(job.parent_path)
        net = parent
        for a in job.proposal.actions:
            net, rec = apply_op(net, a.op, a.site, a.params, a.seed)
            records.append(rec.to_json())
        # Inserted identity BNs hold made-up statistics: exact in eval mode, but in train mode they
        # normalise by batch statistics and bump the loss in the first steps. Give them the statistics
        # of a training batch (still exact in eval mode; bench/results/morph.md measures the effect).
        new_edges = [e for r in records for e in r.get("new_edges", ())]
        if new_edges:
            from morphnas.morphism.identity import calibrate_identity_bns
            g = torch.Generator().manual_seed(int(job.train_seed))
            idx = torch.randperm(len(data.train.x), generator=g)[:256]
            net = calibrate_identity_bns(net, new_edges, data.train.x[idx])
        dtype = torch.float64 if job.verify_dtype == "float64" else torch.float32
        diff = output_diff(parent, net, x=data.val.x[:64], dtype=dtype)
        err = diff.rel_err
        # An approximate (shrinking) op reports its own error; only exact morphs must meet the tolerance.
        approximate = any(r.get("mode") == "approximate" for r in records)
        if not err <= job.tolerance and not (approximate and math.isfinite(err)):   # also catches NaN
            ops = ", ".join(f"{r['op']}@{r['site']}" for r in records)
            raise PreservationError(f"the child does not compute its parent's function: relative output error "
                                    f"{err:.3g} > tolerance {job.tolerance:g} after {ops}")
    c = count(net)
    device = "cuda" if job.gpus and torch.cuda.is_available() else "cpu"
    latency = _latency(net, job, device)
    history: list[float] = []
    spec = TrainSpec(**job.train)

    def result(epochs: int) -> TrialResult:
        return _base_result(job, state="COMPLETE", values=(history[-1],), val_acc_history=tuple(history),
                            actions=tuple(records), params=c.params, params_mb=c.params_mb, flops=c.flops,
                            latency_ms=latency, preservation_error=err, epochs=epochs, wall_time=time.time() - start)

    def on_epoch(rep, trained: Network) -> None:
        nonlocal latency
        history.append(rep.val_acc)
        save_network(trained, member_dir)
        final = rep.epoch == spec.epochs
        if final and latency is not None:   # measured again after training; the faster figure counts
            latency = min(latency, _measure(trained, job, device))
        report({METRIC: rep.val_acc, "epoch": rep.epoch, "train_loss": rep.train_loss, "steps": rep.steps,
                "final": final, "trial_result": json.dumps(result(rep.epoch).to_json())})

    if spec.epochs == 0 or (job.kind == "seed" and job.seed is not None and job.seed.checkpoint):
        history.append(evaluate(net, data.val))
        save_network(net, member_dir)
        res = result(0)
        report({METRIC: history[-1], "epoch": 0, "final": True, "trial_result": json.dumps(res.to_json())})
        return res
    from .distill import teacher_for
    teacher = teacher_for(parent, job.distill, records) if job.kind == "child" else None
    train(net, data, spec, seed=job.train_seed, on_epoch=on_epoch, device=device, amp=bool(job.amp), teacher=teacher)
    return result(spec.epochs)


def _latency(net: Network, job: Job, device: str) -> float | None:
    """The network's measured latency (None when the job asks for none); a child over
    ``max_latency_ms`` ends here, untrained (the seed is the user's choice: measured, never refused).
    A child over the bound is measured once more and the faster figure counts: a neighbour on a
    shared core can slow one measurement (bench/latency_noise.py: 2x beside a training process), and
    a refusal should not rest on that alone."""
    if not job.latency:
        return None
    from .latency import check_latency
    ms = _measure(net, job, device)
    bound = job.latency.get("max_ms")
    if job.kind == "child" and bound is not None and ms > bound:
        ms = min(ms, _measure(net, job, device))
        check_latency(ms, bound, job.latency, device)
    return ms


def _measure(net: Network, job: Job, device: str) -> float:
    from . import latency
    spec = job.latency
    return latency.measure_latency(net, int(spec.get("batch_size", 1)), int(spec.get("repeats", 20)),
                                   int(spec.get("warmup", 3)), device)


# ------------------------------------------------------------------------------------ driver side
class TuneDriver(Protocol):
    """The driver as the Tune adapters see it: the callbacks and the interrupt flag."""

    interrupted: bool

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None: ...

    def on_trial_result(self, trial_id: str, result: dict) -> None: ...

    def on_trial_complete(self, trial_id: str, result: dict | None, error: bool) -> None: ...

    def on_trial_error(self, trial_id: str, message: str) -> None: ...


class MorphSearcher(Searcher):
    """Thin adapter: ``suggest`` -> ``driver.suggest``; results -> the driver. No search logic here."""

    def __init__(self, driver: TuneDriver):
        super().__init__(metric=METRIC, mode="max")
        self._driver = driver

    def suggest(self, trial_id: str):
        out = self._driver.suggest(trial_id)
        return Searcher.FINISHED if out == "FINISHED" else out

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._driver.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._driver.on_trial_complete(trial_id, result, error)

    # Tune pickles its config (with this searcher) and checkpoints searchers; the run state lives
    # in the driver's own write-ahead file, so nothing of the driver is pickled.
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_driver"}

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps({"note": "the state lives in morphnas' run_state.json"}))

    def restore(self, checkpoint_path: str) -> None:
        pass


class ErrorCallback(Callback):
    """Hands the error of a trial whose worker raised or died to the driver."""

    def __init__(self, driver: TuneDriver):
        self._driver = driver

    def on_trial_error(self, iteration, trials, trial, **info):
        err = None
        try:
            err = trial.get_error()
        except Exception:  # the error text is best effort; the trial is failed either way
            pass
        text = str(err).strip() if err is not None else ""
        self._driver.on_trial_error(trial.trial_id, text.splitlines()[-1] if text else "the worker died")

    def __getstate__(self):
        return {}


class InterruptStopper(Stopper):
    """Stops every trial once the driver was interrupted (Ctrl-C / SIGTERM)."""

    def __init__(self, driver: TuneDriver):
        self._driver = driver

    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        return bool(self._driver.interrupted)

    def __getstate__(self):
        return {}


def quiet_progress() -> Callback:
    """Tune's per-trial printer, silenced: with ``verbose=0`` it still prints "Trial ... completed.
    Last result: " for every trial without results (each hold). The driver prints its own progress."""
    from ray.tune.progress_reporter import TrialProgressCallback

    class QuietProgress(TrialProgressCallback):
        def _print(self, msg: str) -> None:
            pass
    return QuietProgress(metric=METRIC)


def trial_dirname(trial) -> str:
    """``m3_<trial id>`` (``hold_<trial id>`` for a hold): short, and says which member a Tune trial
    directory belongs to (the default name flattens the whole job config into the path)."""
    if HOLD in trial.config:
        return f"hold_{trial.trial_id}"
    return f"{trial.config.get('job', {}).get('member_id', 'trial')}_{trial.trial_id}"


def trainable_with_resources(cpus: int, gpus: float):
    return tune.with_resources(run_trial, {"cpu": cpus, "gpu": gpus})
