"""Trials really run side by side: a real Ray Tune search of 8 short children at concurrency 2.

Why: Tune keeps one live actor while the searcher waits (the seed trains, a hill-climbing
generation is incomplete); a second trial then needs a cold actor that starts slower than a short
trial runs, and Tune hands it the first trial's cached actor instead, so every trial ran in one
process, one after another. The driver's *holds* keep the second worker alive (search/trial/hold.py).
The test counts overlapping pairs of run intervals (no timing thresholds): each child records when
its worker started it (``extra.started_at``) and how long it ran (``wall_time``).
"""
from __future__ import annotations

import json
import time

import pytest

from morphnas.search.config import config_from_dict
from morphnas.search.run.driver import Driver
from morphnas.search.state.rundir import RunDir
from morphnas.search.tune.session import session_pids

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _config(tmp_path):
    return config_from_dict({
        "name": "conc", "runs_dir": str(tmp_path), "random_seed": 0,
        "seed": {"network": "tiny_resnet", "epochs": 1, "lr": 0.1},
        "data": {"dataset": "digits", "train_limit": 300},
        "actions": {"ops": {"deepen": {}, "widen": {"factor": [1.5]}}, "actions_per_child": 1},
        "strategy": {"name": "hill_climb", "children": 4},
        "budget": {"trials": 8}, "finetune": {"epochs": 2},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 2}, "ray": {"num_cpus": 2},
        "final": {"enabled": False},
    })


def overlapping_pairs(intervals):
    return sum(1 for i, (a0, a1) in enumerate(intervals) for b0, b1 in intervals[i + 1:] if a0 < b1 and b0 < a1)


def settled_pids(session_dir: str, timeout: float = 10.0) -> list[int]:
    """The live processes of a Ray session once the set has stopped changing (processes that exit
    with their driver take a moment to go; the survivors are what resume must clean up)."""
    deadline = time.monotonic() + timeout
    last = sorted(p for p in session_pids(session_dir) if _alive(p))
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = sorted(p for p in session_pids(session_dir) if _alive(p))
        if now == last:
            return now
        last = now
    return last


def test_children_run_side_by_side_in_two_workers_and_holds_leave_no_trace(tmp_path, capsys):
    import optuna
    cfg = _config(tmp_path)
    lines: list[str] = []
    assert Driver(cfg, echo=lines.append).run() == 0
    run = RunDir.at(cfg.run_dir)
    state = json.loads((run.root / "run_state.json").read_text())
    children = [r for r in state["results"] if r["member_id"] != "m0"]
    assert sorted(r["member_id"] for r in children) == [f"m{i}" for i in range(1, 9)]
    assert all(r["state"] == "COMPLETE" for r in children), [r.get("fail_reason") for r in children]

    intervals = [(r["extra"]["started_at"], r["extra"]["started_at"] + r["wall_time"]) for r in children]
    pairs = overlapping_pairs(intervals)
    pids = {r["extra"]["pid"] for r in children}
    assert pairs >= 2, f"children ran one after another: {sorted(intervals)}"
    assert len(pids) >= 2, f"all children ran in one worker process {pids}"
    printed = capsys.readouterr()
    assert "| running 2 |" in printed.out, "the progress line shows two children running"
    assert "Token authentication" not in printed.out + printed.err, "Ray's notice is shown only with --verbose"
    assert "Trial hold_" not in printed.out + printed.err, "holds are not reported in the terminal"

    # holds are no members: not in the run state, not in the study, their Tune dirs say hold_
    assert not state["pending"] and not state["queue"]
    assert sorted(m["id"] for m in state["population"]) == sorted(f"m{i}" for i in range(9))
    assert len(state["results"]) == 9
    study = optuna.load_study(study_name="conc", storage=f"sqlite:///{run.study_db}")
    assert sorted(t.user_attrs["member_id"] for t in study.get_trials()) == sorted(f"m{i}" for i in range(9))
    trial_dirs = [p.name for p in run.ray.glob("session1/*") if p.is_dir()]
    assert all(n.startswith(("m", "hold_")) for n in trial_dirs), trial_dirs
    assert sum(n.startswith("m") for n in trial_dirs) == 9

    # a resume after the run changes nothing
    before = (state["results"], state["population"], len(study.get_trials()))
    assert Driver(cfg, echo=lines.append).run(resume=True) == 0
    after = json.loads((run.root / "run_state.json").read_text())
    assert (after["results"], after["population"], len(study.get_trials())) == before


# ------------------------------------------------------------------------------- the cluster cannot run a trial
def test_cluster_checks_name_the_resources_and_the_fix():
    from morphnas.search.tune.session import ClusterError, check_fits, check_reachable
    nodes, total = [{"CPU": 2.0}], {"CPU": 2.0}
    check_fits(2, 0.0, nodes, total)
    with pytest.raises(ClusterError, match=r"2 CPU\(s\) and 0 GPU\(s\).*cpus_per_trial=64 > 2"):
        check_fits(64, 0.0, nodes, total)
    with pytest.raises(ClusterError, match=r"gpus_per_trial=1 > 0"):
        check_fits(1, 1.0, nodes, total)
    # a trial runs on one node: two 2-CPU nodes cannot run a 3-CPU trial
    with pytest.raises(ClusterError, match=r"4 CPU\(s\).*cpus_per_trial=3 > 2"):
        check_fits(3, 0.0, [{"CPU": 2.0}, {"CPU": 2.0}], {"CPU": 4.0})
    with pytest.raises(ClusterError, match=r"ray.address '127.0.0.1:1': nothing answers"):
        check_reachable("127.0.0.1:1")


def test_too_many_cpus_per_trial_fails_in_seconds_and_the_run_stays_resumable(tmp_path):
    import time

    from morphnas.search.tune.session import ClusterError
    cfg = config_from_dict({
        "name": "big", "runs_dir": str(tmp_path), "seed": {"network": "tiny_resnet", "epochs": 1},
        "data": {"dataset": "digits", "train_limit": 100}, "budget": {"trials": 1},
        "actions": {"ops": {"widen": {"factor": [1.5]}}},
        "resources": {"cpus_per_trial": 64}, "ray": {"num_cpus": 2}, "final": {"enabled": False},
    })
    t = time.monotonic()
    with pytest.raises(ClusterError, match=r"cluster has 2 CPU\(s\).*cpus_per_trial=64"):
        Driver(cfg, echo=lambda s: None).run()
    assert time.monotonic() - t < 120          # (the whole start-up of Ray on a loaded 2-core machine)
    state = json.loads((RunDir.at(cfg.run_dir).root / "run_state.json").read_text())
    assert state["status"] == "search" and state["queue"] and not state["results"]
    import ray
    assert not ray.is_initialized(), "the Ray this session started is shut down"


# ------------------------------------------------------------------------------- a killed driver's Ray processes
def _alive(pid):
    import os
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"


def test_resume_ends_the_ray_processes_of_a_killed_driver_and_no_other(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from morphnas.search.tune.session import SESSION_FILE, session_pids
    cfg = {"name": "orph", "runs_dir": str(tmp_path / "runs"), "seed": {"network": "tiny_resnet", "epochs": 6},
           "data": {"dataset": "digits", "train_limit": 200}, "budget": {"trials": 1}, "finetune": {"epochs": 1},
           "actions": {"ops": {"widen": {"factor": [1.5]}}}, "resources": {"cpus_per_trial": 1},
           "ray": {"num_cpus": 1}, "final": {"enabled": False}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "runs" / "orph"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    other = subprocess.Popen(
        [sys.executable, "-c", "import ray, time; ray.init(num_cpus=1, include_dashboard=False); "
                               "print(ray._private.worker._global_node.get_session_dir_path(), flush=True); "
                               "time.sleep(900)"], stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    driver = subprocess.Popen([sys.executable, "-m", "morphnas.search", "search", str(tmp_path / "c.yaml")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    other_dir = other.stdout.readline().strip()
    other_pids = set()
    try:
        assert other_dir, "the unrelated Ray session did not start"
        deadline = time.monotonic() + 240
        old_dir = None
        while time.monotonic() < deadline:      # wait until the seed trial's worker runs
            if (run / SESSION_FILE).exists():
                old_dir = json.loads((run / SESSION_FILE).read_text())["session_dir"]
                if any("ImplicitFunc" in open(f"/proc/{p}/cmdline").read() for p in session_pids(old_dir)
                       if os.path.exists(f"/proc/{p}")):
                    break
            assert driver.poll() is None, "the driver ended early"
            time.sleep(0.5)
        assert old_dir is not None
        other_pids = set(session_pids(other_dir)) | {other.pid}
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        left = settled_pids(old_dir)
        assert left, "kill -9 of the driver leaves its Ray processes behind (what resume must clean up)"

        resume = subprocess.run([sys.executable, "-m", "morphnas.search", "resume", str(run)], env=env,
                                capture_output=True, text=True, timeout=600)
        assert resume.returncode == 0, resume.stderr[-2000:]
        assert [p for p in left if _alive(p)] == [], "no process of the killed driver's Ray session remains"
        assert all(_alive(p) for p in other_pids), "an unrelated Ray session is never touched"
    finally:
        for p in (driver, other):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=30)
        for pid in session_pids(other_dir) if other_dir else ():   # the test's own unrelated session
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def test_eta_comes_from_the_children_seen_not_the_wall_time_budget():
    from morphnas.search.run.progress import Snapshot, eta
    early = Snapshot(done=0, failed=0, budget=12, running=2, best_id=None, best_acc=None, seed_acc=None,
                     elapsed=10.0, wall_time=240.0, concurrent=2)
    assert eta(early) == pytest.approx(230.0), "before any child finished only the budget is known"
    seen = Snapshot(done=2, failed=0, budget=12, running=2, best_id=None, best_acc=None, seed_acc=None,
                    elapsed=20.0, wall_time=240.0, mean_trial=3.0, concurrent=2)
    assert eta(seen) == pytest.approx(3.0 * 10 / 2), "mean child time x children left / trials at a time"
