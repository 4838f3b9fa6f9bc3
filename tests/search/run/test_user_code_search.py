"""Your own data, trainer and ops in a real search on Ray Tune: from a Python script and from YAML.

Both runs are killed with -9 in the middle of their trials and resumed: every trial finished before
the kill is unchanged, and the run ends with exactly its budget of trials, one per member. The
script's Dataset class and trainer live in its ``__main__`` (handed to the workers by Ray); the YAML
run names them by import path from a module of the user's (imported by every worker).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from test_resume import finished_trials, state, stop_group, wait_until

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
BUDGET = 4

# A user's module: a Dataset the project does not name, a factory, and a trainer (Adam, label smoothing).
USERLIB = '''
import torch
from torch.utils.data import Dataset


class Quadrants(Dataset):
    """1x8x8 noise images; the class is the brightest quadrant."""

    def __init__(self, n=240, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 1, 8, 8, generator=g)
        q = self.x[:, 0].unfold(1, 4, 4).unfold(2, 4, 4).sum((-1, -2)).flatten(1)
        self.y = q.argmax(1)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def make(n=240):
    return {"train": Quadrants(n, 0), "test": Quadrants(60, 1), "class_names": ["tl", "tr", "bl", "br"]}


class AdamTrainer:
    def __init__(self, lr=0.003):
        self.lr = lr

    def configure_optimizer(self, model, ctx):
        return torch.optim.Adam(model.parameters(), lr=self.lr)

    def train_epoch(self, model, ctx):
        total = 0.0
        for x, y in ctx.train_batches():
            out = model(x)
            loss = torch.nn.functional.cross_entropy(out, y, label_smoothing=0.05) + ctx.distill_term(out, x)
            ctx.check_finite(loss)
            ctx.optimizer.zero_grad()
            loss.backward()
            ctx.optimizer.step()
            total += loss.item()
        return total / max(1, ctx.batches_seen)
'''

CONFIG = {
    "name": "u", "random_seed": 2,
    "seed": {"network": "tiny_resnet", "epochs": 2, "lr": 0.1},
    "data": {"batch_size": 32},
    "actions": {"ops": {"deepen": {}, "widen": {"factor": [2.0]}}, "actions_per_child": 1},
    "strategy": {"name": "evolution", "population_size": 3, "sample_size": 2},
    "budget": {"trials": BUDGET}, "finetune": {"epochs": 2},
    "resources": {"cpus_per_trial": 1, "max_concurrent": 2}, "ray": {"num_cpus": 2},
    "final": {"epochs": 1},
}

# A script that keeps its data and trainer in __main__ (not importable by the workers by name).
SCRIPT = '''
import json, sys
import morphnas
{userlib}

if __name__ == "__main__":
    config = json.loads(sys.argv[2])
    if sys.argv[1] == "search":
        result = morphnas.run_search(config, data=make, trainer=AdamTrainer())
    else:
        result = morphnas.resume(sys.argv[3], data=make, trainer=AdamTrainer())
    print("RESULT " + json.dumps({{"status": result.status, "metric": result.metric, "value": result.value,
                                  "best": result.best.member_id, "rows": len(result.rows),
                                  "test": (result.final or {{}}).get("test_acc")}}), flush=True)
'''


def _env(extra_path=()):
    path = os.pathsep.join([*map(str, extra_path), os.environ.get("PYTHONPATH", "")]).strip(os.pathsep)
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": path}


def _start(argv, log, cwd, extra_path=()):
    return subprocess.Popen([sys.executable, *argv], stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                            env=_env(extra_path), start_new_session=True)


def _kill_mid_search(p, run, log):
    try:
        wait_until(p, run, 1, log)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        stop_group(p)
    s = state(run)
    assert s["status"] == "search" and s["pending"], "killed while trials were running"
    return s


def _check_nothing_lost(url, name, before):
    after = finished_trials(url, name)
    assert sorted(after, key=lambda m: int(m[1:])) == [f"m{i}" for i in range(BUDGET + 1)]
    assert len(optuna.load_study(study_name=name, storage=url).get_trials()) == BUDGET + 1
    for mid, record in before.items():
        assert after[mid][:3] == record[:3], f"{mid} finished before the kill and must be unchanged"
    return after


def test_a_python_script_with_its_own_dataset_and_trainer_survives_kill_9(tmp_path):
    script = tmp_path / "my_search.py"
    script.write_text(SCRIPT.format(userlib=USERLIB))
    config = json.dumps({**CONFIG, "runs_dir": str(tmp_path / "runs")})
    run = tmp_path / "runs" / "u"
    url = f"sqlite:///{run / 'study.db'}"
    log = open(tmp_path / "log.txt", "w")
    p = _start([str(script), "search", config], log, tmp_path)
    s = _kill_mid_search(p, run, log)
    before = finished_trials(url, "u")
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["data"]["dataset"] == "python:__main__.make"
    assert recorded["trainer"] == "python:__main__.AdamTrainer.instance"   # an object, handed over

    # resume from the CLI cannot have the script's objects: one line saying how to resume
    out = subprocess.run([sys.executable, "-m", "morphnas.search", "resume", str(run)], capture_output=True,
                         text=True, env=_env(), cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and "pass it again: morphnas.resume(" in out.stderr and "Traceback" not in out.stderr
    assert state(run)["pending"] == s["pending"], "a refused resume changes nothing"

    p = _start([str(script), "resume", config, str(run)], log, tmp_path)
    try:
        assert p.wait(timeout=400) == 0, (tmp_path / "log.txt").read_text()[-3000:]
    finally:
        stop_group(p)
        log.close()
    text = (tmp_path / "log.txt").read_text()
    result = json.loads(text.split("RESULT ", 1)[1].splitlines()[0])
    assert result["status"] == "finished" and result["metric"] == "val_acc" and result["rows"] == BUDGET + 1
    assert 0.25 < result["value"] <= 1.0 and result["test"] is not None
    after = _check_nothing_lost(url, "u", before)
    assert all(after[m][0] == "COMPLETE" for m in after)
    assert state(run)["status"] == "finished"


RECORDER = '''
import json
from ray.tune import Callback


class Recorder(Callback):
    """A team's own Ray Tune callback: every reported result, one JSON line."""

    def __init__(self, path):
        self.path = path

    def on_trial_result(self, iteration, trials, trial, result, **info):
        with open(self.path, "a") as f:
            f.write(json.dumps({"trial": trial.trial_id, "val_acc": result.get("val_acc")}) + "\\n")
'''


def test_yaml_import_paths_data_trainer_op_and_trackers_survive_kill_9(tmp_path):
    (tmp_path / "userlib.py").write_text(USERLIB + RECORDER)
    mlruns = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = {**CONFIG, "name": "y", "runs_dir": str(tmp_path / "runs"),
           "data": {"dataset": "userlib:make", "options": {"n": 200}, "batch_size": 32},
           "trainer": "userlib:AdamTrainer", "trainer_options": {"lr": 0.004},
           "actions": {"ops": {"_user_op_example:ScaleIdentity": {"power": [1, 2]}, "widen": {"factor": [2.0]}},
                       "actions_per_child": 1},
           "ray": {"num_cpus": 2, "callbacks": ["mlflow", "userlib:Recorder"],
                   "callback_options": {"mlflow": {"tracking_uri": mlruns, "experiment_name": "morphnas-y"},
                                        "userlib:Recorder": {"path": str(tmp_path / "seen.jsonl")}}}}
    (tmp_path / "y.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "runs" / "y"
    url = f"sqlite:///{run / 'study.db'}"
    ops_dir = REPO / "tests" / "morphism"   # where the user's op module lives (a package of theirs)
    log = open(tmp_path / "log.txt", "w")
    p = _start(["-m", "morphnas.search", "search", "y.yaml"], log, tmp_path, [ops_dir])
    _kill_mid_search(p, run, log)
    before = finished_trials(url, "y")
    p = _start(["-m", "morphnas.search", "resume", str(run)], log, tmp_path, [ops_dir])
    try:
        assert p.wait(timeout=400) == 0, (tmp_path / "log.txt").read_text()[-3000:]
    finally:
        stop_group(p)
        log.close()
    after = _check_nothing_lost(url, "y", before)
    ops = [rec[2].get("ops", "") for rec in after.values()]
    assert any("scale_identity" in o for o in ops), f"the user's op took part in the search: {ops}"
    assert all(after[m][0] == "COMPLETE" for m in after), {m: r[2].get("fail_reason") for m, r in after.items()}
    # the trackers a team already uses: Ray Tune's MLflow logger (a local SQLite store) and their own callback
    seen = [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
    assert len({r["trial"] for r in seen}) >= BUDGET and all(0 <= r["val_acc"] <= 1 for r in seen)
    import mlflow
    client = mlflow.tracking.MlflowClient(tracking_uri=mlruns)
    exp = client.get_experiment_by_name("morphnas-y")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) >= BUDGET, len(runs)
    assert all("val_acc" in r.data.metrics for r in runs if r.info.status == "FINISHED")
    assert not [r.info.run_name for r in runs if r.info.run_name.startswith("hold")], "holds are not trials"
    assert {r.info.run_name.split("_")[0] for r in runs if r.info.status == "FINISHED"} >= {"m0", "m3", "m4"}


def test_csv_regression_from_the_cli_names_its_metric_everywhere_and_exports(tmp_path, capsys):
    """configs/csv_regression.yaml, shortened: the mlp seed on a CSV table, RMSE minimised."""
    import importlib.util

    import numpy as np
    import torch
    from _wsgi import call

    from morphnas.morphism.compile import compile_network
    from morphnas.morphism.serialize import load_network
    from morphnas.search.state.rundir import RunDir
    from morphnas.search.study.dashboard import dashboard_app

    run = tmp_path / "runs" / "csv_regression"
    overrides = ["budget.trials=2", "seed.epochs=10", "finetune.epochs=2", "final.epochs=2",
                 f"runs_dir={tmp_path / 'runs'}"]
    argv = ["-m", "morphnas.search", "search", str(REPO / "configs" / "csv_regression.yaml")]
    for o in overrides:
        argv += ["--set", o]
    out = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=REPO, env=_env(), timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "val_rmse" in out.stdout

    # the study minimises val_rmse, in the target's units
    study = optuna.load_study(study_name="csv_regression", storage=f"sqlite:///{run / 'study.db'}")
    assert study.metric_names[0] == "val_rmse" and study.directions[0].name == "MINIMIZE"
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len(done) == 3 and all(30 < t.values[0] < 120 for t in done), [t.values for t in done]
    report = json.loads((run / "best" / "report.json").read_text())
    assert report["metric"] == "val_rmse" and report["direction"] == "minimize"
    assert 30 < report["test_rmse"] < 120

    from morphnas.search.cli import main  # in-process from here on: no interpreter start-up per command
    capsys.readouterr()
    assert main(["leaderboard", str(run)]) == 0
    table = capsys.readouterr().out
    assert "val_rmse" in table.splitlines()[0] + table.splitlines()[1], table

    app = dashboard_app(RunDir.at(run))
    sid = json.loads(call(app, "/api/studies")[2])["study_summaries"][0]["study_id"]
    detail = json.loads(call(app, f"/api/studies/{sid}")[2])
    assert detail["objective_names"][0] == "val_rmse"
    assert detail["directions"][0] == "minimize"

    # the export predicts in plain torch, from raw CSV rows, in the target's units
    exp = tmp_path / "export"
    assert main(["export", str(run), "-o", str(exp), "--onnx"]) == 0, capsys.readouterr()
    spec = importlib.util.spec_from_file_location("exported_loader", exp / "load_model.py")
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)
    model = loader.load(exp)
    pre = model.preprocessing
    assert pre["task"] == "regression" and pre["metric"] == {"name": "val_rmse", "direction": "minimize"}
    assert pre["layout"] == "NF" and pre["target"]["name"] == "progression" and len(pre["features"]) == 10
    table = np.genfromtxt(REPO / "configs" / "data" / "diabetes.csv", delimiter=",", names=True)
    rows = np.stack([table[f] for f in pre["features"]], 1).astype(np.float32)
    target = torch.tensor(table["progression"], dtype=torch.float32)
    pred = loader.predict(model, rows)
    assert pred.shape == (442,)
    # by hand: standardise with the recorded statistics, run the member, un-standardise
    member = json.loads((exp / "export.json").read_text())["member"]
    net = compile_network(load_network(run / "members" / member["member_id"])).eval()
    x = (torch.from_numpy(rows) - torch.tensor(pre["mean"])) / torch.tensor(pre["std"])
    with torch.no_grad():
        by_hand = net(x).squeeze(1) * pre["target"]["std"] + pre["target"]["mean"]
    assert torch.allclose(pred, by_hand, rtol=1e-5, atol=1e-3)
    rmse = float(((pred - target) ** 2).mean().sqrt())
    assert 30 < rmse < 120 and float(target.std()) > 70     # it predicts far better than a constant
    assert rmse < 0.9 * float(target.std())
    assert json.loads((exp / "export.json").read_text())["check"]["onnx"] < 1e-5
    with pytest.raises(ValueError, match="regression"):
        loader.predict_proba(model, rows)

    # docs/python.md's prediction example, as written (but for where this export is)
    from test_docs_examples import block
    code = block("import sys").replace("/tmp/diabetes", str(exp))
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=_env(),
                           timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert float(shown.stdout.strip()) == pytest.approx(rmse, rel=1e-4)
