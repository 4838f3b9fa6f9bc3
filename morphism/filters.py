"""Convolution filters as linear maps: composition, identity filters, padding, centring.

Filters are ``(C_out, C_in, k, k)`` tensors with odd ``k``, centred (the "extended definition" of
the modular-morphing paper: a filter is a finitely supported tensor, a smaller one is a zero-padded
larger one). For stride-1 convolutions with enough zero padding,
``conv(conv(x, f1), f2) == conv(x, compose(f1, f2))`` exactly in exact arithmetic; with per-layer
padding only in the interior (see ``morphism/pad_once`` notes in docs/design.md, "Numerics").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def compose(f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
    """The single filter of ``f1`` followed by ``f2``: shape ``(C2, C0, k1 + k2 - 1, ...)``.

    ``f1``: ``(C1, C0, k1, k1)``; ``f2``: ``(C2, C1, k2, k2)``.
    """
    c1, c0, k1, _ = f1.shape
    c2, c1b, k2, _ = f2.shape
    if c1 != c1b:
        raise ValueError(f"compose: f1 gives {c1} channels but f2 takes {c1b}")
    # Treat f1's C0 axis as batch: convolving f1 (as an image of C1 channels) with flipped f2 by
    # full padding gives, per input channel, the composed spatial kernel.
    img = f1.permute(1, 0, 2, 3)  # (C0, C1, k1, k1)
    out = F.conv2d(img, f2.flip(-1, -2), padding=k2 - 1)  # conv2d correlates: flip for a true convolution
    return out.permute(1, 0, 2, 3).contiguous()


def pad_to(f: torch.Tensor, k: int) -> torch.Tensor:
    """Zero-pad a centred ``(.., kf, kf)`` filter to ``k x k`` (``k >= kf``, same parity)."""
    kf = f.shape[-1]
    if k < kf or (k - kf) % 2:
        raise ValueError(f"cannot pad a {kf}x{kf} filter to {k}x{k}")
    p = (k - kf) // 2
    return F.pad(f, (p, p, p, p))


def identity_filter(channels: int, k: int = 1, scale: float = 1.0, dtype=torch.float64) -> torch.Tensor:
    """``scale`` times the identity map as a ``(C, C, k, k)`` filter (a centred delta)."""
    f = torch.zeros(channels, channels, k, k, dtype=dtype)
    c = k // 2
    f[torch.arange(channels), torch.arange(channels), c, c] = scale
    return f
