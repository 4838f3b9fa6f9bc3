"""One real Ray Tune search: 2 concurrent trials, one failing trial, the seed stage and the final stage.

Kept small (one ``ray.init``, 5 tiny trials on digits) because starting Ray costs ~5 s and ~750 MB.
"""
from __future__ import annotations

import json

import pytest

from morphnas.morphism.serialize import load_network
from morphnas.search.config import config_from_dict
from morphnas.search.run.driver import Driver
from morphnas.search.state.records import Proposal
from morphnas.search.state.rundir import RunDir
from morphnas.search.strategies import build_strategy
from morphnas.search.study.rows import EXTRA_ATTR
from morphnas.spaces.actions import Action

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def small_config(tmp_path, **over):
    raw = {
        "name": "t", "runs_dir": str(tmp_path), "random_seed": 0,
        "seed": {"network": "tiny_resnet", "epochs": 2, "lr": 0.1},
        "data": {"dataset": "digits", "train_limit": 300},
        "actions": {"ops": {"deepen": {}, "widen": {"factor": [2.0]}}, "actions_per_child": 1},
        "strategy": {"name": "hill_climb", "children": 2},
        "budget": {"trials": 4}, "finetune": {"epochs": 1},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 2}, "ray": {"num_cpus": 2},
        "final": {"epochs": 1},
    }
    for k, v in over.items():
        raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) else v
    return config_from_dict(raw)


def failing_second_proposal(section, mutator, seed):
    """The configured strategy, except that its 2nd proposal names an edge that does not exist."""
    s = build_strategy(section, mutator, seed)
    real = s.propose

    def propose(pop):
        p = real(pop)
        if p is not None and p.proposal_id == "p2":
            p = Proposal(p.parent_id, (Action("deepen", "no.such.conv", {}, 0),), p.search_params, p.proposal_id)
        return p
    s.propose = propose
    return s


class CountingDriver(Driver):
    max_running = 0

    def _launch(self, trial_id, job):
        out = super()._launch(trial_id, job)
        self.max_running = max(self.max_running, len(self.state.pending))
        return out


def test_search_on_ray_tune_with_concurrency_and_a_failing_trial(tmp_path):
    import optuna
    cfg = small_config(tmp_path)
    lines = []
    d = CountingDriver(cfg, strategy_factory=failing_second_proposal, echo=lines.append)
    assert d.run() == 0
    run = RunDir.at(cfg.run_dir)
    state = json.loads((run.root / "run_state.json").read_text())
    assert state["status"] == "finished" and state["started"] == 4 and not state["pending"]
    assert d.max_running == 2, "two trials must run at the same time"

    study = optuna.load_study(study_name="t", storage=f"sqlite:///{run.study_db}")
    trials = study.get_trials()
    members = sorted(t.user_attrs["member_id"] for t in trials)
    assert members == ["m0", "m1", "m2", "m3", "m4"], "one study trial per member, seed included"
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 1 and failed[0].user_attrs["member_id"] == "m2"
    assert "no.such.conv" in failed[0].user_attrs["fail_reason"]
    assert any("m2 FAILED" in line for line in lines), "a failure is reported in the terminal"
    for t in trials:
        if t.state.name == "COMPLETE":
            mid = t.user_attrs["member_id"]
            net = load_network(run.member(mid))
            assert net.num_params() == t.user_attrs["params"]
            extra = t.system_attrs[EXTRA_ATTR]          # raw JSON lives out of the dashboard's visible box
            assert extra["node_id"] and extra["pid"] > 0   # where it ran
            assert "extra" not in t.user_attrs and "actions" not in t.user_attrs
            if mid != "m0":
                assert t.user_attrs["preservation_error"] < 1e-4
                assert t.user_attrs["parent_id"] in members

    report = json.loads((run.best / "report.json").read_text())
    assert 0.0 <= report["test_acc"] <= 1.0 and report["member_id"] in members
    load_network(run.best)
    assert (run.config_path).exists() and any(line.startswith("[final]") for line in lines)

    # A finished run says so when resumed, and a second search of the same name is refused.
    lines.clear()
    assert Driver(cfg, echo=lines.append).run(resume=True) == 0
    assert "already finished" in lines[-1]
    from morphnas.search.state.runstate import RunStateError
    with pytest.raises(RunStateError, match=r"already exists; continue it with 'morphnas resume"):
        Driver(cfg, echo=lines.append).run(resume=False)
