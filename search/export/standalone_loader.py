"""Load a network exported by ``morphnas export`` with nothing but PyTorch.

This file is copied next to the exported ``model.json`` (the architecture: blobs and the layers
between them), ``weights.pt`` (a plain state dict, read with ``weights_only=True``) and
``morphnas_runtime.py`` (morphnas' torch-only layer modules, the very code morphnas computes with).
It must not need morphnas: the point of an export is a model that runs where morphnas is not
installed.

    import load_model
    model = load_model.load("path/to/export")      # an nn.Module in eval mode
    y = model(x)                                   # x: (batch, *model.input_shape)

    python load_model.py path/to/export --check    # reload and compare with the saved outputs

Raw images (what a camera or a dataset file gives, not yet normalised) go through ``predict``:

    labels = load_model.predict(model, raw_images)        # class indices, (N,) int64
    probs = load_model.predict_proba(model, raw_images)   # softmax, (N, classes)
    load_model.class_names(model)                         # names of the classes, where known

``raw_images`` is an array or tensor (N, C, H, W), or (N, H, W) for one channel, with values in
the ``raw_range`` the export records (e.g. 0..16 for scikit-learn's digits, 0..255 for 8-bit
images), channels in ``channel_order``. ``predict`` applies, in this order and in float32, what
training applied: ``x / raw_range[1]``, the bilinear resize to the network's input size
(``align_corners=False``), then ``(x - mean) / std`` per channel with the training split's
statistics (``model.json`` -> ``preprocess``). ``model(x)`` takes already preprocessed input.

A table (``preprocess.layout == "NF"``, e.g. a ``csv`` dataset) takes raw rows ``(N, F)``, columns
in ``preprocess.features``: ``predict`` standardises each column with the training split's mean and
std. A regression (``preprocess.task == "regression"``) predicts in the target's own units:
``predict`` returns ``model(x) * target.std + target.mean`` (the network learns standardised targets).

The graph semantics are morphnas': a blob with several incoming layers is their sum (added in
layer-name order, the order morphnas computes them in, so outputs match bit for bit) unless the blob
says ``"join": "concat"`` (concatenated along channels in the listed order) or ``"join": "mul"``
(multiplied, broadcasting (C, 1, 1) gates); a blob read by several layers is shared.
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
    # lazy: only inside morphnas (an export has no morphnas); importing the kinds fills runtime.BUILDERS
    import morphnas.morphism.kinds  # noqa: F401  # lazy: see above
    from morphnas.morphism import runtime  # lazy: the engine's single source
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
        self._plan = []  # (blob, join, [(source blob, module)]) in topological order
        for blob in spec["blobs"]:
            terms = []
            for name in blob["in"]:
                module = build_layer(layers[name]["layer"])
                self._attach(name, module)
                terms.append((layers[name]["src"], module))
            self._plan.append((blob["name"], blob.get("join", "sum"), terms))

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
        for blob, join, terms in self._plan:
            if join == "concat":
                values[blob] = torch.cat([module(values[src]) for src, module in terms], 1)
                continue
            acc = None
            for src, module in terms:
                t = module(values[src])
                acc = t if acc is None else (acc * t if join == "mul" else acc + t)
            values[blob] = acc
        return values[self.output_blob]


class ExportedEnsemble(nn.Module):
    """Several exported members as one model: the log of their averaged softmax (``morphnas export
    --ensemble K``), so ``argmax`` and ``softmax`` of its output are the ensemble's; for a
    regression (``combine: mean``) the average of their outputs."""

    def __init__(self, members: list, combine: str = "mean_softmax"):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.input_shape = members[0].input_shape
        self.combine = combine

    def forward(self, x):
        if self.combine == "mean":   # a regression: the members' outputs averaged
            return sum(m(x) for m in self.members) / len(self.members)
        probs = sum(torch.softmax(m(x), dim=1) for m in self.members) / len(self.members)
        return torch.log(probs)


def load(directory, map_location="cpu") -> nn.Module:
    """The exported model of ``directory`` (``model.json`` + ``weights.pt``, or an ensemble's
    ``ensemble.json`` and ``members/``), in eval mode."""
    d = Path(directory)
    if (d / "ensemble.json").is_file():
        ens = json.loads((d / "ensemble.json").read_text())
        model = ExportedEnsemble([load(d / "members" / m, map_location) for m in ens["members"]],
                                 ens.get("combine", "mean_softmax"))
        model.preprocessing = ens.get("preprocess") or {}
        return model.eval()
    spec = json.loads((d / "model.json").read_text())
    model = ExportedNet(spec)
    state = torch.load(d / "weights.pt", map_location=map_location, weights_only=True)
    model.load_state_dict(state, strict=True)
    dtype = getattr(torch, spec.get("dtype", "float32"))
    model.preprocessing = spec.get("preprocess") or {}   # what predict() applies to raw images
    return model.to(dtype).eval()


def _preprocessing(model: nn.Module) -> dict:
    p = getattr(model, "preprocessing", None)
    if not p or "mean" not in p:
        raise ValueError("this export records no preprocessing (exported by an older morphnas, or its data "
                         "could not be loaded at export); feed model(x) with input normalised as in training")
    return p


def preprocess(model: nn.Module, raw_images) -> torch.Tensor:
    """Raw images (or raw feature rows) -> the network's input, exactly as training prepared them
    (see the module doc)."""
    p = _preprocessing(model)
    if p.get("layout") == "NF":                      # a table: (N, F) rows, columns in p["features"]
        x = torch.as_tensor(raw_images).to(torch.float32)
        if x.ndim == 1:
            x = x.unsqueeze(0)
        if x.ndim != 2 or x.shape[1] != len(p["mean"]):
            names = f" ({', '.join(p['features'])})" if p.get("features") else ""
            raise ValueError(f"rows must be (N, {len(p['mean'])}){names}, got shape {tuple(x.shape)}")
        mean = torch.tensor(p["mean"], dtype=torch.float32).view(1, -1)
        std = torch.tensor(p["std"], dtype=torch.float32).view(1, -1)
        return ((x - mean) / std).contiguous()
    x = torch.as_tensor(raw_images).to(torch.float32)
    if x.ndim == 3:
        x = x.unsqueeze(1)                          # (N, H, W) -> (N, 1, H, W)
    if x.ndim != 4 or x.shape[1] != len(p["mean"]):
        raise ValueError(f"raw_images must be (N, {len(p['mean'])}, H, W) ({p['channel_order']}), "
                         f"got shape {tuple(x.shape)}")
    x = x / float(p["raw_range"][1])
    size = tuple(model.input_shape[-2:])
    if tuple(x.shape[-2:]) != size:
        x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
    mean = torch.tensor(p["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(p["std"], dtype=torch.float32).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous()


def is_regression(model: nn.Module) -> bool:
    return (getattr(model, "preprocessing", None) or {}).get("task") == "regression"


def _outputs(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    dtype = next(iter(model.parameters()), torch.empty(0)).dtype
    with torch.no_grad():
        out = [model(x[i:i + batch_size].to(dtype)) for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.empty(0)


def predict_proba(model: nn.Module, raw_images, batch_size: int = 256) -> torch.Tensor:
    """Class probabilities (softmax of the logits) for raw images, computed in batches."""
    if is_regression(model):
        raise ValueError("this export is a regression: predict() gives its predictions; there are no probabilities")
    x = preprocess(model, raw_images)
    dtype = next(iter(model.parameters()), torch.empty(0)).dtype
    with torch.no_grad():
        out = [torch.softmax(model(x[i:i + batch_size].to(dtype)), dim=1) for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.empty(0)


def predict(model: nn.Module, raw_images, batch_size: int = 256) -> torch.Tensor:
    """The predicted class index of each raw image, (N,) int64; for a regression the prediction in
    the target's own units (the network's output times the training target's std, plus its mean),
    (N,) for one target, (N, T) for several."""
    x = preprocess(model, raw_images)
    if is_regression(model):
        y = _outputs(model, x, batch_size).to(torch.float32)
        target = model.preprocessing.get("target") or {}
        if target:
            y = y * float(target["std"]) + float(target["mean"])
        return y.squeeze(1) if y.ndim == 2 and y.shape[1] == 1 else y
    dtype = next(iter(model.parameters()), torch.empty(0)).dtype
    with torch.no_grad():
        out = [model(x[i:i + batch_size].to(dtype)).argmax(dim=1) for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


def class_names(model: nn.Module) -> list | None:
    return (getattr(model, "preprocessing", None) or {}).get("class_names")


def count_params(model: nn.Module) -> int:
    """Parameters by morphnas' convention (the leaderboard's and ``morphnas describe``'s): every
    learnable tensor plus BN running statistics; integer counters are not parameters."""
    return (sum(p.numel() for p in model.parameters())
            + sum(b.numel() for b in model.buffers() if b.is_floating_point()))


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
    n = count_params(model)
    print(f"loaded {args.directory}: input shape {model.input_shape}, {n:,} parameters "
          f"(learnable tensors + BN running statistics, as the leaderboard counts)")
    if args.check:
        err, rel = check(args.directory)
        print(f"check: max_abs_err={err:.3e} rel_err={rel:.3e} (tol {args.tol:g})")
        return 0 if rel <= args.tol else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
