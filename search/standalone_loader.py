"""Load a network exported by ``morphnas export`` with nothing but PyTorch.

This file is copied next to the exported ``model.json`` (the architecture: blobs and the layers
between them) and ``weights.pt`` (a plain state dict, read with ``weights_only=True``). It must not
import morphnas: the point of an export is a model that runs where morphnas is not installed.

    import load_model
    model = load_model.load("path/to/export")      # an nn.Module in eval mode
    y = model(x)                                   # x: (batch, *model.input_shape)

    python load_model.py path/to/export --check    # reload and compare with the saved outputs

The graph semantics are morphnas': a blob with several incoming layers is their sum (added in
layer-name order, the order morphnas computes them in, so outputs match bit for bit); a blob read by
several layers is shared.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FORMAT = "morphnas-export"
VERSION = 1

ACTIVATIONS = {
    "relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "elu": F.elu, "gelu": F.gelu,
    "silu": F.silu, "softplus": F.softplus, "leaky_relu": F.leaky_relu, "relu6": F.relu6,
    "hardtanh": F.hardtanh,
}


class Elementwise(nn.Module):
    def __init__(self, fn: str):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return ACTIVATIONS[self.fn](x)


class ParametricActivation(nn.Module):
    """``(1 - a) * phi(x) + a * x``, written as morphnas computes it."""

    def __init__(self, fn: str, channels: int, per_channel: bool):
        super().__init__()
        self.fn, self.per_channel = fn, per_channel
        self.a = nn.Parameter(torch.ones(channels if per_channel else 1))

    def forward(self, x):
        a = self.a.view(1, -1, *([1] * (x.dim() - 2))) if (self.per_channel and x.dim() > 2) else self.a
        return x + (1.0 - a) * (ACTIVATIONS[self.fn](x) - x)


class Scale(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return x if self.scale == 1.0 else x * self.scale


class Pad(nn.Module):
    def __init__(self, amount: int):
        super().__init__()
        self.amount = amount

    def forward(self, x):
        return F.pad(x, (self.amount,) * 4)


class Crop(nn.Module):
    def __init__(self, amount: int):
        super().__init__()
        self.amount = amount

    def forward(self, x):
        a = self.amount
        return x[:, :, a:x.shape[2] - a, a:x.shape[3] - a] if a else x


def build_layer(spec: dict) -> nn.Module:
    """The module for one layer description (``kind`` plus its fields)."""
    s = dict(spec)
    kind = s.pop("kind")
    if kind == "conv2d":
        return nn.Conv2d(s["in_channels"], s["out_channels"], s["kernel_size"], s.get("stride", 1),
                         s.get("padding", 0), s.get("dilation", 1), s.get("groups", 1), s.get("bias", False))
    if kind == "batchnorm2d":
        return nn.BatchNorm2d(s["num_features"], s.get("eps", 1e-5), s.get("momentum", 0.1))
    if kind == "activation":
        return Elementwise(s.get("fn", "relu"))
    if kind == "pact":
        return ParametricActivation(s.get("fn", "relu"), s["channels"], s.get("per_channel", True))
    if kind == "prelu":
        return nn.PReLU(s.get("num_parameters", 1), s.get("init", 0.25))
    if kind == "identity":
        return Scale(float(s.get("scale", 1.0)))
    if kind == "maxpool2d":
        return nn.MaxPool2d(s["kernel_size"], s.get("stride"), s.get("padding", 0))
    if kind == "avgpool2d":
        return nn.AvgPool2d(s["kernel_size"], s.get("stride"), s.get("padding", 0),
                            count_include_pad=s.get("count_include_pad", True))
    if kind == "global_avg_pool":
        return nn.AdaptiveAvgPool2d(1)
    if kind == "flatten":
        return nn.Flatten(1)
    if kind == "linear":
        return nn.Linear(s["in_features"], s["out_features"], s.get("bias", True))
    if kind == "dropout":
        return nn.Dropout(s.get("p", 0.5))
    if kind == "pad":
        return Pad(s["amount"])
    if kind == "crop":
        return Crop(s["amount"])
    raise ValueError(f"unknown layer kind {kind!r} in the exported model")


class ExportedNet(nn.Module):
    """The exported DAG. Submodules sit at the layers' dotted names, so state-dict keys are
    ``<layer name>.<tensor>`` exactly as in the saved weights."""

    def __init__(self, spec: dict):
        super().__init__()
        if spec.get("format") != FORMAT or spec.get("version") != VERSION:
            raise ValueError(f"not a {FORMAT} v{VERSION} model.json (format={spec.get('format')!r}, "
                             f"version={spec.get('version')!r})")
        self.input_shape = tuple(spec["input_shape"])
        self.input_blob, self.output_blob = spec["input"], spec["output"]
        layers = {e["name"]: e for e in spec["edges"]}
        self._plan = []  # (blob, [(source blob, module)]) in topological order
        for blob in spec["blobs"]:
            terms = []
            for name in blob["in"]:
                module = build_layer(layers[name]["layer"])
                self._attach(name, module)
                terms.append((layers[name]["src"], module))
            self._plan.append((blob["name"], terms))

    def _attach(self, path: str, module: nn.Module) -> None:
        *parents, leaf = path.split(".")
        cur = self
        for p in parents:
            if p not in cur._modules:
                cur.add_module(p, nn.Module())
            cur = cur._modules[p]
        cur.add_module(leaf, module)

    def forward(self, x):
        values = {self.input_blob: x}
        for blob, terms in self._plan:
            acc = None
            for src, module in terms:
                t = module(values[src])
                acc = t if acc is None else acc + t
            values[blob] = acc
        return values[self.output_blob]


def load(directory, map_location="cpu") -> nn.Module:
    """The exported model of ``directory`` (``model.json`` + ``weights.pt``), in eval mode."""
    d = Path(directory)
    spec = json.loads((d / "model.json").read_text())
    model = ExportedNet(spec)
    state = torch.load(d / "weights.pt", map_location=map_location, weights_only=True)
    model.load_state_dict(state, strict=True)
    dtype = getattr(torch, spec.get("dtype", "float32"))
    return model.to(dtype).eval()


def check(directory, tol: float = 1e-5) -> tuple[float, float]:
    """Max abs and relative error of the reloaded model against the outputs saved at export."""
    d = Path(directory)
    model = load(d)
    x = torch.load(d / "check_input.pt", weights_only=True)
    expected = torch.load(d / "check_output.pt", weights_only=True)
    with torch.no_grad():
        y = model(x)
    err = (y - expected).abs().max().item()
    rel = err / max(expected.abs().max().item(), 1e-30)
    return err, rel


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Load (and optionally check) a morphnas export.")
    parser.add_argument("directory")
    parser.add_argument("--check", action="store_true", help="compare with the outputs saved at export")
    parser.add_argument("--tol", type=float, default=1e-5, help="relative tolerance of --check")
    args = parser.parse_args(argv)
    model = load(args.directory)
    n = sum(p.numel() for p in model.parameters())
    print(f"loaded {args.directory}: input shape {model.input_shape}, {n} parameters")
    if args.check:
        err, rel = check(args.directory)
        print(f"check: max_abs_err={err:.3e} rel_err={rel:.3e} (tol {args.tol:g})")
        return 0 if rel <= args.tol else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
