"""The driver's write-ahead state without Ray: a fake Tune loop calls the driver's callbacks and
executes jobs in-process, a "crash" leaves the state as a kill -9 would, and resume must continue
with nothing lost or repeated. Also the run lock, the state file and the progress line."""
from __future__ import annotations

import json

import pytest

from morphnas.search.config import config_from_dict
from morphnas.search.run.driver import FINISHED, Driver
from morphnas.search.run.progress import Snapshot, eta, fmt_duration, format_line
from morphnas.search.state.records import Job
from morphnas.search.state.runstate import RunLock, RunState, RunStateError
from morphnas.search.trial.worker import execute


class Crash(Exception):
    pass


class FakeTuneDriver(Driver):
    """Runs trials in-process, two 'concurrently' (suggest two, finish the oldest), like Tune would."""

    crash_after: int | None = None        # completions before the simulated kill -9

    def _search(self):
        self._gpus = 0.0
        running, n, done, finished = [], 0, 0, False
        while True:
            while not finished and len(running) < 2:
                out = self.suggest(f"t{n}")
                n += 1
                if out == FINISHED:
                    finished = True
                elif out is None:
                    break
                else:
                    running.append((f"t{n - 1}", out["job"]))
            if not running:
                return
            if self.crash_after is not None and done >= self.crash_after:
                raise Crash()
            tid, job = running.pop(0)
            reports = []
            execute(job, reports.append)
            self.on_trial_complete(tid, reports[-1], False)
            done += 1


def config(tmp_path, trials=4):
    return config_from_dict({
        "name": "f", "runs_dir": str(tmp_path), "seed": {"network": "tiny_resnet", "epochs": 1},
        "data": {"train_limit": 150}, "actions": {"ops": {"deepen": {}, "widen": {"factor": [2.0]}}},
        "strategy": {"name": "random_walk"}, "budget": {"trials": trials}, "finetune": {"epochs": 1},
        "final": {"epochs": 0}})


def _study(cfg):
    import optuna
    return optuna.load_study(study_name=cfg.name, storage=f"sqlite:///{(cfg.run_dir / 'study.db').resolve()}")


def study_trials(cfg):
    st = _study(cfg)
    # Trials open (RUNNING) when their member launches; the finished ones are the results.
    return {t.user_attrs["member_id"]: t for t in st.get_trials() if t.state.is_finished()}


def test_crash_then_resume_reruns_pending_once_and_fails_a_second_interruption(tmp_path):
    cfg = config(tmp_path)
    a = FakeTuneDriver(cfg, echo=lambda s: None)
    a.crash_after = 2                                   # seed + m1 done, m2 and m3 running
    with pytest.raises(Crash):
        a.run()
    s = RunState.load(cfg.run_dir)
    assert sorted(s.pending) == ["m2", "m3"] and [r.member_id for r in s.results] == ["m0", "m1"]
    first = {k: (t.values, t.user_attrs) for k, t in study_trials(cfg).items()}
    assert sorted(first) == ["m0", "m1"]

    b = FakeTuneDriver(cfg, echo=lambda s: None)
    b.crash_after = 0                                   # crash again before anything finishes
    with pytest.raises(Crash):
        b.run(resume=True)
    s = RunState.load(cfg.run_dir)
    assert sorted(s.pending) == ["m2", "m3"] and all(j.attempt == 2 for j in s.pending.values())

    lines = []
    c = FakeTuneDriver(cfg, echo=lines.append)
    assert c.run(resume=True) == 0
    s = RunState.load(cfg.run_dir)
    assert s.status == "finished" and s.started == 4 and not s.pending
    trials = study_trials(cfg)
    assert sorted(trials) == ["m0", "m1", "m2", "m3", "m4"], "exactly the budget, one trial per member"
    assert len(_study(cfg).get_trials()) == 5, "no orphan or duplicate trial (a re-run keeps its trial)"
    for mid in ("m2", "m3"):     # interrupted on their first run and on their re-run: FAIL, not a third run
        assert trials[mid].state.name == "FAIL" and "interrupted twice" in trials[mid].user_attrs["fail_reason"]
    for mid, (values, attrs) in first.items():
        assert trials[mid].values == values and trials[mid].user_attrs == attrs
    assert trials["m4"].state.name == "COMPLETE"
    assert json.loads((cfg.run_dir / "best" / "report.json").read_text())["member_id"] in trials


def test_a_result_saved_but_not_recorded_is_recorded_on_resume(tmp_path):
    cfg = config(tmp_path, trials=1)
    d = FakeTuneDriver(cfg, echo=lambda s: None)
    d._record = lambda r: None                          # "crash" between the state write and the study
    assert d.run() == 0
    assert study_trials(cfg) == {}
    s = RunState.load(cfg.run_dir)
    s.status = "search"
    s.save(cfg.run_dir)
    FakeTuneDriver(cfg, echo=lambda s: None).run(resume=True)
    assert sorted(study_trials(cfg)) == ["m0", "m1"]


def test_run_lock_refuses_a_second_driver(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunStateError, match=r"in use by another driver"):
            with RunLock(tmp_path):
                pass
    with RunLock(tmp_path):   # released on exit
        pass


def test_state_file_round_trip_and_errors(tmp_path):
    s = RunState(started=3, pending={"m3": Job(kind="child", member_id="m3", member_path="members/m3", born=3)})
    s.save(tmp_path)
    assert RunState.load(tmp_path) == s
    (tmp_path / "run_state.json").write_text("{not json")
    with pytest.raises(RunStateError, match=r"corrupt"):
        RunState.load(tmp_path)
    with pytest.raises(RunStateError, match=r"does not exist"):
        RunState.load(tmp_path / "nope")


def test_progress_line_and_eta():
    s = Snapshot(done=3, failed=1, budget=12, running=2, best_id="m2", best_acc=0.95, seed_acc=0.9,
                 elapsed=90.0, wall_time=None)
    assert eta(s) == pytest.approx(270.0)
    assert format_line(s) == ("[search] trials 3/12 (1 failed) | running 2 | best m2 val_acc 0.9500 (seed 0.9000) | "
                              "elapsed 1m30s | ETA 4m30s")
    assert eta(Snapshot(3, 0, 12, 2, None, None, None, 90.0, 100.0)) == pytest.approx(10.0)
    assert fmt_duration(3725) == "1h02m" and fmt_duration(None) == "?"


def test_wall_time_budget_stops_new_trials(tmp_path):
    raw = config(tmp_path, trials=4).to_dict()
    raw["budget"] = {"trials": None, "wall_time": 1e-3}
    cfg = config_from_dict(raw)
    d = FakeTuneDriver(cfg, echo=lambda s: None)
    assert d.run() == 0
    s = RunState.load(cfg.run_dir)
    assert s.started == 0 and [r.member_id for r in s.results] == ["m0"] and s.elapsed > 0


def test_resume_cli_errors_are_one_line(tmp_path, capsys):
    from morphnas.search.cli import main
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.yaml").write_text("name: x\n")
    assert main(["resume", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run_state.json does not exist" in err[0]
    assert main(["resume", str(tmp_path / "nothing")]) == 2
