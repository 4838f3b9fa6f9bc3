"""Your own data, tasks and metrics: the factory contract, the carved splits, streaming, the csv table."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from morphnas.search.config import DataConfig
from morphnas.search.data.containers import Split, StreamSplit
from morphnas.search.data.core import load_data
from morphnas.search.data.registry import DataError
from morphnas.search.data.task import METRICS, MetricSums, Task, TaskError
from morphnas.search.data.user import Datasets
from morphnas.search.plugins import provide

REPO = Path(__file__).resolve().parents[3]
DIABETES = REPO / "configs" / "data" / "diabetes.csv"


class Squares(Dataset):
    """A dataset the project does not name: 1x6x6 images whose class is the brightest quadrant."""

    def __init__(self, n: int = 60, seed: int = 0, noisy: bool = False):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 1, 6, 6, generator=g)
        q = torch.stack([self.x[:, 0, :3, :3].sum((1, 2)), self.x[:, 0, :3, 3:].sum((1, 2)),
                         self.x[:, 0, 3:, :3].sum((1, 2)), self.x[:, 0, 3:, 3:].sum((1, 2))], 1)
        self.y = q.argmax(1)
        self.noisy = noisy

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        x = self.x[i]
        if self.noisy:  # an augmenting __getitem__: random each time it is read
            x = x + 0.01 * torch.randn_like(x)
        return x, int(self.y[i])


def _cfg(name: str, **kw) -> DataConfig:
    return DataConfig(dataset=name, val_fraction=kw.pop("val_fraction", 0.2), test_fraction=kw.pop("test_fraction", 0.2),
                      **kw)


def _provide(name: str, obj) -> str:
    provide(name, obj)
    return "python:" + name


# ------------------------------------------------------------------------------ tasks and metrics
def test_task_defaults_and_mismatches_are_named():
    assert Task.of().metric.name == "val_acc" and Task.of().loss == "cross_entropy"
    reg = Task.of("regression")
    assert (reg.loss, reg.metric.name, reg.metric.direction) == ("mse", "val_rmse", "minimize")
    assert Task.of("regression", "l1", "r2").metric.direction == "maximize"
    with pytest.raises(TaskError, match=r"'task.metric': 'accuracy' does not fit a regression task; use one of rmse"):
        Task.of("regression", "auto", "accuracy")
    with pytest.raises(TaskError, match=r"'task.loss': 'mse' does not fit a classification task"):
        Task.of("classification", "mse")
    assert Task.from_json(reg.to_json()) == reg


def test_score_is_maximised_and_converts_back():
    rmse = METRICS["rmse"]
    assert rmse.score(2.5) == -2.5 and rmse.value(rmse.score(2.5)) == 2.5
    assert METRICS["accuracy"].score(0.9) == 0.9


def test_regression_metrics_are_in_target_units():
    task = Task.of("regression", "mse", "rmse")
    mean, std = 10.0, 4.0
    target = torch.tensor([8.0, 12.0, 14.0, 6.0])
    pred = torch.tensor([9.0, 12.0, 12.0, 6.0])
    out = ((pred - mean) / std).unsqueeze(1)     # what a network on standardised targets outputs
    y = (target - mean) / std
    sums = {}
    for key in ("rmse", "mae", "mse", "r2"):
        s = MetricSums(Task.of("regression", "mse", key), (mean, std))
        s.add(out[:2], y[:2])
        s.add(out[2:], y[2:])                    # two batches, as evaluation sees them
        sums[key] = s.value()
    err = pred - target
    assert sums["mse"] == pytest.approx(float((err ** 2).mean()))
    assert sums["rmse"] == pytest.approx(math.sqrt(float((err ** 2).mean())))
    assert sums["mae"] == pytest.approx(float(err.abs().mean()))
    r2 = 1 - float((err ** 2).sum()) / float(((target - target.mean()) ** 2).sum())
    assert sums["r2"] == pytest.approx(r2)
    assert task.loss_fn(out, y).item() == pytest.approx(float(((out.squeeze(1) - y) ** 2).mean()))


# ------------------------------------------------------------------------------ a user's factory
def test_a_user_dataset_is_split_and_shaped():
    name = _provide("squares_plain", lambda: Datasets(train=Squares(100)))
    data = load_data(_cfg(name), seed=3)
    assert data.input_shape == (1, 6, 6) and data.num_classes == 4
    assert (len(data.train), len(data.val), len(data.test)) == (64, 16, 20)
    assert isinstance(data.train, Split)        # small data: the in-memory fast path
    # the test split does not depend on the run's seed; the validation split does
    other = load_data(_cfg(name), seed=4)
    assert torch.equal(data.test.x, other.test.x)
    assert not torch.equal(data.val.x, other.val.x)
    # the inputs are used as the dataset gives them (its transforms are the preprocessing)
    everything = torch.cat([data.train.x, data.val.x, data.test.x])
    assert torch.equal(everything.sort(0).values, Squares(100).x.sort(0).values)


def test_given_splits_mappings_and_tuples():
    tr, va, te = Squares(40, 0), Squares(10, 1), Squares(12, 2)
    for out in (Datasets(tr, va, te), {"train": tr, "val": va, "test": te}, (tr, va, te)):
        data = load_data(_cfg(_provide("squares_given", lambda out=out: out)), seed=0)
        assert (len(data.train), len(data.val), len(data.test)) == (40, 10, 12)
        assert torch.equal(data.val.x, va.x)


def test_a_random_getitem_streams_and_stream_true_matches_memory():
    data = load_data(_cfg(_provide("squares_noisy", lambda: Datasets(train=Squares(50, noisy=True)))), seed=0)
    assert isinstance(data.train, StreamSplit)
    name = _provide("squares_same", lambda: Datasets(train=Squares(50)))
    mem = load_data(_cfg(name), seed=0)
    streamed = load_data(_cfg(name, stream=True), seed=0)
    assert isinstance(mem.train, Split) and isinstance(streamed.train, StreamSplit)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    a = list(mem.train.batches(8, shuffle=True, gen=g1))
    b = list(streamed.train.batches(8, shuffle=True, gen=g2))
    assert len(a) == len(b) == math.ceil(len(mem.train) / 8)
    for (xa, ya), (xb, yb) in zip(a, b):         # the same permutation, the same batches
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    idx = torch.tensor([3, 0, 5])
    assert torch.equal(mem.val.inputs(idx), streamed.val.inputs(idx))


def test_memory_limit_makes_auto_stream():
    name = _provide("squares_big", lambda: Datasets(train=Squares(50)))
    assert isinstance(load_data(_cfg(name, memory_mb=0.001), seed=0).train, StreamSplit)


def test_regression_factory_infers_outputs():
    x = torch.randn(40, 5)
    y = torch.randn(40, 2)
    data = load_data(_cfg(_provide("reg_two", lambda: TensorDataset(x, y))), seed=0, task="regression")
    assert data.num_classes == 2 and data.input_shape == (5,)


class _NoLen:
    def __getitem__(self, i):
        return 0, 0


class _BadItem(Squares):
    def __getitem__(self, i):
        return self.x[i]


class _Boom(Squares):
    def __getitem__(self, i):
        raise KeyError("no such image")


def _raises(msg):
    raise OSError(msg)


@pytest.mark.parametrize("factory, task, message", [
    (lambda: _raises("disk on fire\nsecond line"), "classification",
     r"data.dataset 'python:bad_\d+' raised OSError: disk on fire$"),
    (lambda: 42, "classification", r"returned int; return morphnas.Datasets\(train=\.\.\."),
    (lambda: {"training": Squares()}, "classification", r"returned a mapping with keys \['training'\]; it needs 'train'"),
    (lambda: Datasets(train=_NoLen()), "classification", r"train is a _NoLen, not a map-style torch Dataset"),
    (lambda: Datasets(train=Squares(0)), "classification", r"train is empty"),
    (lambda: Datasets(train=_BadItem()), "classification", r"train\[0\] is a Tensor; each item must be an \(input, target\)"),
    (lambda: Datasets(train=_Boom()), "classification", r"train\[0\] raised KeyError: 'no such image'"),
    (lambda: TensorDataset(torch.randn(9, 3), torch.randn(9)), "classification",
     r"a classification needs an integer class label; set task: regression"),
    (lambda: Datasets(train=Squares(), input_shape=(3, 6, 6)), "classification",
     r"input_shape \(3, 6, 6\) but train\[0\] has shape \(1, 6, 6\)"),
    (lambda: Datasets(train=Squares(), num_outputs=0), "classification", r"num_outputs must be a positive integer, got 0"),
    (lambda **kw: Datasets(train=Squares()), "classification", None),  # options it accepts: fine
])
def test_factory_mistakes_are_one_line(factory, task, message, request):
    name = _provide(f"bad_{request.node.callspec.indices['factory']}", factory)
    if message is None:
        load_data(_cfg(name, options={"anything": 1}), seed=0, task=task)
        return
    with pytest.raises(DataError, match=message) as e:
        load_data(_cfg(name), seed=0, task=task)
    assert "\n" not in str(e.value)


def test_factory_options_and_import_paths(tmp_path, monkeypatch):
    (tmp_path / "mydata_mod.py").write_text(
        "import torch\nfrom torch.utils.data import TensorDataset\n"
        "def make(n=30):\n    return TensorDataset(torch.randn(n, 4), torch.arange(n) % 3)\n"
        "NOT_CALLABLE = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    data = load_data(_cfg("mydata_mod:make", options={"n": 50}), seed=0)
    assert len(data.train) + len(data.val) + len(data.test) == 50 and data.num_classes == 3
    with pytest.raises(DataError, match=r"calling it with data.options \{'size': 5\} failed"):
        load_data(_cfg("mydata_mod:make", options={"size": 5}), seed=0)
    with pytest.raises(DataError, match=r"is a int, not a factory"):
        load_data(_cfg("mydata_mod:NOT_CALLABLE"), seed=0)
    with pytest.raises(DataError, match=r"'data.dataset': module 'mydata_mod' has no 'nope'"):
        load_data(_cfg("mydata_mod:nope"), seed=0)
    with pytest.raises(DataError, match=r"no_such_pkg_xyz"):
        load_data(_cfg("no_such_pkg_xyz.data:make"), seed=0)
    sys.modules.pop("mydata_mod", None)


# ------------------------------------------------------------------------------ the csv table
def test_csv_regression_standardises_features_and_target():
    data = load_data(_cfg("csv", path=str(DIABETES), target="progression"), seed=0, task="regression")
    assert data.input_shape == (10,) and data.num_classes == 1 and data.task == "regression"
    p = data.preprocess
    assert p["layout"] == "NF" and p["features"][:3] == ["age", "sex", "bmi"]
    assert data.train.x.mean(0).abs().max() < 1e-5
    assert (data.train.x.std(0) - 1).abs().max() < 1e-4
    assert abs(float(data.train.y.mean())) < 1e-5
    mean, std = data.target_scale
    assert p["target"] == {"name": "progression", "mean": mean, "std": std}
    raw = np.genfromtxt(DIABETES, delimiter=",", names=True)
    assert 140 < mean < 165 and 70 < std < 85  # the diabetes table's progression: mean 152, std 77
    assert len(data.train) + len(data.val) + len(data.test) == len(raw) == 442


def test_csv_classification_and_feature_subset(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("a,b,label\n" + "".join(f"{i},{i % 7},{'yes' if i % 2 else 'no'}\n" for i in range(40)))
    data = load_data(_cfg("csv", path=str(f), target="label", features=["b"]), seed=0)
    assert data.input_shape == (1,) and data.num_classes == 2
    assert data.preprocess["class_names"] == ["no", "yes"] and data.preprocess["features"] == ["b"]


@pytest.mark.parametrize("kw, message", [
    ({}, r"dataset 'csv' needs data.path"),
    ({"path": "PATH"}, r"dataset 'csv' needs data.target, the column to predict \(columns: a, b, label\)"),
    ({"path": "PATH", "target": "lab"}, r"data.target 'lab' is not a column"),
    ({"path": "PATH", "target": "label", "features": ["a", "c"]}, r"data.features \['c'\] are not columns"),
    ({"path": "PATH", "target": "label", "features": ["a", "label"]}, r"data.features includes the target"),
])
def test_csv_mistakes(tmp_path, kw, message):
    f = tmp_path / "t.csv"
    f.write_text("a,b,label\n" + "".join(f"{i},{i % 7},{i % 2}\n" for i in range(20)))
    kw = {k: (str(f) if v == "PATH" else v) for k, v in kw.items()}
    with pytest.raises(DataError, match=message):
        load_data(_cfg("csv", **kw), seed=0)
