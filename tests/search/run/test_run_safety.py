"""Runs are safe to fail and resume; outputs never overwrite silently; paths stay inside the run.

No Ray here: a fake run (tests/_fake_run.py) stands in for a finished search, and the driver's
``run`` is replaced where only the command's own checks and rewrites are under test.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _checks import assert_one_line, snapshot  # noqa: E402
from _fake_run import make_fake_run  # noqa: E402

from morphnas.search.cli import main  # noqa: E402
from morphnas.search.config import config_from_dict, save_config  # noqa: E402
from morphnas.search.state.records import TrialResult  # noqa: E402
from morphnas.search.state.runstate import RunState  # noqa: E402

CFG = {"name": "fake", "seed": {"network": "tiny_resnet", "epochs": 1}, "data": {"dataset": "digits"},
       "actions": {"ops": {"deepen": {}, "widen": {}}}, "budget": {"trials": 2}, "final": {"epochs": 1}}


@pytest.fixture(scope="module")
def _pristine_run(tmp_path_factory):
    """A fake run with a real config.yaml and a run state whose results are the fake members, built
    once (about 5 s: every member is drawn and the run plots are redrawn after each) and kept as a
    pristine copy that :func:`run` restores before every test."""
    runs = tmp_path_factory.mktemp("runs")
    r, _, results = make_fake_run(runs, "fake")
    save_config(config_from_dict({**CFG, "runs_dir": str(runs)}), r.config_path)
    from morphnas.search.state.population import Member, Population
    pop = Population()
    for i, res in enumerate(results):
        if res.state == "COMPLETE":
            pop.add(Member.from_result(res, born=i))
    RunState(status="final", next_index=5, started=4, population=pop, results=list(results)).save(r.root)
    pristine = tmp_path_factory.mktemp("pristine") / "runs"
    shutil.copytree(runs, pristine)
    return r, pristine


@pytest.fixture
def run(_pristine_run):
    """The fake run, byte for byte as built, at the same path (the study and the run state record
    absolute member paths), whatever the previous test changed, removed or added next to it."""
    r, pristine = _pristine_run
    shutil.rmtree(r.root.parent)
    shutil.copytree(pristine, r.root.parent)
    return r


@pytest.fixture
def captured(monkeypatch):
    """Driver construction and run are recorded instead of starting Ray."""
    from morphnas.search.run import driver as loop
    seen: dict = {}
    real_init = loop.Driver.__init__

    def init(self, cfg, *a, **k):
        seen["cfg"], seen["kwargs"] = cfg, k
        real_init(self, cfg, *a, **k)

    def fake_run(self, resume=False):
        seen["resume"] = resume
        return 0
    monkeypatch.setattr(loop.Driver, "__init__", init)
    monkeypatch.setattr(loop.Driver, "run", fake_run)
    return seen


def _tamper(root: Path, **changes) -> None:
    d = json.loads((root / "run_state.json").read_text())
    for key, value in changes.items():
        if key == "population_path":
            d["population"][0]["path"] = value
        elif key == "pending":
            d["pending"] = {"m9": {"kind": "child", "member_id": "m9", "member_path": value}}
    (root / "run_state.json").write_text(json.dumps(d))


@pytest.mark.parametrize("changes", [{"population_path": "../../../x"}, {"pending": "../../../x"},
                                     {"population_path": "/etc"}])
def test_tampered_run_state_is_refused(run, capsys, captured, changes):
    _tamper(run.root, **changes)
    before = snapshot(run.root.parent)
    assert_one_line(main(["resume", str(run.root)]), capsys.readouterr().err, "is corrupt", "outside the run")
    assert snapshot(run.root.parent) == before and "cfg" not in captured


def test_resume_set_rewrites_whitelisted_keys_only(run, capsys, captured):
    before = snapshot(run.root)
    assert_one_line(main(["resume", str(run.root), "--set", "actions.ops={split: {}}"]), capsys.readouterr().err,
                    "cannot change in a started run")
    assert_one_line(main(["resume", str(run.root), "--set", "data.dataset=mnist"]), capsys.readouterr().err,
                    "'data.dataset' cannot change")
    assert_one_line(main(["resume", str(run.root), "--set", "seed.lr=0.01"]), capsys.readouterr().err,
                    "the seed (m0) already finished")
    assert snapshot(run.root) == before
    rc = main(["resume", str(run.root), "--set", "final.lr=0.001", "--set", "budget.trials=3", "--verbose"])
    out = capsys.readouterr().out
    assert rc == 0 and "final.lr None -> 0.001" in out and "budget.trials 2 -> 3" in out
    saved = yaml.safe_load(run.config_path.read_text())
    assert saved["final"]["lr"] == 0.001 and saved["budget"]["trials"] == 3
    assert captured["cfg"].final.lr == 0.001 and captured["resume"] is True and captured["kwargs"]["verbose"] is True
    assert not list(run.root.glob(".config.yaml.tmp*"))


def test_resume_set_seed_before_it_finished_updates_the_queued_job(run, capsys, captured):
    from morphnas.search.config import load_config
    from morphnas.search.trial.jobs import seed_job
    cfg = load_config(run.config_path)
    state = RunState(queue=[seed_job(cfg)], next_index=1)
    state.save(run.root)
    assert main(["resume", str(run.root), "--set", "seed.lr=0.01"]) == 0
    assert "seed.lr 0.1 -> 0.01" in capsys.readouterr().out
    assert RunState.load(run.root).queue[0].train["lr"] == 0.01
    # a seed that failed is not re-run: the error says how to start over
    state = RunState(results=[TrialResult("m0", None, 0, "FAIL", fail_reason="training loss became nan",
                                          member_path="members/m0")], next_index=1)
    state.save(run.root)
    assert_one_line(main(["resume", str(run.root), "--set", "seed.lr=0.001"]), capsys.readouterr().err,
                    "failed", "morphnas remove")


def test_remove(run, tmp_path, capsys):
    assert_one_line(main(["remove", str(run.root)]), capsys.readouterr().err, "has finished member(s) m0")
    assert run.root.is_dir()
    assert_one_line(main(["remove", str(tmp_path)]), capsys.readouterr().err, "not a morphnas run directory")
    RunState(results=[TrialResult("m0", None, 0, "FAIL", member_path="members/m0")]).save(run.root)
    assert main(["remove", str(run.root)]) == 0 and not run.root.exists()
    r2, _, _ = make_fake_run(tmp_path, "other")
    RunState(results=[TrialResult("m0", None, 0, "COMPLETE")]).save(r2.root)
    assert main(["remove", str(r2.root), "--force"]) == 0 and not r2.root.exists()


def test_final_stage_divergence_says_how_to_resume(run):
    from morphnas.morphism.errors import MorphnasError
    from morphnas.search.run.final import final_stage
    cfg = config_from_dict({**CFG, "final": {"epochs": 1, "lr": 1e12}, "runs_dir": str(run.root.parent)})
    pop = RunState.load(run.root).population
    with pytest.raises(MorphnasError, match=r"fix it with: morphnas resume .*fake --set final.lr=1e\+11"):
        final_stage(cfg, run, pop, echo=lambda s: None)
    assert not run.best.exists()


def test_export_by_member_and_force_replaces_atomically(run, tmp_path, capsys):
    out = tmp_path / "e"
    assert main(["export", str(run.root), "--member", "m2", "-o", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["member"] == "m2" and d["trial"] == 2 and d["directory"] == str(out)
    (out / "stale.txt").write_text("old")
    assert_one_line(main(["export", str(run.root), "--member", "m4", "-o", str(out)]), capsys.readouterr().err,
                    "already exists; pass --force")
    assert main(["export", str(run.root), "--member", "m4", "-o", str(out), "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["member"] == "m4"
    assert not (out / "stale.txt").exists() and json.loads((out / "export.json").read_text())["member"]["member_id"] == "m4"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".e.")]


def test_leaderboard_member(run, capsys):
    assert main(["leaderboard", str(run.root), "--member", "m2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["member"] for r in rows] == ["m2"]


def test_study_member_path_outside_the_run_is_refused(run, tmp_path, capsys):
    import sqlite3
    con = sqlite3.connect(run.study_db)     # a finished trial cannot be edited through Optuna: edit the file
    n = con.execute("UPDATE trial_user_attributes SET value_json = ? WHERE key = 'member_path' AND trial_id = "
                    "(SELECT trial_id FROM trials WHERE number = 2)", (json.dumps("../../../../etc"),)).rowcount
    con.commit()
    con.close()
    assert n == 1
    assert_one_line(main(["export", str(run.root), "--trial", "2", "-o", str(tmp_path / "e")]),
                    capsys.readouterr().err, "is corrupt", "outside the run")
    assert not (tmp_path / "e").exists()


def test_new_morph_draw_replace_only_with_force(tmp_path, capsys):
    net = tmp_path / "net"
    assert main(["new", "tiny_resnet", "-o", str(net)]) == 0
    spec = (net / "network.json").read_text()
    assert main(["new", "tiny_resnet", "-o", str(net), "--seed", "3"]) == 2
    assert (net / "network.json").read_text() == spec
    assert main(["new", "tiny_resnet", "-o", str(net), "--seed", "3", "--force"]) == 0
    assert (net / "network.json").read_text() != spec or (net / "weights.pt").exists()
    # morph -o equal to its input: refused, then replaced by the child with --force
    assert main(["morph", str(net), "--op", "widen", "-o", str(net)]) == 2
    from morphnas.morphism.serialize import load_network
    n_before = load_network(net).num_params()
    assert main(["morph", str(net), "--op", "widen", "-o", str(net), "--force"]) == 0
    assert load_network(net).num_params() > n_before
    pic = tmp_path / "a.svg"
    pic.write_text("old")
    assert main(["describe", "tiny_resnet", "--draw", str(pic)]) == 2 and pic.read_text() == "old"
    assert main(["describe", "tiny_resnet", "--draw", str(pic), "--force"]) == 0 and "<svg" in pic.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.svg", "net"]


def test_tight_max_params_names_the_constraint():
    import numpy as np

    from morphnas.search.strategies.mutator import SpaceMutator
    from morphnas.spaces.actions import ActionSpace
    from morphnas.spaces.registry import create_network
    net = create_network("tiny_resnet")
    space = ActionSpace.from_dict({"ops": {"deepen": {}, "widen": {}},
                                   "constraints": {"max_params": net.num_params() + 10}})
    mut = SpaceMutator(space, lambda mid: net)
    assert mut.random_actions("m0", np.random.default_rng(0)) is None
    assert "max_params" in mut.last_refusal


def test_search_verbose_reaches_the_driver(tmp_path, monkeypatch, captured):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**CFG, "name": "v"}))
    assert main(["search", str(tmp_path / "c.yaml"), "--verbose"]) == 0
    assert captured["kwargs"]["verbose"] is True and captured["resume"] is False
