"""Your own data: ``data.dataset: "package.module:factory"`` (or, from Python, the factory itself).

The factory is called with ``data.options`` as keyword arguments and returns a :class:`Datasets`
(or a mapping with its fields, a ``(train, val, test)`` tuple, or one ``Dataset`` to train on): torch ``Dataset`` objects
whose items are ``(input, target)`` pairs, plus what the search must know and cannot guess. What
it leaves out is inferred from the first training item: the input shape from the input, the
number of outputs from the labels (classification: the largest label + 1) or the target's size
(regression).

Splits it does not give are carved out of ``train`` with a seeded permutation: ``test`` with a
fixed seed (every run reports on the same items), ``val`` with the run's seed
(``data.val_fraction``). Inputs are used as the dataset gives them: its own transforms are the
preprocessing (``preprocess`` is what an export records for them).

Small data is stacked into tensors once per process (the fast path); data over ``data.memory_mb``,
data whose items are random (an augmenting ``__getitem__``: item 0 read twice differs), or
``data.stream: true`` streams through a ``DataLoader`` with ``data.workers`` processes.

Every factory is imported in every worker by its path, so it must be importable there; a factory
that raises or returns the wrong thing is one :class:`~.registry.DataError` line naming it, and
``morphnas search`` reports it before any run directory exists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from morphnas.search.data.containers import Data, Split, StreamSplit, collate_pairs
from morphnas.search.data.registry import DataError, DataSettings
from morphnas.search.plugins import PluginError, load_object

__all__ = ["Datasets", "load_user_data"]

TEST_SEED = 12345          # the carved test split does not depend on the run's seed
MAX_OUTPUTS = 100_000


@dataclass
class Datasets:
    """What a data factory returns. ``train`` is required; the rest is optional."""

    train: Any                                   # a map-style torch Dataset of (input, target)
    val: Any = None                              # None: data.val_fraction of train, seeded
    test: Any = None                             # None: data.test_fraction of train, fixed
    input_shape: Sequence[int] | None = None     # None: the first training input's shape
    num_outputs: int | None = None               # None: from the labels / targets
    class_names: Sequence[str] | None = None
    preprocess: Mapping[str, Any] | None = None  # recorded by exports (what turns raw input into the input)
    extra: dict[str, Any] = field(default_factory=dict)


def _factory(cfg: DataSettings) -> Any:
    try:
        return load_object(cfg.dataset, "data.dataset")
    except PluginError as e:
        raise DataError(str(e)) from None


def _call(factory: Any, cfg: DataSettings) -> Datasets:
    name = cfg.dataset
    if isinstance(factory, Datasets):
        return factory
    if not callable(factory):
        raise DataError(f"data.dataset {name!r} is a {type(factory).__name__}, not a factory; name a function "
                        f"returning morphnas.Datasets(train=..., val=..., test=...)")
    options = dict(getattr(cfg, "options", None) or {})
    try:
        out = factory(**options)
    except TypeError as e:
        raise DataError(f"data.dataset {name!r}: calling it with data.options {options} failed ({e}); "
                        f"give the options its signature takes") from None
    except DataError:
        raise
    except Exception as e:  # the user's own code: whatever it raises is reported, in one line
        first = (str(e).strip().splitlines() or [""])[0]
        raise DataError(f"data.dataset {name!r} raised {type(e).__name__}: {first}") from None
    if isinstance(out, Datasets):
        return out
    if isinstance(out, Mapping):
        unknown = set(out) - set(Datasets.__dataclass_fields__)
        if unknown or "train" not in out:
            raise DataError(f"data.dataset {name!r} returned a mapping with keys {sorted(out)}; it needs 'train' "
                            f"and may have {', '.join(k for k in Datasets.__dataclass_fields__ if k != 'train')}")
        return Datasets(**out)
    if isinstance(out, (tuple, list)) and 1 <= len(out) <= 3:
        return Datasets(*out)
    if as_dataset(out):           # one Dataset: the training set (val and test are carved out of it)
        return Datasets(train=out)
    raise DataError(f"data.dataset {name!r} returned {type(out).__name__}; return morphnas.Datasets(train=..., "
                    f"val=..., test=...) (or a (train, val, test) tuple) of torch Datasets")


def _check_dataset(ds: Any, what: str, name: str) -> int:
    if not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
        raise DataError(f"data.dataset {name!r}: {what} is a {type(ds).__name__}, not a map-style torch Dataset "
                        f"(it needs __len__ and __getitem__)")
    try:
        n = len(ds)
    except Exception as e:  # a user's __len__
        raise DataError(f"data.dataset {name!r}: len({what}) raised {type(e).__name__}: {e}") from None
    if n < 1:
        raise DataError(f"data.dataset {name!r}: {what} is empty")
    return int(n)


def _item(ds: Any, i: int, what: str, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        item = ds[i]
    except Exception as e:  # a user's __getitem__
        first = (str(e).strip().splitlines() or [""])[0]
        raise DataError(f"data.dataset {name!r}: {what}[{i}] raised {type(e).__name__}: {first}") from None
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise DataError(f"data.dataset {name!r}: {what}[{i}] is a {type(item).__name__}; each item must be an "
                        f"(input, target) pair")
    try:
        x, y = torch.as_tensor(item[0]), torch.as_tensor(item[1])
    except Exception as e:  # not array-like
        raise DataError(f"data.dataset {name!r}: {what}[{i}] is not a pair of tensors or numbers ({e})") from None
    return x, y


def _carve(ds: Any, n: int, fraction: float, seed: Any) -> tuple[Any, Any]:
    """(the rest, a seeded ``fraction`` of ``ds``) as Subsets."""
    perm = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(fraction * n)))
    if k >= n:
        raise DataError(f"cannot hold out {k} of {n} items; the training set is too small for the split")
    return Subset(ds, perm[k:].tolist()), Subset(ds, perm[:k].tolist())


def load_user_data(cfg: DataSettings, seed: int = 0, task: str = "classification") -> Data:
    """The :class:`Data` of a user's factory (see the module docstring)."""
    name = cfg.dataset
    got = _call(_factory(cfg), cfg)
    n = _check_dataset(got.train, "train", name)
    x0, y0 = _item(got.train, 0, "train", name)
    regression = task == "regression"
    if not regression and (y0.is_floating_point() or y0.ndim != 0):
        raise DataError(f"data.dataset {name!r}: train[0] has target {tuple(y0.shape)} {y0.dtype}, but a "
                        f"classification needs an integer class label; set task: regression for real targets")
    test, train = got.test, got.train
    if test is None:
        train, test = _carve(train, n, cfg.test_fraction, TEST_SEED)
    else:
        _check_dataset(test, "test", name)
    val = got.val
    if val is None:
        train, val = _carve(train, len(train), cfg.val_fraction, [seed, 1])
    else:
        _check_dataset(val, "val", name)
    if cfg.train_limit is not None and len(train) > cfg.train_limit:
        train = Subset(train, list(range(cfg.train_limit)))
    shape = tuple(int(s) for s in (got.input_shape if got.input_shape is not None else x0.shape))
    if shape != tuple(x0.shape):
        raise DataError(f"data.dataset {name!r}: input_shape {shape} but train[0] has shape {tuple(x0.shape)}")
    outputs = got.num_outputs
    if outputs is None:
        outputs = int(y0.numel()) if regression else _num_classes(got.train, n, name)
    if not isinstance(outputs, int) or isinstance(outputs, bool) or not 1 <= outputs <= MAX_OUTPUTS:
        raise DataError(f"data.dataset {name!r}: num_outputs must be a positive integer, got {outputs!r}")
    stream = _wants_stream(cfg, got.train, x0, n)
    if stream:
        splits = [StreamSplit(d, workers=int(getattr(cfg, "workers", 0) or 0), pin_memory=True)
                  for d in (train, val, test)]
    else:
        splits = [_stack(d, what, name, regression) for d, what in ((train, "train"), (val, "val"), (test, "test"))]
    pre = dict(got.preprocess or {})
    pre.setdefault("class_names", list(got.class_names) if got.class_names is not None else None)
    return Data(splits[0], splits[1], splits[2], outputs, shape, "none" if cfg.augment == "auto" else cfg.augment,
                pre, task, None)


def _num_classes(ds: Any, n: int, name: str) -> int:
    """The largest label + 1 (from the dataset's ``targets`` if it has them, else read item by item)."""
    targets = getattr(ds, "targets", None)
    if targets is not None and len(targets) == n:
        labels = torch.as_tensor(np.asarray(targets))
    else:
        labels = torch.stack([_item(ds, i, "train", name)[1] for i in range(n)])
    if labels.is_floating_point() or int(labels.min()) < 0:
        raise DataError(f"data.dataset {name!r}: class labels must be integers >= 0 (got {labels.dtype}, "
                        f"min {labels.min().item()}); set num_outputs, or task: regression for real targets")
    return int(labels.max()) + 1


def _wants_stream(cfg: DataSettings, ds: Any, x0: torch.Tensor, n: int) -> bool:
    mode = getattr(cfg, "stream", "auto")
    if mode is True or mode is False:
        return bool(mode)
    size_mb = n * x0.numel() * 4 / 2**20
    if size_mb > float(getattr(cfg, "memory_mb", 1024)):
        return True
    again = torch.as_tensor(ds[0][0])
    return not (again.shape == x0.shape and torch.equal(again, x0))   # a random item: augmentation


def _stack(ds: Any, what: str, name: str, regression: bool) -> Split:
    try:
        x, y = collate_pairs([ds[i] for i in range(len(ds))])
    except RuntimeError as e:   # torch.stack of items that differ in shape
        raise DataError(f"data.dataset {name!r}: the {what} items differ in shape ({str(e).splitlines()[0]}); "
                        f"give every input the same shape") from None
    if regression:
        y = y.float()
    return Split(x.contiguous(), y)


def as_dataset(obj: Any) -> bool:
    """Whether ``obj`` looks like a map-style dataset (what the Python API accepts as ``data=``)."""
    return isinstance(obj, Dataset) or (hasattr(obj, "__getitem__") and hasattr(obj, "__len__"))
