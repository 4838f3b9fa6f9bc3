"""Load a network exported by ``morphnas export`` with nothing but PyTorch.

This file is copied next to the exported ``model.json`` (the architecture: blobs and the layers
between them), ``weights.pt`` (a plain state dict, read with ``weights_only=True``) and
``morphnas_runtime.py`` (morphnas' torch-only layer modules, the very file morphnas computes with).
It must not need morphnas: the point of an export is a model that runs where morphnas is not
installed.

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
import importlib.util
import json
import sys
from pathlib import Path

import torch
from torch import nn

RUNTIME_FILE = "morphnas_runtime.py"   # morphnas' torch-only layer modules, shipped beside this file


def _runtime():
    """The layer modules: ``morphnas_runtime.py`` next to this file in an export (loaded by path, so
    no ``sys.path`` set-up is needed), else morphnas' own copy when run inside the repository."""
    here = Path(__file__).with_name(RUNTIME_FILE)
    if here.is_file():
        name = "morphnas_export_runtime"
        module = sys.modules.get(name)
        if module is None or getattr(module, "__file__", None) != str(here):
            spec = importlib.util.spec_from_file_location(name, here)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        return module
    from morphnas.morphism import runtime  # not an export: the engine's single source
    return runtime


_rt = _runtime()
FORMAT, VERSION = _rt.EXPORT_FORMAT, _rt.EXPORT_VERSION
build_layer = _rt.build_layer


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
