"""The Optuna leaderboard: one trial per member with every attribute, idempotent, artifacts, CLI."""
from __future__ import annotations

import json
import math

import optuna
import pytest
from _fake_run import DEPTH, MEMBERS, SEARCH_SPACE, make_fake_run
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from morphnas.search.cli import main
from morphnas.search.state.records import TrialResult
from morphnas.search.state.rundir import RunDir, RunDirError, open_run, storage_url, study_name
from morphnas.search.study.leaderboard import (
    Leaderboard,
    LeaderboardError,
    Row,
    arch_domains,
    find_member,
    rank_rows,
    to_distribution,
)
from morphnas.search.study.publish import Publisher
from morphnas.search.study.rows import mark_front


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_fake_run(tmp_path_factory.mktemp("runs"))


def test_one_trial_per_member_with_all_attributes(fake):
    run, lb, results = fake
    trials = lb.study.get_trials()
    assert [t.user_attrs["member_id"] for t in trials] == [m[0] for m in MEMBERS]
    assert lb.recorded() == {m[0]: i for i, m in enumerate(MEMBERS)}
    for t, r in zip(trials, results):
        u = t.user_attrs
        assert u["parent_id"] == r.parent_id and u["depth"] == DEPTH[r.member_id]
        # raw JSON is kept off the visible attributes (system attrs + an attached record_<m>.json)
        assert "actions" not in u and "extra" not in u
        assert t.system_attrs["morphnas:actions"] == [dict(a) for a in r.actions]
        sizes = (r.params, r.params_mb, r.flops) if r.state == "COMPLETE" else (None, None, None)
        assert (u["params"], u["params_mb"], u["flops"]) == sizes   # a FAIL's size is unknown, not 0
        assert u["preservation_error"] == r.preservation_error
        assert (u["epochs"], u["wall_time"], u["member_path"]) == (r.epochs, r.wall_time, r.member_path)
        assert u["val_acc_history"] == list(r.val_acc_history)
        assert t.system_attrs["morphnas:extra"] == {"attempt": 1}
        assert f"record_{r.member_id}.json" in lb.artifacts(r.member_id)
        assert t.params == {**r.search_params, "first_op": r.actions[0]["op"] if r.actions else "seed",
                            "num_morphs": len(r.actions), "lineage_depth": DEPTH[r.member_id]}
        assert math.isclose((t.datetime_complete - t.datetime_start).total_seconds(), r.wall_time, abs_tol=1e-3)
        if r.state == "COMPLETE":
            assert t.state == TrialState.COMPLETE and t.values == [r.val_acc_history[-1]]
            assert u["val_acc"] == r.val_acc_history[-1]
            assert t.intermediate_values == {i + 1: v for i, v in enumerate(r.val_acc_history)}
            assert "fail_reason" not in u
        else:
            assert t.state == TrialState.FAIL and t.values is None
            assert u["fail_reason"] == "worker raised RuntimeError: loss is NaN"
    # fixed declared domains, identical in every trial (what parameter importance needs)
    t4 = trials[4]
    assert t4.distributions == {"op": CategoricalDistribution(("split", "deepen", "widen")),
                                "stage": IntDistribution(0, 2), "position": FloatDistribution(0.0, 1.0),
                                **arch_domains()}
    assert all(t.distributions[k] == d for t in trials for k, d in arch_domains().items())
    assert t4.user_attrs["ops"] == "deepen@layer3.0.conv1 + split@layer1.0.conv2"
    assert trials[0].params == {"first_op": "seed", "num_morphs": 0, "lineage_depth": 0}
    assert trials[0].user_attrs["ops"] == ""
    assert lb.study.metric_names == ["val_acc"]


def test_recording_is_idempotent_across_reopen(fake):
    run, lb, results = fake
    n = len(lb.study.get_trials())
    assert lb.record(results[2]) == 2
    # a resumed driver opens a new Leaderboard on the same storage: nothing is duplicated
    lb2 = Leaderboard.for_run(run, ["maximize"], ["val_acc"], search_space=SEARCH_SPACE)
    assert lb2.recorded() == lb.recorded()
    for r in results:
        lb2.record(r)
    assert len(lb2.study.get_trials()) == n == len(MEMBERS)


def test_artifacts_attached_to_trials_and_study(fake):
    run, lb, _ = fake
    for mid, _, state, *_ in MEMBERS:
        arts = lb.artifacts(mid)
        if state == "COMPLETE":
            assert sorted(arts) == [f"arch_{mid}.png", f"record_{mid}.json"]
            stored = (run.artifacts / arts[f"arch_{mid}.png"]).read_bytes()
            assert stored == (run.plots / f"arch_{mid}.png").read_bytes() and stored[:4] == b"\x89PNG"
        else:
            assert list(arts) == [f"record_{mid}.json"]
        raw = json.loads((run.artifacts / arts[f"record_{mid}.json"]).read_text())
        assert raw["member_id"] == mid and raw["extra"] == {"attempt": 1}
    study_arts = lb.artifacts()
    assert sorted(study_arts) == ["lineage.png", "pareto.png"]
    for name, aid in study_arts.items():
        assert (run.artifacts / aid).read_bytes() == (run.plots / name).read_bytes()
    # Optuna's own API sees the trial artifacts too
    metas = optuna.artifacts.get_all_artifact_meta(lb.study.get_trials()[1], storage=lb.storage)
    assert sorted((m.filename, m.mimetype) for m in metas) == [("arch_m1.png", "image/png"),
                                                          ("record_m1.json", "application/json")]


def test_upload_artifact_to_finished_trial_replaces_by_name(fake, tmp_path):
    run, lb, _ = fake
    note = tmp_path / "notes.txt"
    note.write_text("first")
    aid = lb.upload_artifact("m2", note)
    note.write_text("second")
    assert lb.upload_artifact("m2", note) == aid
    assert lb.artifacts("m2") == {"arch_m2.png": lb.artifacts("m2")["arch_m2.png"],
                                  "record_m2.json": lb.artifacts("m2")["record_m2.json"], "notes.txt": aid}
    assert (run.artifacts / aid).read_text() == "second"
    with pytest.raises(LeaderboardError, match="has no trial yet"):
        lb.upload_artifact("nobody", note)


def test_multi_objective_keeps_curve_in_user_attrs(tmp_path, capsys):
    run, lb, results = make_fake_run(tmp_path, "pareto", multi=True, publish=False)
    trials = lb.study.get_trials()
    assert [d.name for d in lb.study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert all(t.intermediate_values == {} for t in trials)
    assert trials[4].user_attrs["val_acc_history"] == [0.70, 0.75]
    assert trials[4].values == [0.75, float(results[4].params)]
    rows = lb.rows()
    assert [r.member_id for r in rows] == ["m4", "m1", "m2", "m0", "m3"]
    # every member has the same architecture size here, so only the most accurate is undominated
    assert [r.pareto for r in rows] == [True, False, False, False, False]
    assert main(["leaderboard", str(run.root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "study 'pareto' (maximize, minimize): 5 trial(s), showing 5"
    assert lines[1].split()[-4:] == ["obj:val_acc", "obj:params", "pareto", "state"]
    assert lines[2].split()[-4:] == ["0.75", str(results[4].params), "*", "COMPLETE"]
    assert lines[3].split()[-3:] == ["0.625", str(results[1].params), "COMPLETE"]


def test_rank_rows_minimize_and_pareto():
    def row(i, values, state="COMPLETE"):
        return Row(trial=i, member_id=f"m{i}", parent_id=None, depth=0, state=state, values=values, ops="",
                   val_acc=None, params=None, params_mb=None, flops=None, preservation_error=None, member_path="")
    rows = [row(0, (0.3, 5.0)), row(1, (0.1, 9.0)), row(2, None, "FAIL"), row(3, (0.1, 7.0)), row(4, (0.2, 1.0))]
    ranked = mark_front(rank_rows(rows, ["minimize", "minimize"]), ["minimize", "minimize"])
    assert [(r.trial, r.rank, r.pareto) for r in ranked] == [
        (1, 1, False), (3, 2, True), (4, 3, True), (0, 4, False), (2, None, False)]


def test_rank_rows_ties_follow_the_population_rule():
    """Equal metric: fewer parameters first, then the older trial; the same member Population.best
    (and so the final stage) picks."""
    from morphnas.search.state.population import Member, Population

    def row(i, value, params):
        return Row(trial=i, member_id=f"m{i}", parent_id=None, depth=0, state="COMPLETE", values=(value,), ops="",
                   val_acc=value, params=params, params_mb=None, flops=None, preservation_error=None, member_path="")
    rows = [row(0, 0.5, 100), row(1, 1.0, 300), row(2, 1.0, 200), row(3, 1.0, 200)]
    assert [r.trial for r in rank_rows(rows, ["maximize"])] == [2, 3, 1, 0]
    pop = Population()
    for r in rows:
        pop.add(Member(id=r.member_id, parent_id=None, depth=0, born=r.trial, val_acc=r.values[0], params=r.params,
                       flops=0, path=r.member_id))
    assert pop.best().id == rank_rows(rows, ["maximize"])[0].member_id == "m2"


def test_bad_results_are_refused_or_failed(tmp_path):
    run = RunDir.at(tmp_path / "r").make()
    lb = Leaderboard.for_run(run, ["maximize"], search_space=SEARCH_SPACE)
    with pytest.raises(LeaderboardError, match=r"2 objective value\(s\)"):
        lb.record(TrialResult("a", None, 0, "COMPLETE", values=(0.5, 3.0)))
    with pytest.raises(LeaderboardError, match="state must be"):
        lb.record(TrialResult("c", None, 0, "RUNNING"))
    assert lb.study.get_trials() == []
    # a param outside its domain must not cost the member its trial: kept aside, with a warning
    with pytest.warns(UserWarning, match=r"stage=7 is outside its domain"):
        n = lb.record(TrialResult("b", None, 0, "COMPLETE", values=(0.5,), search_params={"stage": 7, "op": "split"}))
    t = lb.trial(n)
    assert t.params == {"op": "split", "first_op": "seed", "num_morphs": 0, "lineage_depth": 0}
    assert t.user_attrs["params_outside_domain"] == {"stage": 7}
    n = lb.record(TrialResult("d", None, 0, "COMPLETE", values=(float("nan"),)))
    t = lb.trial(n)
    assert t.state == TrialState.FAIL and t.user_attrs["fail_reason"] == "objective value(s) not finite: [nan]"
    # an undeclared search param is still recorded, with a one-point domain
    n = lb.record(TrialResult("e", None, 0, "COMPLETE", values=(0.5,), search_params={"k1": 3, "mode": "dense"}))
    assert lb.trial(n).distributions == {"k1": IntDistribution(3, 3), "mode": CategoricalDistribution(("dense",)),
                                         **arch_domains()}
    with pytest.raises(LeaderboardError, match=r"directions \['maximize'\], the run asks for \['minimize'\]"):
        Leaderboard.for_run(run, ["minimize"])
    with pytest.raises(LeaderboardError, match="2 objective names"):
        Leaderboard.for_run(run, ["maximize"], ["a", "b"])


def test_to_distribution():
    assert to_distribution("k", [1, 3, 5]) == CategoricalDistribution((1, 3, 5))
    assert to_distribution("s", {"low": 0, "high": 4, "step": 2}) == IntDistribution(0, 4, step=2)
    assert to_distribution("p", {"low": 1e-3, "high": 1.0, "log": True}) == FloatDistribution(1e-3, 1.0, log=True)
    with pytest.raises(LeaderboardError, match=r"`low <= high` must hold, but got \(low=3, high=1\)"):
        to_distribution("s", {"low": 3, "high": 1})
    with pytest.raises(LeaderboardError, match="empty list"):
        to_distribution("s", [])


def test_storage_and_study_name_come_from_config(tmp_path):
    run = RunDir.at(tmp_path / "cfg").make()
    assert storage_url(run) == f"sqlite:///{run.root}/study.db" and study_name(run) == "cfg"
    run.config_path.write_text("name: mine\nstorage: sqlite:///db/other.db\n")
    assert storage_url(run) == f"sqlite:///{run.root}/db/other.db" and study_name(run) == "mine"
    run.config_path.write_text("storage: 5\n")
    with pytest.raises(RunDirError, match="'storage' must be an Optuna storage URL"):
        storage_url(run)
    with pytest.raises(RunDirError, match="does not exist"):
        open_run(tmp_path / "nope")
    with pytest.raises(RunDirError, match="not a morphnas run directory"):
        open_run(tmp_path)


# ----------------------------------------------------------------------------- CLI
def test_cli_table(fake, capsys):
    run, _, results = fake
    assert main(["leaderboard", str(run.root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "study 'fake' (maximize): 5 trial(s), showing 5"
    assert lines[1].split() == ["rank", "trial", "member", "parent", "ops", "val_acc", "params", "FLOPs", "state"]
    p4 = f"{results[4].params:,}"
    assert lines[2].split() == ["1", "4", "m4", "m1", "deepen@layer3.0.conv1", "+", "split@layer1.0.conv2",
                                "0.7500", p4, f"{results[4].flops:,}", "COMPLETE"]
    assert [ln.split()[:3] for ln in lines[3:7]] == [["2", "1", "m1"], ["3", "2", "m2"], ["4", "0", "m0"],
                                                     ["-", "3", "m3"]]
    assert lines[6].endswith("FAIL: worker raised RuntimeError: loss is NaN")
    assert lines[5].split()[4] == "(seed)"


def test_cli_json_and_top(fake, capsys):
    run, _, results = fake
    assert main(["leaderboard", str(run.root), "--top", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(d["rank"], d["trial"], d["member"], d["parent"], d["val_acc"]) for d in data] == [
        (1, 4, "m4", "m1", 0.75), (2, 1, "m1", "m0", 0.625)]
    assert data[0]["params"] == results[4].params and data[0]["flops"] == results[4].flops
    assert data[0]["ops"] == "deepen@layer3.0.conv1 + split@layer1.0.conv2"


@pytest.mark.parametrize("argv,msg", [
    (["leaderboard", "/nonexistent/run"], "run directory '/nonexistent/run' does not exist"),
    (["leaderboard", "{tmp}"], "is not a morphnas run directory"),
    (["leaderboard", "{tmp}/cfgonly"], "the run has no study yet"),
    (["leaderboard", "{run}", "--top", "0"], "--top must be a positive number"),
])
def test_cli_errors_are_one_line(fake, tmp_path, capsys, argv, msg):
    (tmp_path / "cfgonly").mkdir()
    (tmp_path / "cfgonly" / "config.yaml").write_text("name: x\n")
    argv = [a.format(tmp=tmp_path, run=fake[0].root) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("morphnas leaderboard: error: ") and msg in err
    assert not (tmp_path / "cfgonly" / "study.db").exists()  # reading must not create a study


def test_rerun_and_unloadable_member(tmp_path, capsys):
    run = RunDir.at(tmp_path / "rr").make()
    lb = Leaderboard.for_run(run, ["maximize"], ["val_acc"])
    pub = Publisher(lb)
    bad = TrialResult("m0", None, 0, "COMPLETE", values=(0.5,), val_acc_history=(0.5,), member_path="members/m0",
                      extra={"attempt": 2, "rerun": True, "rerun_reason": "its first attempt was running"})
    with pytest.warns(UserWarning, match="no architecture drawing for member m0: LoadError"):
        assert pub.record(bad) == 0  # the trial is recorded even though its network cannot be drawn
    assert list(lb.artifacts("m0")) == ["record_m0.json"] and sorted(lb.artifacts()) == ["lineage.png", "pareto.png"]
    pub.record(TrialResult("m1", "m0", 1, "FAIL", val_acc_history=(), extra={"rerun": True, "early_stopped": True},
                          fail_reason="interrupted twice"))
    assert main(["leaderboard", str(run.root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].endswith("COMPLETE (re-run)")
    assert lines[3].endswith("FAIL (re-run, early stop): interrupted twice")


def test_cli_plots_redraws_files_without_writing_the_study(fake, capsys):
    run, lb, _ = fake
    before = lb.storage.get_study_system_attrs(lb.study_id)
    (run.plots / "lineage.png").unlink()
    assert main(["leaderboard", str(run.root), "--plots"]) == 0
    assert f"plots: {run.plots / 'lineage.png'}, {run.plots / 'pareto.png'}" in capsys.readouterr().out
    assert (run.plots / "lineage.png").read_bytes()[:4] == b"\x89PNG"
    assert lb.storage.get_study_system_attrs(lb.study_id) == before


# ----------------------------------------------------------------------------- issue 13/15/16 items
class _Job:
    """What the driver passes to open_trial (a Job's fields)."""

    def __init__(self, mid, parent=None, depth=0, actions=(), search_params=None):
        self.member_id, self.parent_id, self.depth = mid, parent, depth
        self.member_path, self.search_params, self._actions = f"members/{mid}", search_params or {}, actions

    def action_dicts(self):
        return tuple(self._actions)


def test_trial_numbers_fixed_at_launch_whatever_the_finish_order(tmp_path):
    """m<i> is trial i although m2 finishes before m1; a resumed leaderboard keeps them."""
    run = RunDir.at(tmp_path / "r").make()
    lb = Leaderboard.for_run(run, ["maximize"], search_space=SEARCH_SPACE)
    split = ({"op": "split", "site": "layer1.0.conv1"},)
    assert [lb.open_trial(_Job(m, None if m == "m0" else "m0", 0 if m == "m0" else 1, () if m == "m0" else split,
                               None if m == "m0" else {"op": "split", "stage": 0, "position": 0.5}))
            for m in ("m0", "m1", "m2")] == [0, 1, 2]
    assert lb.recorded() == {} and lb.rows() == [] and [r.state for r in lb.rows(running=True)] == ["RUNNING"] * 3
    assert lb.record(TrialResult("m0", None, 0, "COMPLETE", values=(0.5,), val_acc_history=(0.5,))) == 0
    assert lb.record(TrialResult("m2", "m0", 1, "COMPLETE", values=(0.7,), actions=split,
                                 val_acc_history=(0.6, 0.7), params=10, flops=20)) == 2
    again = Leaderboard.for_run(run, ["maximize"], search_space=SEARCH_SPACE)     # a resume
    assert again.open_trial(_Job("m1", "m0", 1, split)) == 1                      # the re-run keeps its trial
    assert again.record(TrialResult("m1", "m0", 1, "FAIL", actions=split, fail_reason="diverged")) == 1
    assert again.record(TrialResult("m1", "m0", 1, "FAIL", actions=split, fail_reason="diverged")) == 1
    trials = again.study.get_trials()
    assert [(t.number, t.user_attrs["member_id"], t.state) for t in trials] == [
        (0, "m0", TrialState.COMPLETE), (1, "m1", TrialState.FAIL), (2, "m2", TrialState.COMPLETE)]
    assert trials[2].values == [0.7] and trials[2].intermediate_values == {1: 0.6, 2: 0.7}
    assert trials[2].params == {"op": "split", "stage": 0, "position": 0.5, "first_op": "split", "num_morphs": 1,
                                "lineage_depth": 1}
    assert trials[1].user_attrs["fail_reason"] == "diverged" and trials[1].user_attrs["params"] is None
    assert again.recorded() == {"m0": 0, "m1": 1, "m2": 2}
    assert find_member(run, "m2").trial == 2
    with pytest.raises(LeaderboardError, match=r"--member 'm22': the run has no such member; did you mean 'm2'\?"):
        find_member(run, "m22")


def test_fail_rows_show_dash_and_null_for_size(fake, capsys):
    run, lb, results = fake
    fail = next(r for r in lb.rows() if r.state == "FAIL")
    assert (fail.params, fail.params_mb, fail.flops) == (None, None, None)
    assert main(["leaderboard", str(run.root), "--json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out) if r["state"] == "FAIL")
    assert (row["params"], row["flops"]) == (None, None)
    assert main(["leaderboard", str(run.root)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if " m3 " in ln)
    assert line.split()[5:8] == ["-", "-", "-"]   # val_acc, params, FLOPs


def test_pareto_flag_is_the_front_plotted_in_pareto_png(fake, capsys):
    """Single-objective runs too: the flag used to be false everywhere while the plot drew a front."""
    from morphnas.search.study.rows import front_rows
    run, lb, _ = fake
    rows = lb.rows()
    done, front = front_rows(rows, "params")        # what plots.pareto_front draws
    assert {r.member_id for r in rows if r.pareto} == {done[i].member_id for i in front}
    assert any(r.pareto for r in rows)
    assert main(["leaderboard", str(run.root), "--json"]) == 0
    flags = {r["member"]: r["pareto"] for r in json.loads(capsys.readouterr().out)}
    assert flags == {r.member_id: r.pareto for r in rows}


def test_trial_note_shows_member_parent_ops_sizes_and_drawing(fake):
    from optuna_dashboard._note import get_note_from_system_attrs
    run, lb, results = fake
    attrs = lb.storage.get_study_system_attrs(lb.study_id)
    note = get_note_from_system_attrs(attrs, lb.trial_id("m4"))["body"]
    r = results[4]
    assert note.startswith("## m4 (trial 4) ← m1\n")
    assert "`deepen` at `layer3.0.conv1`, `split` at `layer1.0.conv2`" in note
    assert f"| params | {r.params:,} |" in note and f"| FLOPs (MACs) | {r.flops:,} |" in note
    assert "| val acc | 0.7500 |" in note and "| preservation error | 4e-07 |" in note
    art = lb.artifacts("m4")["arch_m4.png"]
    assert f"](/artifacts/{lb.study_id}/{lb.trial_id('m4')}/{art})" in note
    fail = get_note_from_system_attrs(attrs, lb.trial_id("m3"))["body"]
    assert "| params | - |" in fail and "FAIL — worker raised" in fail


def test_optuna_info_lines_quiet_unless_verbose(tmp_path, monkeypatch):
    from morphnas.search.study.storage import quiet_optuna
    run = RunDir.at(tmp_path / "q").make()
    Leaderboard.for_run(run, ["maximize"])
    assert optuna.logging.get_verbosity() == optuna.logging.WARNING
    monkeypatch.setenv("MORPHNAS_VERBOSE", "1")
    quiet_optuna()
    assert optuna.logging.get_verbosity() == optuna.logging.INFO
    monkeypatch.delenv("MORPHNAS_VERBOSE")
    quiet_optuna()
