"""bench/gpu_check.py runs from a plain checkout (PYTHONPATH only) without Ray, Optuna or PyYAML."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_device_check_runs_on_the_cpu_without_ray_optuna_or_yaml(tmp_path):
    blocked = tmp_path / "blocked"
    for name in ("ray", "optuna", "yaml"):       # importing any of them fails loudly
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked by the test')\n")
    out = tmp_path / "check.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONPATH=f"{blocked}{os.pathsep}{ROOT}", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--cpu", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert "morphnas from " + str(ROOT) in text and "(checkout, not installed)" in text
    assert "Ray or Optuna imported by this process: no." in text
    assert text.count("| PASS |") == 2 and "FAIL" not in text
    for row in ("| hand-written | fp32 | off | off |", "| compiled IR | bf16 | on | off |",
                "| compiled IR morph20_3c3 |", "| resnet20 (width 4) | fp32, channels_last off", "| 2 | "):
        assert row in text, row
    assert "skipped (--quick)" in text
