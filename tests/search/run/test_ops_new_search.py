"""configs/new_ops.yaml runs end to end as a real ``morphnas search`` (Ray Tune, digits, 4 children):
the morphs of concatenations, depthwise convs and dense layers (issue 14) work inside a search,
not only in unit tests: every child is checked for preservation by the worker and trains."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from _paths import REPO  # noqa: E402

from morphnas.search.config import load_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = REPO
NEW_OPS = {"insert_branch", "concat_skip", "deepen_depthwise", "deepen_linear", "widen"}


def test_new_ops_config_runs_end_to_end(tmp_path):
    cfg = load_config(ROOT / "configs" / "new_ops.yaml")
    assert set(cfg.actions["ops"]) == NEW_OPS and cfg.budget.trials == 4 and cfg.finetune.epochs == 1
    cmd = [sys.executable, "-m", "morphnas.search", "search", str(ROOT / "configs" / "new_ops.yaml"),
           "--set", f"runs_dir={tmp_path}", "--set", "data.train_limit=400"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    run = tmp_path / "new_ops"
    state = json.loads((run / "run_state.json").read_text())
    assert state["status"] == "finished" and state["started"] == 4
    import optuna
    study = optuna.load_study(study_name="new_ops", storage=f"sqlite:///{run / 'study.db'}")
    children = [t for t in study.get_trials() if t.user_attrs.get("member_id") != "m0"]
    done = [t for t in children if t.state.name == "COMPLETE"]
    assert len(children) == 4 and done, [t.user_attrs.get("fail_reason") for t in children]
    for t in done:
        assert t.user_attrs["preservation_error"] < 1e-4
    report = json.loads((run / "best" / "report.json").read_text())
    assert 0.0 <= report["test_acc"] <= 1.0
