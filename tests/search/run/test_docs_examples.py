"""docs/python.md's examples, run as written (a real search on Ray Tune for the first)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOC = REPO / "docs" / "python.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def block(first_line: str) -> str:
    """The ```python block of docs/python.md whose first line is ``first_line``."""
    found = [b for b in python_blocks() if b.splitlines()[0].strip() == first_line]
    assert len(found) == 1, f"docs/python.md has {len(found)} blocks starting {first_line!r}"
    return found[0]


def _env():
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.mark.ray
@pytest.mark.slow
def test_own_dataset_with_a_torchvision_seed(tmp_path):
    (tmp_path / "my_search.py").write_text(block("# my_search.py"))
    out = subprocess.run([sys.executable, "my_search.py"], capture_output=True, text=True, cwd=tmp_path, env=_env(),
                         timeout=500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # "finished val_acc 0.61 m3 widen": the ops are empty when the seed stays the best member
    status, metric, value, member = out.stdout.strip().splitlines()[-1].split(" ")[:4]
    assert re.fullmatch(r"m\d+", member), member
    assert (status, metric) == ("finished", "val_acc")
    assert 0.5 <= float(value) <= 1.0                      # two classes: better than chance on stripes
    assert (tmp_path / "runs" / "stripes" / "study.db").is_file()
    import yaml
    recorded = yaml.safe_load((tmp_path / "runs" / "stripes" / "config.yaml").read_text())
    assert recorded["data"]["dataset"] == "python:__main__.make_data"
    assert recorded["seed"]["network"] == "torchvision:resnet18"


def test_own_training_loop_trains(tmp_path, monkeypatch):
    """The trainer of the docs, on digits, through the same train() every trial uses."""
    import torch

    from morphnas.search.config import DataConfig
    from morphnas.search.data.core import load_data
    from morphnas.search.trial.train import TrainSpec, evaluate, train
    from morphnas.spaces.registry import create_network

    (tmp_path / "my_trainer.py").write_text(block("# my_trainer.py"))
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_trainer

    data = load_data(DataConfig(dataset="digits", train_limit=300), seed=0)
    net = create_network("tiny_resnet", num_classes=10)
    before = evaluate(net, data.val)
    trainer = my_trainer.AdamTrainer(lr=0.01)
    out, reports = train(net, data, TrainSpec(epochs=2, lr=0.01, batch_size=32), trainer=trainer)
    assert len(reports) == 2 and reports[-1].val_acc > before + 0.3
    assert reports[-1].val_acc == pytest.approx(evaluate(out, data.val))
    assert torch.isfinite(torch.tensor(reports[-1].train_loss))


def test_the_api_block_names_what_exists():
    import morphnas
    api = python_blocks()[0]
    for name in re.findall(r"morphnas\.(\w+)\(", api):
        assert callable(getattr(morphnas, name)), name
    for name in ("Datasets", "Trainer", "EpochContext", "MorphnasError", "Config"):
        assert getattr(morphnas, name) is not None
