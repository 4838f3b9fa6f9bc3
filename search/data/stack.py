"""A map-style dataset of (image, label) pairs as two tensors, reading the raw arrays when it has them."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from morphnas.search.data.registry import DataError


def stack_dataset(ds: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``ds`` -> (images (N, C, H, W) float in [0, 1], labels int64)."""
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
