"""The engine type-checks: ``mypy -p morphnas.morphism`` with the repository's ``[tool.mypy]`` passes.

The folder ``morphism/`` installs as ``morphnas.morphism`` (setup.py maps it), so the test builds
that layout in a temporary directory: ``morphnas/__init__.py`` and a symlink ``morphnas/morphism``
to the repository's ``morphism/``. The mypy cache lives there too (a cold run takes ~10 s).
"""
import importlib.util
import os
import subprocess
import sys

import pytest
from _paths import REPO  # noqa: E402

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                                reason="mypy is not installed (it is in the 'test' extra)")


@pytest.mark.slow
def test_engine_passes_mypy(tmp_path):
    pkg = tmp_path / "morphnas"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    try:
        (pkg / "morphism").symlink_to(REPO / "morphism", target_is_directory=True)
    except OSError as e:  # e.g. Windows without the symlink privilege
        pytest.skip(f"cannot create a symlink: {e}")
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "-p", "morphnas.morphism",
         "--config-file", str(REPO / "pyproject.toml"), "--cache-dir", str(tmp_path / ".mypy_cache")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mypy failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
