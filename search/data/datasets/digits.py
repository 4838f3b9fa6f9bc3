"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, offline)."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from morphnas.search.data.registry import register_dataset


@register_dataset("digits", raw_max=16.0, channels="grey", class_names=[str(i) for i in range(10)])
def digits(cfg, seed: int):
    """scikit-learn's 8x8 digits; a fixed test split of ``data.test_fraction`` (seed-independent)."""
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    # A fixed test split (seed-independent), so every run reports on the same images.
    perm = torch.from_numpy(np.random.default_rng(12345).permutation(len(y)))
    n_test = int(round(cfg.test_fraction * len(y)))
    return x[perm[n_test:]], y[perm[n_test:]], x[perm[:n_test]], y[perm[:n_test]]
