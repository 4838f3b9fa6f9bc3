"""The ``grow`` strategy on Ray Tune from the CLI: kill -9 in the middle of a cycle, resume, and the
lineage comes out exactly as an uninterrupted run of the same config makes it."""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import optuna
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import poll, resume_to_the_end, start, state, stop_group  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CYCLES = 4
CONFIG = {
    "random_seed": 3,
    "seed": {"network": "tiny_resnet", "epochs": 2, "lr": 0.1, "schedule": "sgdr", "restart_epochs": 2},
    "data": {"dataset": "digits", "train_limit": 300},
    "actions": {"ops": {"deepen": {}, "widen": {"factor": [2.0]}, "insert_path": {}}, "actions_per_child": 1},
    "strategy": {"name": "grow", "candidates": 2, "scoring": "rung", "growth_points": 2},
    "budget": {"trials": CYCLES},
    "resources": {"cpus_per_trial": 1, "max_concurrent": 2}, "ray": {"num_cpus": 2},
    "final": {"enabled": False},
}


def lineage(run: Path, name: str) -> dict[str, tuple]:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{run / 'study.db'}")
    out = {}
    for t in study.get_trials():
        assert t.state.name == "COMPLETE", (t.user_attrs.get("member_id"), t.user_attrs.get("fail_reason"))
        out[t.user_attrs["member_id"]] = (t.user_attrs.get("parent_id"), tuple(t.values))
    return out


def test_grow_resumes_exactly_after_kill_9(tmp_path):
    runs = tmp_path / "runs"
    for name in ("ref", "killed"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**CONFIG, "name": name, "runs_dir": str(runs)}))
    log = open(tmp_path / "log.txt", "w")
    # The reference: the same config, never interrupted.
    p = start(["search", str(tmp_path / "ref.yaml")], log)
    try:
        assert p.wait(timeout=400) == 0, (tmp_path / "log.txt").read_text()[-3000:]
    finally:
        stop_group(p)
    # The same run, killed (-9) while a cycle after the first grown one trains, then resumed.
    run = runs / "killed"
    p = start(["search", str(tmp_path / "killed.yaml")], log)
    try:
        def mid_cycle():
            s = state(run)
            done = [r for r in s.get("results", []) if r["member_id"] != "m0"]
            return s if len(done) >= 1 and s.get("pending") else None
        before = poll(mid_cycle, "one finished cycle and a running one", p, log, timeout=300)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        stop_group(p)
    interrupted = set(state(run)["pending"])
    assert interrupted, "the kill landed while a cycle trained"
    try:
        resume_to_the_end(run, log)
    finally:
        log.close()
    ref, got = lineage(runs / "ref", "ref"), lineage(run, "killed")
    assert sorted(got, key=lambda m: int(m[1:])) == [f"m{i}" for i in range(CYCLES + 1)]
    assert [got[f"m{i}"][0] for i in range(1, CYCLES + 1)] == [f"m{i}" for i in range(CYCLES)], \
        "one lineage: every cycle continues the one before"
    assert got == ref, "the resumed run is the uninterrupted one, cycle for cycle (values and parents)"
    final = json.loads((run / "run_state.json").read_text())
    rerun = [r for r in final["results"] if r["member_id"] in interrupted]
    assert rerun and all(r["extra"].get("attempt") == 2 for r in rerun)
    grown = [r for r in final["results"] if r["extra"].get("grow")]
    assert len(grown) == 2 and all(len(r["extra"]["grow"]["scores"]) == 2 for r in grown)
    assert all((run / r["member_path"] / "optimizer.pt").is_file() for r in final["results"])
    assert [r["member_id"] for r in before["results"]] == [r["member_id"] for r in final["results"]][:len(before["results"])]
