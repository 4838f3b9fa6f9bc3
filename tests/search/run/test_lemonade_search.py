"""A real multi-objective search from the CLI: LEMONADE on Ray Tune, growing and shrinking morphs,
accuracy against params and measured latency. The study has three objectives, the dashboard's
front is the leaderboard's ``pareto`` flag, every front member exports, and ``max_latency_ms``
keeps slow children out whichever strategy proposes them."""
from __future__ import annotations

import json

import pytest
import yaml
from _wsgi import call

from morphnas.search.cli import main
from morphnas.search.state.rundir import RunDir
from morphnas.search.study.dashboard import dashboard_app
from morphnas.search.study.leaderboard import Leaderboard

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def write_config(tmp_path, name, **over):
    raw = {
        "name": name, "runs_dir": str(tmp_path / "runs"), "random_seed": 0,
        "seed": {"network": "tiny_resnet", "epochs": 2, "lr": 0.1},
        "data": {"dataset": "digits", "train_limit": 300},
        "actions": {"ops": {"deepen": {}, "widen": {"factor": [2.0]}, "remove_layer": {},
                            "prune_channels": {"fraction": [0.5]}},
                    "actions_per_child": 1, "constraints": {"max_latency_ms": 1000}},
        "strategy": {"name": "lemonade", "cost": ["params", "latency_ms"], "candidates": 4, "accept": 2},
        "budget": {"trials": 4}, "finetune": {"epochs": 1},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 2}, "ray": {"num_cpus": 2},
        "latency": {"repeats": 3, "batch_size": 2}, "final": {"enabled": False},
    }
    for k, v in over.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) else v
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, RunDir.at(tmp_path / "runs" / name)


@pytest.fixture(scope="module")
def lemonade_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lemonade")
    path, run = write_config(tmp, "lem")
    assert main(["search", str(path)]) == 0
    return tmp, run


def test_the_study_has_three_objectives_and_every_trial_its_measured_latency(lemonade_run, capsys):
    _, run = lemonade_run
    lb = Leaderboard.open(run)
    assert lb.directions == ["maximize", "minimize", "minimize"]
    assert lb.study.metric_names == ["val_acc", "params", "latency_ms"]
    done = [t for t in lb.study.get_trials() if t.state.name == "COMPLETE"]
    assert len(done) >= 3
    for t in done:
        assert t.values[1] == t.user_attrs["params"] and t.values[2] == pytest.approx(t.user_attrs["latency_ms"])
        assert 0 < t.values[2] <= 1000
    capsys.readouterr()
    assert main(["leaderboard", str(run.root)]) == 0
    head = capsys.readouterr().out.splitlines()[1].split()
    assert head[-6:] == ["latency_ms", "obj:val_acc", "obj:params", "obj:latency_ms", "pareto", "state"]


def test_the_dashboard_front_is_the_leaderboard_pareto_flag(lemonade_run, capsys):
    _, run = lemonade_run
    capsys.readouterr()
    assert main(["leaderboard", str(run.root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    flagged = {r["trial"] for r in rows if r["pareto"]}
    app = dashboard_app(run)
    study = json.loads(call(app, "/api/studies")[2])["study_summaries"][0]
    assert study["directions"] == ["maximize", "minimize", "minimize"]
    detail = json.loads(call(app, f"/api/studies/{study['study_id']}")[2])
    assert {t["number"] for t in detail["best_trials"]} == flagged and flagged
    assert {t.number for t in Leaderboard.open(run).study.best_trials} == flagged


def test_every_front_member_exports_and_reproduces(lemonade_run, capsys):
    tmp, run = lemonade_run
    front = [r for r in Leaderboard.open(run).rows() if r.pareto]
    for r in front:
        capsys.readouterr()
        out = tmp / f"export_{r.trial}"
        assert main(["export", str(run.root), "--trial", str(r.trial), "-o", str(out), "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["member"] == r.member_id and data["rel_err"] <= 1e-5


def test_max_latency_ms_keeps_slow_children_out_before_training(tmp_path):
    path, run = write_config(tmp_path, "slow", seed={"epochs": 0}, budget={"trials": 2},
                             actions={"constraints": {"max_latency_ms": 1e-6}})
    assert main(["search", str(path)]) == 0
    rows = {r.member_id: r for r in Leaderboard.open(run).rows()}
    assert rows["m0"].state == "COMPLETE", "the seed is the user's choice: measured, never refused"
    children = [r for m, r in rows.items() if m != "m0"]
    assert len(children) == 2
    for r in children:
        assert r.state == "FAIL" and "max_latency_ms 1e-06" in r.fail_reason and "not trained" in r.fail_reason
        assert not (run.root / "members" / r.member_id / "weights.pt").exists()
