"""A vision transformer searched from the CLI on Ray Tune (issue 25): ``configs/vit.yaml``, shortened,
killed with -9 while a child trains, resumed without losing or repeating a finished member, then
exported; the export predicts in an interpreter that has only torch."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import poll, resume_to_the_end, start, state, stop_group  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
BUDGET = 3


def test_vit_search_survives_kill_9_resumes_and_exports(tmp_path):
    runs = tmp_path / "runs"
    run = runs / "vit"
    sets = [f"runs_dir={runs}", f"budget.trials={BUDGET}", "seed.epochs=2", "finetune.epochs=2", "final.epochs=0",
            "data.train_limit=600", "data.image_size=14", "seed.network=tiny_vit"]
    args = ["search", str(REPO / "configs" / "vit.yaml")] + sum((["--set", s] for s in sets), [])
    log = open(tmp_path / "log.txt", "w")
    p = start(args, log)
    try:
        def mid_child():
            s = state(run)
            done = [r for r in s.get("results", []) if r["member_id"] != "m0"]
            return s if done and s.get("pending") else None
        before = poll(mid_child, "a finished child and a running one", p, log, timeout=300)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        stop_group(p)
    finished = {r["member_id"]: r["values"] for r in state(run)["results"]}
    assert set(state(run)["pending"]), "the kill landed while a child trained"
    try:
        resume_to_the_end(run, log)
    finally:
        log.close()

    study = optuna.load_study(study_name="vit", storage=f"sqlite:///{run / 'study.db'}")
    trials = {t.user_attrs["member_id"]: t for t in study.get_trials()}
    assert sorted(trials, key=lambda m: int(m[1:])) == [f"m{i}" for i in range(BUDGET + 1)], "one trial per member"
    for mid, values in finished.items():            # finished before the kill: kept, not re-run
        assert trials[mid].state.name == "COMPLETE" and list(trials[mid].values) == values
    ops = {part.split("@")[0] for t in trials.values() for part in (t.user_attrs.get("ops") or "").split(" + ") if part}
    assert ops and ops <= {"add_heads", "deepen_block", "widen"}, ops
    errors = [t.user_attrs.get("preservation_error") for t in trials.values()]
    assert all(e is None or e <= 1e-4 for e in errors), errors
    final = json.loads((run / "run_state.json").read_text())
    assert final["status"] == "finished"
    assert [r["member_id"] for r in before["results"]] == [r["member_id"] for r in final["results"]][:len(before["results"])]

    from morphnas.search.cli import main
    out = tmp_path / "export"
    assert main(["export", str(run), "-o", str(out)]) == 0
    code = (f"import sys, torch\nsys.path.insert(0, {str(out)!r})\nimport load_model\n"
            "m = load_model.load({!r})\n".format(str(out)) +
            "x = torch.rand(5, 1, 28, 28)\np = load_model.predict(m, x)\n"
            "assert not [n for n in sys.modules if n.split('.')[0] == 'morphnas'], 'the export needs only torch'\n"
            "print(tuple(p.shape), tuple(load_model.predict_proba(m, x).shape))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    shown = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout.split() == ["(5,)", "(5,", "10)"]
