"""The Tune function trainable: a job (or a hold) from the trial config, run by the worker's code.

:func:`run_trial` is what Ray Tune runs on a worker. A config ``{"job": ...}`` is one member's
:class:`~morphnas.search.trial.jobs.Job` (as JSON: Tune copies and flattens its configs), run by
:func:`~morphnas.search.trial.worker.execute` with ``tune.report`` as its reporter; a config
``{"hold": ...}`` is a hold (:mod:`morphnas.search.trial.hold`). Any exception of a child (NaN loss,
CUDA out of memory, an op that does not apply...) becomes a final report with state FAIL and the
reason; only a dying process reaches Tune as an error.
"""
from __future__ import annotations

import time
from typing import Any

import torch
from ray import tune

from morphnas.search.plugins import provide
from morphnas.search.trial.hold import HOLD, hold
from morphnas.search.trial.jobs import as_job
from morphnas.search.trial.worker import execute, failed_report, where


def run_trial(config: dict[str, Any], provided: dict[str, Any] | None = None) -> None:
    """Reports once per epoch; never raises for a failed trial. ``provided`` are the objects a
    Python caller handed over (``python:<name>`` -> object, :mod:`morphnas.search.plugins`), put
    in the object store by Tune and installed in this worker before the job runs."""
    for name, obj in (provided or {}).items():
        provide(name, obj)
    if HOLD in config:
        hold(config[HOLD])
        return
    job = as_job(config["job"])
    torch.set_num_threads(int(job.threads))
    start = time.time()
    job = job.replace(extra={**job.extra, **where(), "started_at": start})
    try:
        execute(job, lambda metrics: tune.report(metrics), start)
    except Exception as e:  # any failure of this child is a FAIL trial; the search goes on
        tune.report(failed_report(job, e, start))


def trainable_with_resources(cpus: int, gpus: float, provided: dict[str, Any] | None = None):
    """The trainable with the resources of one trial (Tune places trials by them), and the objects
    handed over from Python, if any (``tune.with_parameters``: stored once, shared by all trials)."""
    trainable = tune.with_parameters(run_trial, provided=provided) if provided else run_trial
    return tune.with_resources(trainable, {"cpu": cpus, "gpu": gpus})
