"""Seeded splits of a labelled set: plain and stratified permutations."""
from __future__ import annotations

import numpy as np


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
