"""The containers of loaded data: a split in memory or streamed, and a run's three splits.

:class:`Split` holds tensors (the fast path for data that fits in every trial process);
:class:`StreamSplit` reads a torch ``Dataset`` batch by batch through a ``DataLoader``. Both give
the same batches for the same generator, so code that trains or evaluates never asks which.

A :class:`Split` may live on a GPU (:meth:`Data.on` moves the training and validation splits once
per process): its batches are then gathered and augmented there, as tensor ops. The random draws
(the epoch's permutation, each batch's crop offsets and flips) still come from the CPU generator in
the same order, so the same seed gives the same batches on any device, and the CPU path computes
exactly what it always did.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator, Union

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

__all__ = ["AnySplit", "Data", "Split", "StreamSplit", "apply_augment", "augment_batch", "collate_pairs",
           "draw_augment"]


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
        device = self.x.device
        if not shuffle and augment == "none":      # slices: no index tensor, nothing to send to a GPU
            for i in range(0, n, batch_size):
                yield self.x[i: i + batch_size], self.y[i: i + batch_size]
            return
        order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
        for i in range(0, n, batch_size):
            idx = order[i: i + batch_size]
            draws = draw_augment(len(idx), augment, gen) if augment != "none" else None
            if device.type != "cpu":
                # One small host-to-device copy per batch (indices and draws packed together); it does
                # not wait for the GPU (non_blocking from pageable memory is staged, not synchronised).
                packed = torch.stack([idx, *draws]) if draws is not None else idx[None]
                packed = packed.to(device, non_blocking=True)
                idx, draws = packed[0], (tuple(packed[1:]) if draws is not None else None)
            x, y = self.x[idx], self.y[idx]
            if draws is not None:
                x = apply_augment(x, *draws)
            yield x, y

    def to(self, device: str | torch.device) -> "Split":
        """This split's tensors on ``device`` (itself when they are there already)."""
        device = torch.device(device)
        if self.x.device == device or (device.index is None and self.x.device.type == device.type):
            return self
        return Split(self.x.to(device), self.y.to(device))

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
    # This data's copies on other devices (see :meth:`on`): made once, kept as long as the data is.
    _on_device: dict[str, "Data"] = field(default_factory=dict, init=False, compare=False, repr=False)

    def on(self, device: str | torch.device) -> "Data":
        """This data with its in-memory training and validation splits on ``device``, copied there once
        and cached with the data (a worker keeps its data between trials, so its GPU copy too). The CPU
        returns the data itself; streamed splits and the test split stay where they are (the test split
        is read once, by the final report, on the CPU)."""
        device = torch.device(device)
        if device.type == "cpu":
            return self
        key = str(device)
        if key not in self._on_device:
            moved = dataclasses.replace(self, train=_moved(self.train, device), val=_moved(self.val, device))
            self._on_device[key] = moved
        return self._on_device[key]


def _moved(split: AnySplit, device: torch.device) -> AnySplit:
    return split.to(device) if isinstance(split, Split) else split



def augment_batch(x: torch.Tensor, kind: str, gen: torch.Generator | None, pad: int = 4) -> torch.Tensor:
    """Random crop after zero padding by ``pad`` (and a horizontal flip for ``crop_flip``): the draws
    of :func:`draw_augment` applied by :func:`apply_augment`."""
    dx, dy, *flip = draw_augment(x.shape[0], kind, gen, pad)
    if x.device.type != "cpu":
        dx, dy, flip = dx.to(x.device), dy.to(x.device), [f.to(x.device) for f in flip]
    return apply_augment(x, dx, dy, *flip, pad=pad)


def draw_augment(n: int, kind: str, gen: torch.Generator | None, pad: int = 4) -> tuple[torch.Tensor, ...]:
    """The random draws of augmenting ``n`` images, from ``gen`` on the CPU, in a fixed order: the
    horizontal offsets, the vertical offsets (each in [0, 2 * pad]), and for ``crop_flip`` the flips
    (0 or 1; an image is flipped when its uniform draw is below 0.5). All int64, so they travel to a
    GPU with the batch's indices in one copy."""
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    if kind == "crop_flip":
        return dx, dy, (torch.rand(n, generator=gen) < 0.5).long()
    return dx, dy


def apply_augment(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, flip: torch.Tensor | None = None,
                  pad: int = 4) -> torch.Tensor:
    """Crop each image of ``x`` (N, C, H, W) at offsets ``(dy, dx)`` of its zero-padded copy, mirrored
    where ``flip`` is non-zero: one gather on ``x``'s device, no data-dependent shapes (so no wait for
    the GPU). A mirrored crop reads the padded columns in reverse order, which is exactly the flip."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = dy[:, None] + torch.arange(h, device=x.device)[None, :]           # (n, h)
    cols = dx[:, None] + torch.arange(w, device=x.device)[None, :]           # (n, w)
    if flip is not None:
        cols = torch.where(flip[:, None].bool(), cols.flip(1), cols)
    return padded[torch.arange(n, device=x.device)[:, None, None, None],
                  torch.arange(c, device=x.device)[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]
