"""Faults of the machine and of the user on a real run (issue 23): a budget spent on the seed, a
config edited by hand between a stop and a resume, a run directory on a read-only mount.

One real search (Ray Tune, in a subprocess) whose wall-time budget runs out while the seed trains;
each test works on a copy of it. What is asserted is what a user checks: the exit code, the one line
printed, and that nothing in the run changed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _checks import assert_one_line, snapshot

from morphnas.search.cli import main

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CONFIG = {
    "name": "f", "random_seed": 0,
    "seed": {"network": "tiny_resnet", "epochs": 2, "lr": 0.1},
    "data": {"dataset": "digits", "train_limit": 300},
    "actions": {"ops": {"deepen": {}, "widen": {"factor": [2.0]}}, "actions_per_child": 1},
    "strategy": {"name": "hill_climb", "children": 2},
    "budget": {"trials": 2, "wall_time": 1}, "finetune": {"epochs": 1},
    "resources": {"cpus_per_trial": 1}, "ray": {"num_cpus": 2}, "final": {"epochs": 0},
}


def _env():
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def spent(tmp_path_factory):
    """A finished run whose 1 s wall-time budget went to the seed: no child."""
    root = tmp_path_factory.mktemp("faults")
    (root / "f.yaml").write_text(yaml.safe_dump({**CONFIG, "runs_dir": str(root / "runs")}))
    out = subprocess.run([sys.executable, "-m", "morphnas.search", "search", str(root / "f.yaml")],
                         capture_output=True, text=True, env=_env(), timeout=300)
    return root / "runs" / "f", out


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, symlinks=True)
    return dest


def test_a_budget_spent_on_the_seed_says_so_and_the_fix_works(spent, tmp_path, capsys):
    run, out = spent
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "[search] seed m0 training: epoch 0 of 2" in out.stdout, out.stdout
    assert "best - | ETA" not in out.stdout
    said = [line for line in out.stdout.splitlines() if "was spent before any child" in line]
    assert len(said) == 1, out.stdout
    assert "the wall-time budget (1s) was spent before any child was trained" in said[0]
    fix = said[0].split("give the search more time: ", 1)[1]
    assert fix.startswith(f"morphnas resume {run} --set budget.wall_time=")
    # the fix, as printed, continues the run: its children are trained
    copy = _copy(run, tmp_path / "f")
    argv = fix.replace(str(run), str(copy)).split()[1:]
    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "the search goes on" in printed and "trials 2/2" in printed, printed


def test_a_hand_edited_config_is_refused_on_resume(spent, tmp_path, capsys):
    run, _ = spent
    copy = _copy(run, tmp_path / "f")
    for edit, key in [(lambda c: c["data"].update(val_fraction=0.5), "data.val_fraction 0.15 -> 0.5"),
                      (lambda c: c["actions"]["ops"].pop("widen"), "actions"),
                      (lambda c: c["strategy"].update(children=1), "strategy")]:
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        edit(cfg)
        (copy / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        before = snapshot(copy)
        for argv in (["resume", str(copy)], ["resume", str(copy), "--set", "budget.trials=4"]):
            capsys.readouterr()
            rc = main(argv)
            assert_one_line(rc, capsys.readouterr().err, "was edited by hand since it started", key)
            assert snapshot(copy) == before, "a refused resume changes nothing"
    # what resume --set may change is still allowed, by hand too
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["final"]["epochs"] = 0
    cfg["ray"]["num_cpus"] = 2
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    capsys.readouterr()
    assert main(["resume", str(copy)]) == 0
    assert "already finished" in capsys.readouterr().out


def _mount_read_only(src: Path, dst: Path) -> bool:
    dst.mkdir()
    ok = subprocess.run(["mount", "--bind", str(src), str(dst)], capture_output=True).returncode == 0
    if ok and subprocess.run(["mount", "-o", "remount,bind,ro", str(dst)], capture_output=True).returncode == 0:
        return True
    if ok:
        subprocess.run(["umount", str(dst)], capture_output=True)
    return False


def test_a_read_only_run_directory_is_one_line(spent, tmp_path, capsys):
    run, _ = spent
    copy = _copy(run, tmp_path / "src" / "f")
    (copy / "config.yaml").write_text((copy / "config.yaml").read_text())   # a plain copy
    ro = tmp_path / "ro"
    if not _mount_read_only(copy.parent, ro):
        pytest.skip("cannot make a read-only bind mount here (needs root and mount); the lock's OSError path "
                    "is what this test exercises")
    try:
        before = snapshot(copy)
        for argv in (["resume", str(ro / "f")], ["resume", str(ro / "f"), "--set", "budget.trials=3"]):
            capsys.readouterr()
            rc = main(argv)
            err = capsys.readouterr().err
            assert_one_line(rc, err, "cannot be written (Read-only file system)")
        assert snapshot(copy) == before
        capsys.readouterr()
        assert main(["leaderboard", str(ro / "f")]) == 0, "reading a read-only run still works"
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)   # lazy: the study may still be open
