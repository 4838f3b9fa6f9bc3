"""One member's trial, as a worker runs it: build the seed or make the child, fine-tune, report.

:func:`execute` gets one :class:`~morphnas.search.state.records.Job` (built by the driver with :mod:`.jobs`): for a child it
loads the parent (spec + weights) and calls :func:`~.child.make_child` (apply the proposal's
morphs, calibrate new identity BNs, verify that the child computes the parent's function: a
relative output error above ``tolerance`` fails the trial loudly, naming the ops), fine-tunes it at
the low LR, and after every epoch saves the child into its member directory and reports
``val_acc``. For the seed (member 0) it builds (or loads) the seed and trains it. Every report
carries the trial's :class:`TrialResult` so far (JSON), so a trial stopped early by ASHA still has a
full record.

Nothing here imports Ray or Optuna: the Tune trainable (:mod:`morphnas.search.tune.trainable`) wraps
:func:`execute`, and tests and benchmarks call it in-process.
"""
from __future__ import annotations

import json
import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from morphnas.morphism.errors import MorphnasError, StorageFull
from morphnas.morphism.graph import Network
from morphnas.morphism.ops import load_ops
from morphnas.morphism.serialize import load_network, save_network
from morphnas.search.config import DataConfig
from morphnas.search.data.core import Data, load_data
from morphnas.search.data.task import Task
from morphnas.search.plugins import load_object
from morphnas.search.state.records import TrialResult
from morphnas.search.trial.child import make_child
from morphnas.search.trial.distill import teacher_for
from morphnas.search.trial.grow import carried_state, load_optimizer_state, save_optimizer_state, score_candidates
from morphnas.search.trial.jobs import Job, as_job
from morphnas.search.trial.latency import check_latency, measure_latency
from morphnas.search.trial.train import TrainSpec, evaluate, train
from morphnas.search.trial.trainer import check_trainer
from morphnas.spaces.counting import count
from morphnas.spaces.resolve import resolve_network

# The key of the number Ray Tune (ASHA, the searcher adapter) maximises: the task's score (accuracy,
# or a minimised metric negated). Reports also carry the metric under its own name (val_acc, val_rmse).
METRIC = "score"
_DATA_CACHE: dict[str, Data] = {}


def where() -> dict[str, Any]:
    """Which Ray node and process ran the trial (recorded with the result; useful on clusters)."""
    node = None
    try:
        import ray  # lazy: the worker's code runs without Ray in tests and benchmarks
        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
    except Exception:  # outside a Ray worker: no node id to record
        node = None
    return {"node_id": node, "hostname": socket.gethostname(), "pid": os.getpid()}


def failure_reason(e: BaseException) -> str:
    """One line saying why a trial failed: our own errors as they are, others with where they arose."""
    if isinstance(e, MorphnasError):
        return f"{type(e).__name__}: {e}"
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return f"out of memory: {e}".splitlines()[0]
    tb = traceback.extract_tb(e.__traceback__)
    at = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(e).__name__}: {e}{at}"


def base_result(job: Job, extra_fields: Mapping[str, Any] | None = None, **kw: Any) -> TrialResult:
    """The job's :class:`TrialResult` with its identity and provenance filled in (``extra_fields``
    join the job's own extra record)."""
    extra = {"proposal_id": job.proposal_id, "attempt": job.attempt}
    extra.update(job.extra)
    extra.update(extra_fields or {})
    return TrialResult(member_id=job.member_id, parent_id=job.parent_id, depth=job.depth,
                       search_params=job.search_params, member_path=job.member_path, extra=extra, **kw)


def failed_report(job: Job, e: BaseException, start: float) -> dict[str, Any]:
    """The final report of a job that raised: state FAIL, the reason, the proposal's actions standing
    in for the morph records the failed child never got."""
    fault = {"fault": "disk_full"} if isinstance(e, StorageFull) else None   # the run stops; the member is re-run
    res = base_result(job, fault, state="FAIL", fail_reason=failure_reason(e), wall_time=time.time() - start,
                      actions=job.action_dicts())
    worst = 0.0 if Task.from_json(job.task).classification else -1e30   # never a rung's best
    return {METRIC: worst, "epoch": 0, "final": True, "trial_result": json.dumps(res.to_json())}


def data_for(fields: Mapping[str, Any], seed: int, task: str = "classification") -> Data:
    """The data of this process' current run, loaded once per worker process (holds load it early)."""
    key = json.dumps([fields, seed, task], sort_keys=True, default=str)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = load_data(DataConfig(**fields), seed=seed, task=task)
    return _DATA_CACHE[key]


def trainer_for(plugins: Mapping[str, Any]) -> Any:
    """The job's trainer object (None: the built-in loop); its ops are imported too."""
    if plugins.get("ops"):
        load_ops(list(plugins["ops"]))
    path = plugins.get("trainer")
    if not path:
        return None
    return check_trainer(load_object(path, "trainer"), path, plugins.get("trainer_options"))


def clear_data_cache() -> None:
    """Forget the loaded data (the next job loads it again: what a cold worker does)."""
    _DATA_CACHE.clear()


def build_seed(job: Job, data: Data) -> Network:
    """The seed network: the checkpoint if given, else ``seed.network`` built for the data's shape."""
    s = job.seed
    if s is None:
        raise MorphnasError(f"job of member {job.member_id}: a seed job needs 'seed' (network or checkpoint)")
    if s.checkpoint:
        net = load_network(s.checkpoint)
    elif len(data.input_shape) == 1:       # tabular: the seed takes the number of features
        net = resolve_network(s.network, num_classes=data.num_classes, seed=job.net_seed,
                              features=data.input_shape[0])
    else:
        net = resolve_network(s.network, num_classes=data.num_classes, seed=job.net_seed,
                              input_size=data.input_shape[-1])
    if tuple(net.input_shape) != tuple(data.input_shape):
        raise MorphnasError(f"seed network {s.checkpoint or s.network!r} takes input {tuple(net.input_shape)} "
                            f"but the data is {tuple(data.input_shape)}; set data.image_size or pick a seed for "
                            f"{data.input_shape[0]}-channel images")
    out = net.shapes()[net.output_blob]
    if tuple(out) != (data.num_classes,):
        what = "classes" if data.task == "classification" else "target value(s) per item"
        raise MorphnasError(f"seed network outputs {tuple(out)} but the data has {data.num_classes} {what}")
    return net


def execute(job: Job | Mapping[str, Any], report: Callable[[dict[str, Any]], None],
            start: float | None = None) -> TrialResult:
    """Run one job (or its JSON) in this process: the trainable's body, also used by tests and benchmarks."""
    job = as_job(job)
    start = time.time() if start is None else start
    task = Task.from_json(job.task)
    data = data_for(job.data, job.data_seed, task.type)
    trainer = trainer_for(job.plugins)
    member_dir = Path(job.run_dir) / job.member_path
    records: tuple[dict[str, Any], ...] = ()
    err = None
    parent = None
    spec = TrainSpec(**job.train)
    device = "cuda" if job.gpus and torch.cuda.is_available() else "cpu"
    opt_state = None
    extra: dict[str, Any] = {}
    flops_spent = 0
    if job.kind == "seed":
        net = build_seed(job, data)
    else:
        if job.parent_path is None or job.proposal is None:
            raise MorphnasError(f"job of member {job.member_id}: a child job needs 'parent_path' and 'proposal'")
        parent = load_network(job.parent_path)
        parent_state = load_optimizer_state(Path(job.parent_path)) if job.carry_optimizer else None
        if job.proposal.candidates:     # a growth point: score the candidates, keep the best
            scored = score_candidates(parent, parent_state, job.proposal.candidates, data, spec, job.proposal.scoring,
                                      seed=job.train_seed, tolerance=job.tolerance, verify_dtype=job.verify_dtype,
                                      device=device, trainer=trainer, task=task)
            child = scored.child
            extra["grow"] = scored.to_json(str(job.proposal.scoring.get("method", "rung")))
            flops_spent += scored.flops
        else:
            child = make_child(parent, job.proposal.actions, data, seed=job.train_seed,
                               tolerance=job.tolerance, verify_dtype=job.verify_dtype)
        net, records, err = child.network, child.records, child.preservation_error
        opt_state = carried_state(parent, child, parent_state)
    c = count(net)
    latency = _latency(net, job, device)
    history: list[float] = []
    latest: dict[str, Any] = {"flops": 0, "state": None}

    def result(epochs: int) -> TrialResult:
        return base_result(job, state="COMPLETE", values=(history[-1],), val_acc_history=tuple(history),
                           actions=records, params=c.params, params_mb=c.params_mb, flops=c.flops,
                           latency_ms=latency, preservation_error=err, epochs=epochs, wall_time=time.time() - start,
                           train_flops=flops_spent + latest["flops"], extra_fields=extra)

    def on_epoch(rep, trained: Network) -> None:
        nonlocal latency
        history.append(rep.val_acc)
        latest["flops"] = rep.train_flops
        save_network(trained, member_dir)
        if latest["state"] is not None:   # beside the network: what a growing child continues from
            save_optimizer_state(latest["state"], member_dir)
        final = rep.epoch == spec.epochs
        if final and latency is not None:   # measured again after training; the faster figure counts
            latency = min(latency, _measure(trained, job, device))
        report({METRIC: rep.val_acc, task.metric.name: task.metric.value(rep.val_acc), "epoch": rep.epoch,
                "train_loss": rep.train_loss, "steps": rep.steps, "final": final,
                "trial_result": json.dumps(result(rep.epoch).to_json())})

    if spec.epochs == 0 or (job.kind == "seed" and job.seed is not None and job.seed.checkpoint):
        history.append(evaluate(net, data.val, task=task, target_scale=data.target_scale))
        save_network(net, member_dir)
        res = result(0)
        report({METRIC: history[-1], task.metric.name: task.metric.value(history[-1]), "epoch": 0, "final": True,
                "trial_result": json.dumps(res.to_json())})
        return res
    teacher = teacher_for(parent, job.distill, list(records)) if parent is not None else None
    train(net, data, spec, seed=job.train_seed, on_epoch=on_epoch, device=device, amp=bool(job.amp), teacher=teacher,
          optimizer_state=opt_state, on_optimizer_state=lambda s: latest.__setitem__("state", s), trainer=trainer,
          task=task, precision=job.precision, channels_last=job.channels_last, compile=job.compile)
    return result(spec.epochs)


def _latency(net: Network, job: Job, device: str) -> float | None:
    """The network's measured latency (None when the job asks for none); a child over
    ``max_latency_ms`` ends here, untrained (the seed is the user's choice: measured, never refused).
    A child over the bound is measured once more and the faster figure counts: a neighbour on a
    shared core can slow one measurement (bench/latency_noise.py: 2x beside a training process), and
    a refusal should not rest on that alone."""
    if not job.latency:
        return None
    ms = _measure(net, job, device)
    bound = job.latency.get("max_ms")
    if job.kind == "child" and bound is not None and ms > bound:
        ms = min(ms, _measure(net, job, device))
        check_latency(ms, bound, job.latency, device)
    return ms


def _measure(net: Network, job: Job, device: str) -> float:
    spec = job.latency
    return measure_latency(net, int(spec.get("batch_size", 1)), int(spec.get("repeats", 20)),
                           int(spec.get("warmup", 3)), device)
