"""Output difference between two networks on the same inputs (eval mode)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .compile import compile_network
from .errors import MorphnasError
from .graph import Network


@dataclass(frozen=True)
class Diff:
    max_abs_err: float
    rel_err: float          # max abs error / max abs output of the reference
    max_abs_out: float
    dtype: str

    def to_json(self) -> dict:
        return {"max_abs_err": self.max_abs_err, "rel_err": self.rel_err,
                "max_abs_out": self.max_abs_out, "dtype": self.dtype}


def sample_inputs(net: Network, batch: int = 4, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, *net.input_shape), generator=g, dtype=torch.float64).to(dtype)


@torch.no_grad()
def output_diff(a: Network, b: Network, x: torch.Tensor | None = None, dtype: torch.dtype = torch.float32,
                batch: int = 4, seed: int = 0) -> Diff:
    """Compare ``a`` and ``b`` in eval mode in ``dtype``; ``a`` is the reference."""
    if tuple(a.input_shape) != tuple(b.input_shape):
        raise MorphnasError(f"the networks take different inputs: {a.input_shape} vs {b.input_shape}")
    if x is None:
        x = sample_inputs(a, batch, seed, dtype)
    x = x.to(dtype)
    ma = compile_network(a.to(dtype)).eval()
    mb = compile_network(b.to(dtype)).eval()
    ya, yb = ma(x), mb(x)
    if ya.shape != yb.shape:
        raise MorphnasError(f"the networks' outputs differ in shape: {tuple(ya.shape)} vs {tuple(yb.shape)}")
    err = (ya - yb).abs().max().item()
    scale = ya.abs().max().item()
    return Diff(err, err / scale if scale > 0 else err, scale, str(dtype).replace("torch.", ""))
