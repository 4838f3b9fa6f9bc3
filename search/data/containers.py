"""The containers of loaded data: a split in memory or streamed, and a run's three splits.

:class:`Split` holds tensors (the fast path for data that fits in every trial process);
:class:`StreamSplit` reads a torch ``Dataset`` batch by batch through a ``DataLoader``. Both give
the same batches for the same generator, so code that trains or evaluates never asks which.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Union

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

__all__ = ["AnySplit", "Data", "Split", "StreamSplit", "augment_batch", "collate_pairs"]


@dataclass(frozen=True)
class Split:
    """A split held in memory: ``x`` (N, C, H, W) images or (N, F) features, float32 and normalised;
    ``y`` (N,) int64 labels or (N,) / (N, K) float targets. The fast path for data that fits."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batches(self, batch_size: int, shuffle: bool = False, augment: str = "none",
                gen: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self)
        order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
        for i in range(0, n, batch_size):
            idx = order[i: i + batch_size]
            x, y = self.x[idx], self.y[idx]
            if augment != "none":
                x = augment_batch(x, augment, gen)
            yield x, y

    def inputs(self, idx: torch.Tensor) -> torch.Tensor:
        """The inputs at ``idx`` (calibration and the preservation check read a few)."""
        return self.x[idx]


class StreamSplit:
    """A split read from a torch ``Dataset`` batch by batch through a ``DataLoader`` (``workers``
    processes, pinned memory for a GPU): for data that does not fit in every trial's memory, or
    whose items are random (augmentation in ``__getitem__``). The order of a shuffled epoch is the
    same permutation the in-memory path draws from ``gen``, so both paths see the same batches."""

    def __init__(self, dataset: Any, workers: int = 0, pin_memory: bool = False):
        self.dataset = dataset
        self.workers = int(workers)
        self.pin_memory = bool(pin_memory)

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, batch_size: int, shuffle: bool = False, augment: str = "none",
                gen: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self), generator=gen) if shuffle else torch.arange(len(self))
        loader = DataLoader(self.dataset, batch_size=batch_size, sampler=order.tolist(), num_workers=self.workers,
                            pin_memory=self.pin_memory and torch.cuda.is_available(),
                            collate_fn=collate_pairs)
        for x, y in loader:
            if augment != "none":
                x = augment_batch(x, augment, gen)
            yield x, y

    def inputs(self, idx: torch.Tensor) -> torch.Tensor:
        return collate_pairs([self.dataset[int(i)] for i in idx])[0]


def collate_pairs(items: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[(x, y), ...]`` -> (x stacked as float32, y stacked; int labels as int64)."""
    xs, ys = zip(*items)
    x = torch.stack([torch.as_tensor(v) for v in xs]).float()
    y = torch.stack([torch.as_tensor(v) for v in ys])
    if not y.is_floating_point():
        y = y.long()
    return x, y


AnySplit = Union[Split, StreamSplit]


@dataclass(frozen=True)
class Data:
    train: AnySplit
    val: AnySplit
    test: AnySplit
    num_classes: int                       # outputs of the network: classes, or regression targets
    input_shape: tuple[int, ...]
    augment: str          # none | crop | crop_flip
    # What turns a raw input into the network's input (see :func:`preprocess_description`):
    # recorded by exports, so their loader's ``predict`` applies it to raw inputs.
    preprocess: dict[str, Any] = field(default_factory=dict)
    task: str = "classification"
    # Regression targets standardised for training: (mean, std); metrics are reported in the data's units.
    target_scale: tuple[float, float] | None = None



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
