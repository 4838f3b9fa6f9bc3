"""Faults of the machine during a real run (issue 23), each injected into a live search on Ray Tune:

* the run's filesystem fills up while children train (a size-limited tmpfs, filled from outside):
  the search stops with one line naming the filesystem and its free space, no member folder is
  partial, and once space is freed ``resume`` re-runs the interrupted child and loses nothing;
* ``study.db`` is deleted in the middle of the run: the driver notices at its next write, recreates
  the study from the run state, says so in one line, and the leaderboard ends complete.

(A Ray worker killed in the middle of a child is in ``test_resume.py``: re-run once by default.)
What is asserted is what a user checks: the exit code, the lines printed, the leaderboard.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import poll, start, state, stop_group  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CONFIG = {
    "random_seed": 3,
    "seed": {"network": "tiny_resnet", "epochs": 2, "lr": 0.1},
    "data": {"dataset": "digits", "train_limit": 300},
    "actions": {"ops": {"deepen": {}, "widen": {"factor": [2.0]}}, "actions_per_child": 1},
    "strategy": {"name": "hill_climb", "children": 2},
    "budget": {"trials": 3}, "finetune": {"epochs": 2},
    "resources": {"cpus_per_trial": 1, "max_concurrent": 2}, "ray": {"num_cpus": 2}, "final": {"epochs": 0},
}


def _env():
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _search_with_a_fault(tmp_path: Path, runs_dir: Path, name: str, ready, fault) -> tuple[int, str, Path]:
    """Start ``morphnas search`` (the module CONFIG as ``name`` under ``runs_dir``), call ``fault(run)``
    once ``ready(state)`` holds, wait for the search to end: (exit code, what it printed, the run)."""
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**CONFIG, "name": name, "runs_dir": str(runs_dir)}))
    run = runs_dir / name
    with open(tmp_path / "log.txt", "w") as log:
        p = start(["search", str(tmp_path / "c.yaml")], log)
        try:
            poll(lambda: ready(state(run)), "the moment of the fault", p, log)
            fault(run)
            rc = p.wait(timeout=300)
        finally:
            stop_group(p)
    return rc, (tmp_path / "log.txt").read_text(), run


def _members(s: dict) -> list[str]:
    return [r["member_id"] for r in s.get("results", [])]


def _study(run: Path, name: str) -> dict[str, str]:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{run / 'study.db'}")
    return {t.user_attrs["member_id"]: t.state.name for t in study.get_trials()}


def test_a_full_disk_stops_the_run_in_one_line_and_resume_loses_nothing(small_disk, tmp_path):
    disk = small_disk("24m")
    filler = disk / "filler"

    def fill(run):
        with open(filler, "wb", buffering=0) as f:       # fill the disk (the run writes meanwhile) ...
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        os.truncate(filler, max(0, filler.stat().st_size - 40_000))   # ... then leave ~40 KB: less than a child
    rc, out, run = _search_with_a_fault(tmp_path, disk / "runs", "full", lambda s: "m0" in _members(s), fill)
    assert rc == 2, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert "no space left on the filesystem holding it" in last and "MiB free of" in last, out[-3000:]
    assert "morphnas resume" in last and "Traceback" not in out, out[-3000:]
    members = run / "members"
    assert not list(members.glob(".*.saving-*")), "no staging folder of a crashed save is left"
    assert all((m / "network.json").is_file() for m in members.iterdir()), "no partial member folder"

    filler.unlink()
    resumed = subprocess.run([sys.executable, "-m", "morphnas.search", "resume", str(run)], capture_output=True,
                             text=True, env=_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "is re-run once" in resumed.stdout
    states = _study(run, "full")
    assert sorted(states) == [f"m{i}" for i in range(4)] and set(states.values()) == {"COMPLETE"}, states
    assert all((m / "network.json").is_file() for m in members.iterdir())


def test_a_study_deleted_mid_run_is_recreated_and_ends_complete(tmp_path):
    rc, out, run = _search_with_a_fault(tmp_path, tmp_path / "runs", "gone", lambda s: len(_members(s)) >= 2,
                                        lambda run: (run / "study.db").unlink())
    assert rc == 0, out[-3000:]
    said = [line for line in out.splitlines() if "was deleted during the run; recreated it from the run state" in line]
    assert len(said) == 1, out[-3000:]
    states = _study(run, "gone")
    assert sorted(states) == [f"m{i}" for i in range(4)] and set(states.values()) == {"COMPLETE"}, states
