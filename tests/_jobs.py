"""A worker job for tests that run :func:`morphnas.search.trial.worker.execute` in-process (no Ray)."""
from __future__ import annotations

import dataclasses

from morphnas.search.config import DataConfig


def worker_job(tmp_path, kind, **kw):
    """The seed job (``kind="seed"``, member m0) or a child job (m1 of m0) on 300 digits, one epoch."""
    job = {"kind": kind, "member_id": "m1" if kind == "child" else "m0", "parent_id": "m0" if kind == "child" else None,
           "depth": int(kind == "child"), "attempt": 1, "run_dir": str(tmp_path),
           "member_path": "members/m1" if kind == "child" else "members/m0",
           "data": dataclasses.asdict(DataConfig(train_limit=300)), "data_seed": 0, "tolerance": 1e-4,
           "verify_dtype": "float64", "threads": 1, "gpus": 0, "amp": False, "train_seed": 0, "net_seed": 0,
           "seed": {"network": "tiny_resnet", "checkpoint": None},
           "train": {"epochs": 1, "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "cosine",
                     "batch_size": 64}}
    job.update(kw)
    return job
