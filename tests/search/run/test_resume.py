"""Resume after Ctrl-C and after kill -9 of the driver (real processes, real Ray Tune).

One run is stopped twice: first by SIGINT (Ctrl-C), then — after resuming — by SIGKILL in the
middle of its trials, and resumed again to the end. After each stop: every trial finished before
it is unchanged in the study, trials that were running are re-run once (and say so), and at the
end the study holds exactly the budget of trials (+ the seed), one per member, no duplicates.
While a driver runs, a second one on the same run is refused.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from morphnas.search.cli import main
from morphnas.search.study.rows import EXTRA_ATTR
from morphnas.search.tune.session import SESSION_FILE

pytestmark = [pytest.mark.ray, pytest.mark.slow]

BUDGET = 5
CONFIG = {
    "name": "r", "random_seed": 1,
    "seed": {"network": "tiny_resnet", "epochs": 2, "lr": 0.1},
    "data": {"dataset": "digits", "train_limit": 300},
    "actions": {"ops": {"deepen": {}, "widen": {"factor": [2.0]}, "insert_path": {}}, "actions_per_child": 1},
    "strategy": {"name": "evolution", "population_size": 4, "sample_size": 2},
    "budget": {"trials": BUDGET}, "finetune": {"epochs": 2},
    "resources": {"cpus_per_trial": 1, "max_concurrent": 2}, "ray": {"num_cpus": 2},
    "final": {"epochs": 1},
}


def start(args, log):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "morphnas.search", *args], stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)


def state(run: Path) -> dict:
    try:
        return json.loads((run / "run_state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def poll(condition, what, proc=None, log=None, timeout=300.0, every=0.1):
    """Wait for an event: ``condition()`` truthy (returned), checked every ``every`` s up to ``timeout``.

    The test is driven by what the driver writes (run_state.json, the lock file, its exit), never by
    fixed sleeps, so it neither races on a slow machine nor waits longer than needed on a fast one.
    Fails at once, with the driver's log, if ``proc`` exits before the event.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        tail = lambda: Path(log.name).read_text()[-3000:] if log is not None else ""  # noqa: E731
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the driver exited with {proc.returncode} before {what}\n{tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail()}")
        time.sleep(every)


def wait_until(proc, run, done_children, log=None):
    """Until ``done_children`` children finished while at least one trial is still running."""
    def ready():
        s = state(run)
        children = [r for r in s.get("results", []) if r["member_id"] != "m0"]
        return s if len(children) >= done_children and s.get("pending") else None
    return poll(ready, f"{done_children} finished children and a running trial", proc, log)


def lock_holder(run: Path) -> str:
    try:
        return (run / ".lock").read_text().strip()
    except FileNotFoundError:
        return ""


def resume_to_the_end(run: Path, log, timeout: float = 400.0) -> None:
    """``morphnas resume run`` in a subprocess (output to ``log``), run to its end: exit 0."""
    p = start(["resume", str(run)], log)
    try:
        poll(lambda: lock_holder(run) == str(p.pid), "the resumed driver to hold the lock", p, log, timeout=120)
        assert p.wait(timeout=timeout) == 0, Path(log.name).read_text()[-3000:]
    finally:
        stop_group(p)


def stop_group(proc):
    """End what this test started: the driver's session (Ray fate-shares with the driver anyway)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (from /proc: pid -> parent pid)."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [root]
    while todo:
        cur = todo.pop()
        kids = [pid for pid, pp in parent.items() if pp == cur]
        out.extend(kids)
        todo.extend(kids)
    return out


def finished_trials(study_url, name="r"):
    study = optuna.load_study(study_name=name, storage=study_url)
    # A member's trial is opened (RUNNING) when it launches, so its number never moves; only
    # finished trials (COMPLETE/FAIL) are the results a stop must keep.
    # (state, values, user attributes, the raw ``extra`` record kept out of the dashboard's view)
    return {t.user_attrs["member_id"]: (t.state.name, t.values, t.user_attrs, t.system_attrs.get(EXTRA_ATTR, {}))
            for t in study.get_trials() if t.state.is_finished()}


def test_ctrl_c_then_kill_9_then_resume_loses_and_repeats_nothing(tmp_path, capsys):
    cfg_path = tmp_path / "r.yaml"
    cfg_path.write_text(yaml.safe_dump({**CONFIG, "runs_dir": str(tmp_path / "runs")}))
    run = tmp_path / "runs" / "r"
    url = f"sqlite:///{run / 'study.db'}"
    log = open(tmp_path / "log.txt", "w")

    # 1. Ctrl-C (SIGINT) while trials run: a clean stop, running trials stay pending.
    p = start(["search", str(cfg_path)], log)
    try:
        wait_until(p, run, 1, log)
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=120) == 130
    finally:
        stop_group(p)
    s1 = state(run)
    assert s1["status"] == "search" and s1["pending"], "the trials running at Ctrl-C stay pending"
    before1 = finished_trials(url)
    assert set(before1) == {r["member_id"] for r in s1["results"]}
    interrupted1 = set(s1["pending"])

    # 2. Resume, then kill -9 the driver in the middle of its trials.
    p = start(["resume", str(run)], log)
    try:
        wait_until(p, run, len([r for r in s1["results"] if r["member_id"] != "m0"]) + 1, log)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        stop_group(p)
    s2 = state(run)
    assert s2["pending"] and s2["status"] == "search"
    before2 = finished_trials(url)
    interrupted2 = set(s2["pending"])

    # 3. Resume to the end.
    p = start(["resume", str(run)], log)
    try:
        poll(lambda: lock_holder(run) == str(p.pid), "the driver to hold the run lock", p, log, timeout=120)
        # A second driver (this process, the CLI in-process: no second interpreter start-up) is refused.
        capsys.readouterr()
        assert main(["resume", str(run)]) == 2 and "in use by another driver" in capsys.readouterr().err
        assert p.wait(timeout=300) == 0, (tmp_path / "log.txt").read_text()[-3000:]
    finally:
        stop_group(p)
    log.close()
    final = state(run)
    assert final["status"] == "finished" and final["started"] == BUDGET and not final["pending"]
    after = finished_trials(url)
    assert sorted(after, key=lambda m: int(m[1:])) == [f"m{i}" for i in range(BUDGET + 1)], \
        "exactly the budget of children (+ the seed), one study trial each"
    study = optuna.load_study(study_name="r", storage=url)
    assert len(study.get_trials()) == BUDGET + 1, "no duplicate or orphan trials"
    for before in (before1, before2):
        for mid, (st, values, attrs, extra) in before.items():
            assert after[mid][:3] == (st, values, attrs) and after[mid][3] == extra, \
                f"{mid} finished before a stop and must be unchanged"
    for mid in interrupted1 | interrupted2:
        extra = after[mid][3]
        assert extra.get("rerun") is True or after[mid][0] == "FAIL", f"{mid} must say it was re-run"
        assert "interrupted" in after[mid][2].get("fail_reason", "") if after[mid][0] == "FAIL" else extra["attempt"] == 2
    text = (tmp_path / "log.txt").read_text()
    assert "is re-run once" in text and "morphnas resume" in text

    # 4. Resuming a finished run says so.
    assert main(["resume", str(run)]) == 0 and "already finished" in capsys.readouterr().out

    # 5. A raised budget continues a finished run: one more child, nothing before it changed.
    assert main(["resume", str(run), "--set", f"budget.trials={BUDGET + 1}"]) == 0
    assert "the search goes on" in capsys.readouterr().out
    more = state(run)
    assert more["status"] == "finished" and more["started"] == BUDGET + 1 and not more["pending"]
    extended = finished_trials(url)
    assert sorted(extended, key=lambda m: int(m[1:])) == [f"m{i}" for i in range(BUDGET + 2)]
    assert all(extended[mid] == after[mid] for mid in after), "finished members are untouched"


@pytest.mark.parametrize("retries", [1, 0], ids=["retried by default", "max_failures 0"])
def test_a_crashed_worker_is_retried_once_then_failed(tmp_path, retries):
    """kill -9 of the Ray worker running a child (what a preempted node or the OOM killer does): by
    default (``ray.max_failures: 1``) Tune re-runs that child and one line says so; with 0 the trial
    is recorded FAIL. The others finish either way, and Ray's many-line text of a dead actor never
    reaches the user."""
    # 8 short epochs: the kill lands after a child's first epoch report, with 7 more to go.
    cfg = {**CONFIG, "name": "w", "runs_dir": str(tmp_path / "runs"), "budget": {"trials": 3},
           "finetune": {"epochs": 8}, "final": {"epochs": 0}, "ray": {**CONFIG.get("ray", {}), "max_failures": retries}}
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "runs" / "w"
    log = open(tmp_path / "log.txt", "w")
    p = start(["search", str(tmp_path / "w.yaml")], log)
    try:
        def running_child_worker():
            """A Ray worker in the middle of a child trial: the pid of a pending child's epoch report
            before its final one. Not just any worker: the other slot's may be running a *hold*, and
            killing that fails no member. Tune writes each trial's result.json as results come in
            under the Ray session's ``artifacts/`` (copied into ``run/ray`` only at the end)."""
            pending = set(state(run).get("pending", {})) - {"m0"}
            try:
                session = Path(json.loads((run / SESSION_FILE).read_text())["session_dir"])
            except (OSError, ValueError, KeyError):   # Ray not up yet
                return None
            for f in session.glob("artifacts/*/*/driver_artifacts/m*_*/result.json"):
                try:
                    reports = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
                except (OSError, json.JSONDecodeError):   # being written: look again
                    continue
                if f.parent.name.split("_", 1)[0] in pending and reports and not any(r.get("final") for r in reports):
                    pid = int(reports[-1]["pid"])
                    if pid in descendants(p.pid) and "ImplicitFunc" in cmdline(pid):
                        return pid
            return None
        victim = poll(running_child_worker, "a Ray worker running a child trial", p, log)
        os.kill(victim, signal.SIGKILL)      # a process this test started (a descendant of its driver)
        assert p.wait(timeout=240) == 0, (tmp_path / "log.txt").read_text()[-3000:]
    finally:
        stop_group(p)
        log.close()
    trials = finished_trials(f"sqlite:///{run / 'study.db'}", "w")
    assert sorted(trials) == ["m0", "m1", "m2", "m3"]
    out = (tmp_path / "log.txt").read_text()
    said = [line for line in out.splitlines() if "its worker process died" in line]
    failed = [m for m, (st, *_) in trials.items() if st == "FAIL"]
    if retries:
        assert len(said) == 1 and "re-running it (retry 1 of 1" in said[0], out[-3000:]
        victim_id = said[0].split("member ", 1)[1].split(":", 1)[0]
        assert failed == [], {m: trials[m][2].get("fail_reason") for m in failed}
        assert trials[victim_id][3]["worker_retries"] == 1
    else:
        assert said == []
        assert len(failed) >= 1 and all("worker error" in trials[m][2]["fail_reason"] for m in failed)
    assert "The actor is dead" not in out and "Traceback" not in out and "did not complete" not in out, out[-3000:]
    assert "worker died" in (run / "ray_errors.log").read_text(), "Ray's own text is kept in the run"
    assert state(run)["status"] == "finished"
