"""A user's factory, trainer, op or tracker that raises or returns the wrong thing: ``morphnas search``
exits 2 with one line naming it, and no run directory exists (the CLI in-process; no Ray starts)."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from morphnas.search.cli import main

REPO = Path(__file__).resolve().parents[3]

USERLIB = textwrap.dedent('''
    import torch
    from torch.utils.data import TensorDataset


    def make(n=120):
        g = torch.Generator().manual_seed(0)
        x = torch.rand(n, 1, 8, 8, generator=g)
        return TensorDataset(x, (x.mean((1, 2, 3)) > 0.5).long())


    def broken(**kw):
        raise RuntimeError("cannot reach the bucket")


    def not_datasets():
        return 42


    class Fine:
        def train_epoch(self, model, ctx):
            for x, y in ctx.train_batches():
                loss = ctx.loss(model(x), x, y)
                ctx.optimizer.zero_grad()
                loss.backward()
                ctx.optimizer.step()
            return 0.5


    class NoEpoch:
        pass


    class BadLoss(Fine):
        def train_epoch(self, model, ctx):
            return "low"


    class Crashes(Fine):
        def train_epoch(self, model, ctx):
            raise ZeroDivisionError("my epoch\\nline two")
''')

CONFIG = {
    "name": "bad", "seed": {"network": "tiny_resnet", "epochs": 1},
    "data": {"dataset": "userlib_pf:make"},
    "actions": {"ops": {"widen": {"factor": [2.0]}}},
    "budget": {"trials": 2}, "ray": {"num_cpus": 2},
}

CASES = [
    ({"data": {"dataset": "userlib_pf:broken"}}, "'userlib_pf:broken' raised RuntimeError: cannot reach the bucket"),
    ({"data": {"dataset": "userlib_pf:not_datasets"}}, "'userlib_pf:not_datasets' returned int"),
    ({"data": {"dataset": "userlib_pf:nope"}}, "module 'userlib_pf' has no 'nope'"),
    ({"data": {"dataset": "userlib_pf:make", "options": {"size": 3}}}, "calling it with data.options {'size': 3} failed"),
    ({"trainer": "userlib_pf:NoEpoch"}, "trainer 'userlib_pf:NoEpoch' is a NoEpoch without a train_epoch"),
    ({"trainer": "userlib_pf:BadLoss"}, "BadLoss.train_epoch returned str"),
    ({"trainer": "userlib_pf:Crashes"}, "Crashes.train_epoch raised ZeroDivisionError: my epoch"),
    ({"trainer": "userlib_pf:Fine", "trainer_options": {"lr": 1}}, "creating it with trainer_options {'lr': 1} raised"),
    ({"actions": {"ops": {"_user_op_example:BrokenScale": {}}}}, "scale_broken"),
    ({"actions": {"ops": {"_user_op_example:NotAnOp": {}}}}, "NotAnOp"),
    ({"actions": {"ops": {"_user_op_example:Missing": {}}}}, "Missing"),
    ({"ray": {"num_cpus": 2, "callbacks": ["mlflow"], "callback_options": {"mlflow": {"tracking_uri": "nosuchscheme://x"}}}},
     "ray.callbacks: 'mlflow' (ray.callback_options {'tracking_uri': 'nosuchscheme://x'}) failed to start"),
    ({"ray": {"num_cpus": 2, "callbacks": ["userlib_pf:nothing"]}}, "module 'userlib_pf' has no 'nothing'"),
]


@pytest.fixture
def userlib(tmp_path, monkeypatch):
    (tmp_path / "userlib_pf.py").write_text(USERLIB)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(REPO / "tests" / "morphism"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("userlib_pf", None)


@pytest.mark.parametrize("change, message", CASES, ids=[m.split(":")[0][:40] for _, m in CASES])
def test_bad_user_code_is_exit_2_one_line_no_run_dir(userlib, capsys, change, message):
    cfg = {**CONFIG, "runs_dir": str(userlib / "runs"), **change}
    (userlib / "bad.yaml").write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert main(["search", "bad.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not (userlib / "runs").exists(), "no run directory for a bad config"


def test_the_good_one_passes_preflight(userlib):
    """The same config with the good parts passes every check (so each case above fails for its own reason)."""
    from morphnas.search.config import config_from_dict
    from morphnas.search.run.preflight import preflight
    cfg = {**CONFIG, "runs_dir": str(userlib / "runs"), "trainer": "userlib_pf:Fine",
           "actions": {"ops": {"_user_op_example:ScaleIdentity": {"power": [1]}, "widen": {"factor": [2.0]}}}}
    preflight(config_from_dict(cfg))
    assert not (userlib / "runs").exists()
