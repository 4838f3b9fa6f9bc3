"""``attention``: multi-head self-attention on a token blob, ``(N, dim) -> (N, dim)``.

``heads`` heads of ``head_dim`` features each: ``q = x Wqᵀ + bq`` (and k, v alike, ``(heads·head_dim,
dim)`` weights), per head ``softmax(scale · q kᵀ) v``, the heads concatenated and projected back by
``out_weight`` ``(dim, heads·head_dim)`` plus ``out_bias``. The softmax temperature is the explicit
field ``scale`` (``head_dim ** -0.5`` when built fresh), not derived from ``head_dim``, so a morph that
duplicates every head feature ``k`` times divides ``scale`` by ``k`` and keeps every attention score.
``dropout`` drops attention probabilities in training only. In the channel groups it both reads and
writes the model width (a consumer and a producer of it); ``add_heads`` grows ``heads``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SpecError
from .base import LayerSpec, Shape

PROJECTIONS = ("q", "k", "v")


class SelfAttention(nn.Module):
    """Multi-head self-attention on ``(B, N, dim)`` tokens with an explicit softmax scale."""

    def __init__(self, dim: int, heads: int, head_dim: int, scale: float, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim, self.scale, self.dropout = heads, head_dim, float(scale), float(dropout)
        self.q_weight = nn.Parameter(torch.zeros(inner, dim))
        self.k_weight = nn.Parameter(torch.zeros(inner, dim))
        self.v_weight = nn.Parameter(torch.zeros(inner, dim))
        self.q_bias = nn.Parameter(torch.zeros(inner)) if bias else None
        self.k_bias = nn.Parameter(torch.zeros(inner)) if bias else None
        self.v_bias = nn.Parameter(torch.zeros(inner)) if bias else None
        self.out_weight = nn.Parameter(torch.zeros(dim, inner))
        self.out_bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        h, hd = self.heads, self.head_dim
        q = F.linear(x, self.q_weight, self.q_bias).view(b, n, h, hd).transpose(1, 2)
        k = F.linear(x, self.k_weight, self.k_bias).view(b, n, h, hd).transpose(1, 2)
        v = F.linear(x, self.v_weight, self.v_bias).view(b, n, h, hd).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        o = F.scaled_dot_product_attention(q, k, v, dropout_p=p, scale=self.scale)
        return F.linear(o.transpose(1, 2).reshape(b, n, h * hd), self.out_weight, self.out_bias)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, head_dim={self.head_dim}, scale={self.scale:g}"


@dataclass(frozen=True)
class Attention(LayerSpec):
    dim: int
    heads: int
    head_dim: int
    scale: float
    bias: bool = True
    dropout: float = 0.0
    kind: ClassVar[str] = "attention"
    runtime = SelfAttention

    def __post_init__(self):
        for k in ("dim", "heads", "head_dim"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SpecError(f"attention: {k} must be a positive integer, got {v!r}")
        if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and self.scale > 0):
            raise SpecError(f"attention: scale must be a finite number > 0 (e.g. head_dim ** -0.5), got {self.scale!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise SpecError(f"attention: dropout must satisfy 0 <= dropout < 1, got {self.dropout!r}")

    @classmethod
    def standard(cls, dim: int, heads: int, bias: bool = True, dropout: float = 0.0) -> "Attention":
        """``heads`` heads splitting ``dim`` (``dim % heads == 0``), scale ``head_dim ** -0.5``."""
        if dim % heads:
            raise SpecError(f"attention: dim {dim} is not a multiple of heads {heads}; choose heads dividing dim")
        hd = dim // heads
        return cls(dim, heads, hd, hd ** -0.5, bias, dropout)

    @property
    def inner(self) -> int:
        return self.heads * self.head_dim

    def out_shape(self, shape: Shape) -> Shape:
        if len(shape) != 2:
            raise SpecError(f"attention needs a token blob (N, d) but got shape {tuple(shape)}")
        if shape[1] != self.dim:
            raise SpecError(f"attention expects {self.dim} features but the blob has {shape[1]}")
        return shape

    def param_shapes(self) -> dict[str, Shape]:
        p: dict[str, Shape] = {}
        for n in PROJECTIONS:
            p[f"{n}_weight"] = (self.inner, self.dim)
            if self.bias:
                p[f"{n}_bias"] = (self.inner,)
        p["out_weight"] = (self.dim, self.inner)
        if self.bias:
            p["out_bias"] = (self.dim,)
        return p

    def init_params(self, gen, dtype=torch.float32):
        out = {}
        for name, shape in self.param_shapes().items():
            if name.endswith("_bias"):
                out[name] = torch.zeros(shape, dtype=dtype)
            else:
                bound = 1.0 / math.sqrt(shape[1])
                out[name] = ((torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound).to(dtype)
        return out

    def draw_label(self) -> str:
        return f"attn {self.heads}×{self.head_dim}"
