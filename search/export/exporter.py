"""Export a member as a standalone PyTorch model: spec + weights + a loader that needs only torch.

An export directory holds

* ``model.json``     — the architecture (format ``morphnas-export`` v1: blobs in topological order
  with their incoming layers, each layer's kind and fields) plus the member's facts;
* ``weights.pt``     — a plain state dict keyed ``<layer name>.<tensor>`` (``weights_only`` safe);
* ``load_model.py``  — :mod:`.standalone_loader`, copied: builds the ``nn.Module`` from the two files;
* ``morphnas_runtime.py`` — :mod:`morphnas.morphism.runtime` followed by every layer kind's runtime
  module, copied from its kind file (:func:`morphnas.morphism.kinds.runtime_source`): the torch-only
  layer modules the loader builds (the same code morphnas computes with);
* ``check_input.pt`` / ``check_output.pt`` — a seeded input batch and the member's output on it,
  computed by morphnas' own compiled network, so ``python load_model.py DIR --check`` proves the
  export reproduces the member anywhere;
* optionally ``model.torchscript.pt`` (``torch.jit.trace``), ``model.pt2`` (``torch.export``) and
  ``model.onnx`` (ONNX opset :data:`ONNX_OPSET`, input ``input`` and output ``output`` with a dynamic
  batch dimension; needs the ``onnx`` extra, see :func:`write_onnx`).

The export format is separate from morphnas' save format on purpose: the loader must stay small
and frozen while the engine's format may grow.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from morphnas.morphism import runtime
from morphnas.morphism.compile import compile_network
from morphnas.morphism.errors import MorphnasError, PreservationError
from morphnas.morphism.graph import Network
from morphnas.morphism.kinds import runtime_source
from morphnas.morphism.layer_json import spec_to_json
from morphnas.morphism.serialize import load_network
from morphnas.search.config import DataConfig, load_config
from morphnas.search.data.core import load_data
from morphnas.search.data.task import Task
from morphnas.search.state.rundir import RunDir
from morphnas.search.study.leaderboard import Leaderboard, LeaderboardError

FORMAT, VERSION = runtime.EXPORT_FORMAT, runtime.EXPORT_VERSION
LOADER = Path(__file__).with_name("standalone_loader.py")


class ExportError(MorphnasError):
    """The export cannot be made (bad target, unfinished trial, model that does not reproduce)."""


@dataclass(frozen=True)
class ExportResult:
    directory: Path
    max_abs_err: float          # standalone loader vs. the member (compiled by morphnas)
    rel_err: float
    files: tuple[str, ...]
    checks: dict[str, float] = field(default_factory=dict)   # relative error per extra format

    def to_json(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "max_abs_err": self.max_abs_err, "rel_err": self.rel_err,
                "files": list(self.files), "checks": dict(self.checks)}


def export_spec(net: Network, info: dict[str, Any] | None = None,
                preprocess: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``model.json`` content for ``net``: blobs in topological order, each with its in-layers in
    the order morphnas sums them (by name), so the loader's sums round the same way."""
    blobs = [{"name": b, "in": [e.name for e in net.in_edges(b)], **({"join": net.join(b)} if net.join(b) != "sum" else {})}
             for b in net.blobs() if b != net.input_blob]
    edges = [{"name": e.name, "src": e.src, "dst": e.dst, "layer": spec_to_json(e.layer)} for e in net.edges()]
    return {"format": FORMAT, "version": VERSION, "input_shape": list(net.input_shape),
            "input": net.input_blob, "output": net.output_blob, "dtype": str(net.dtype).removeprefix("torch."),
            "blobs": blobs, "edges": edges, "member": info or {}, "preprocess": preprocess or {}}


def _import_loader(path: Path):
    spec = importlib.util.spec_from_file_location("morphnas_export_loader", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _write_loader_and_check(out: Path, net: Network, reference: Any, batch: int, seed: int, tol: float,
                            what: str) -> tuple[Any, torch.Tensor, torch.Tensor, float, float]:
    """Copy the loader and the layer runtime into ``out``, save a seeded input batch and the
    ``reference`` output on it, reload ``out`` through the copied loader and compare: a relative
    error above ``tol`` raises :class:`PreservationError` (the files stay for inspection)."""
    shutil.copyfile(LOADER, out / "load_model.py")
    (out / "morphnas_runtime.py").write_text(runtime_source())   # the loader's layer modules (torch only)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *net.input_shape), generator=gen, dtype=torch.float64).to(net.dtype)
    with torch.no_grad():
        expected = reference(x)
    torch.save(x, out / "check_input.pt")
    torch.save(expected, out / "check_output.pt")
    model = _import_loader(out / "load_model.py").load(out)
    with torch.no_grad():
        err, rel = _rel(model(x), expected)
    if not rel <= tol:
        raise PreservationError(f"{what}: rel_err={rel:.3e} > tol={tol:g} (files left in {out})")
    return model, x, expected, err, rel


def _rel(y: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    err = (y - ref).abs().max().item()
    return err, err / max(ref.abs().max().item(), 1e-30)


def export_network(net: Network, out_dir: str | Path, *, info: dict[str, Any] | None = None,
                   torchscript: bool = False, torch_export: bool = False, onnx: bool = False, batch: int = 2,
                   seed: int = 0, tol: float = 1e-5, preprocess: dict[str, Any] | None = None) -> ExportResult:
    """Write ``net`` to ``out_dir`` (created; our files are overwritten) and check the export.

    The check reloads the written files through the copied loader and compares its output on a
    seeded batch with morphnas' compiled network; a relative error above ``tol`` raises
    :class:`~morphnas.morphism.errors.PreservationError` (the files stay for inspection).
    ``preprocess`` (:attr:`~.data.Data.preprocess`) is what turns raw images into the network's
    input; recorded in ``model.json`` and ``export.json``, applied by the loader's ``predict``.
    ``onnx`` also writes ``model.onnx`` and checks it under onnxruntime (:func:`write_onnx`).
    """
    if onnx:
        onnx_modules()  # fail before writing anything when the extra is not installed
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"export target {str(out)!r} is a file; pass a directory with -o")
    out.mkdir(parents=True, exist_ok=True)
    spec = export_spec(net, info, preprocess)
    (out / "model.json").write_text(json.dumps(spec, indent=1, default=str))
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, out / "weights.pt")
    reference = compile_network(net).eval()
    model, x, expected, err, rel = _write_loader_and_check(out, net, lambda x: reference(x), batch, seed, tol,
                                                           "the exported model differs from the member")
    files = ["model.json", "weights.pt", "load_model.py", "morphnas_runtime.py", "check_input.pt", "check_output.pt"]
    checks: dict[str, float] = {}
    for name, wanted in (("model.torchscript.pt", torchscript), ("model.pt2", torch_export), (ONNX_FILE, onnx)):
        if not wanted and (out / name).is_file():
            (out / name).unlink()  # a stale file from an earlier export of another member would mislead
    if torchscript:
        with warnings.catch_warnings():  # torch.jit is deprecated upstream but still the most portable format
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, (x,), check_trace=False)
            traced.save(str(out / "model.torchscript.pt"))
            reloaded = torch.jit.load(str(out / "model.torchscript.pt"))
        checks["torchscript"] = _checked(reloaded, x, expected, tol, "TorchScript")
        files.append("model.torchscript.pt")
    if torch_export:
        ep = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
        torch.export.save(ep, out / "model.pt2")
        checks["torch_export"] = _checked(torch.export.load(out / "model.pt2").module(), x, expected, tol,
                                          "torch.export")
        files.append("model.pt2")
    if onnx:
        checks["onnx"] = write_onnx(model, x, expected, out / ONNX_FILE, tol)
        files.append(ONNX_FILE)
    manifest = {"format": FORMAT, "version": VERSION, "torch": torch.__version__, "files": files,
                "check": {"batch": batch, "seed": seed, "max_abs_err": err, "rel_err": rel, **checks},
                "member": info or {}, "preprocess": preprocess or {},
                "params_convention": "learnable tensors + BN running statistics (as the leaderboard)",
                **({"onnx": onnx_manifest()} if onnx else {})}
    (out / "export.json").write_text(json.dumps(manifest, indent=1, default=str))
    files.append("export.json")
    return ExportResult(out, err, rel, tuple(files), checks)


def _checked(module, x, expected, tol: float, what: str) -> float:
    with torch.no_grad():
        _, rel = _rel(module(x), expected)
    if not rel <= tol:
        raise PreservationError(f"the {what} export differs from the member: rel_err={rel:.3e} > tol={tol:g}")
    return rel


# ----------------------------------------------------------------------------------------------- ONNX
ONNX_FILE = "model.onnx"
# Opset 17: the TorchScript-based exporter writes LayerNormalization natively from it, and every
# onnxruntime the extra allows (>= 1.17) runs it.
ONNX_OPSET = 17
ONNX_INPUT, ONNX_OUTPUT = "input", "output"
ONNX_INSTALL = "install with pip install 'morphnas[onnx]'"


def onnx_modules() -> tuple[Any, Any]:
    """``(onnx, onnxruntime)``; an :class:`ExportError` naming the install command when either is missing."""
    try:
        import onnx as onnx_pkg  # lazy: the optional ``onnx`` extra
        import onnxruntime  # lazy: the optional ``onnx`` extra
    except ImportError as e:
        raise ExportError(f"--onnx needs the onnx and onnxruntime packages ({e.name or 'onnx'} is not installed); "
                          f"{ONNX_INSTALL}") from None
    return onnx_pkg, onnxruntime


def onnx_manifest() -> dict[str, Any]:
    """What ``export.json`` says about ``model.onnx``: how to feed it and what wrote it."""
    onnx_pkg, ort = onnx_modules()
    return {"file": ONNX_FILE, "opset": ONNX_OPSET, "input": ONNX_INPUT, "output": ONNX_OUTPUT,
            "dynamic_axes": {"0": "batch"}, "exporter": "torch.onnx.export(dynamo=False)",
            "onnx": onnx_pkg.__version__, "onnxruntime": ort.__version__}


def _first_line(e: BaseException, limit: int = 300) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Swallow what the exporter prints on file descriptor 1 (its C++ side dumps the whole graph
    when a conversion fails): a failure is reported as one line by the caller."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            try:
                yield
            finally:
                sys.stdout.flush()
                os.dup2(saved, 1)
    finally:
        os.close(saved)


def _windows(n_in: int, n_out: int) -> list[tuple[int, int]]:
    """The input ranges of adaptive pooling's outputs (PyTorch's: floor(i*in/out) .. ceil((i+1)*in/out))."""
    return [((i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)) for i in range(n_out)]


def _adaptive_forward(module: nn.Module, average: bool):
    """A forward for an adaptive pool that ONNX can express: the native op where the output size
    divides the input size (a plain pool), else one reduction per output cell over PyTorch's window
    (the TorchScript-based exporter refuses those sizes). Height and width are fixed per network."""
    size = module.output_size
    native = F.adaptive_avg_pool2d if average else F.adaptive_max_pool2d

    def forward(x: torch.Tensor) -> torch.Tensor:
        h, w = (int(s) for s in x.shape[-2:])
        oh, ow = (size, size) if isinstance(size, int) else (h if size[0] is None else size[0],
                                                             w if size[1] is None else size[1])
        if h % oh == 0 and w % ow == 0:
            return native(x, (oh, ow))
        rows = []
        for h0, h1 in _windows(h, oh):
            cells = [x[:, :, h0:h1, w0:w1] for w0, w1 in _windows(w, ow)]
            rows.append(torch.stack([c.mean((2, 3)) if average else c.amax((2, 3)) for c in cells], -1))
        return torch.stack(rows, -2)
    return forward


def _onnx_ready(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose adaptive pools export to ONNX at every output size (see above)."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            m.forward = _adaptive_forward(m, isinstance(m, nn.AdaptiveAvgPool2d))  # type: ignore[method-assign]
    return model


def write_onnx(model: nn.Module, x: torch.Tensor, expected: torch.Tensor, path: Path, tol: float) -> float:
    """Write ``model`` as ONNX to ``path`` and check it under onnxruntime; returns its relative error.

    The exporter is torch's TorchScript-based one (``torch.onnx.export(dynamo=False)``): it needs
    only ``onnx``, not ``onnxscript``, takes a fraction of a second, and converts every layer kind
    morphnas has (adaptive pools to sizes that do not divide their input are rewritten first). The
    graph has input ``input`` and output ``output``, both with a dynamic batch dimension 0.

    The check runs the file with onnxruntime's ``CPUExecutionProvider`` on the export's test inputs
    ``x`` (and, to prove the batch dimension is dynamic, on ``x`` with its first sample appended)
    and compares with ``expected``, the member's output: the error is the same measure as every other
    check of an export, ``max|y - expected| / max|expected|``, the larger of the two batches'; above
    ``tol`` it raises :class:`PreservationError`. Failures are one line naming ``model.onnx``.
    """
    onnx_pkg, ort = onnx_modules()
    name = path.name
    module = _onnx_ready(model).eval()
    try:
        with warnings.catch_warnings(), _quiet_stdout(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated upstream; tracer notes
            torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                              input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                              dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}})
        onnx_pkg.checker.check_model(str(path))
    except Exception as e:  # noqa: BLE001 - any exporter failure is one line naming the file
        raise ExportError(f"--onnx: torch.onnx.export cannot write {name} ({type(e).__name__}: {_first_line(e)}); "
                          f"export without --onnx (model.json + weights.pt need only torch)") from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        hint = (" (the network is float64, which onnxruntime's CPU provider does not run for every operator)"
                if x.dtype == torch.float64 else "")
        raise ExportError(f"--onnx: onnxruntime cannot load {name}{hint}: {_first_line(e)}; "
                          f"export without --onnx") from None
    rel = 0.0
    bigger = torch.cat([x, x[:1]])
    for inp, ref in ((x, expected), (bigger, torch.cat([expected, expected[:1]]))):
        try:
            y = session.run([ONNX_OUTPUT], {ONNX_INPUT: inp.detach().cpu().numpy()})[0]
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ExportError(f"--onnx: onnxruntime cannot run {name} on a batch of {len(inp)}: {_first_line(e)}; "
                              f"export without --onnx") from None
        rel = max(rel, _rel(torch.from_numpy(y).to(ref.dtype), ref)[1])
    if not rel <= tol:
        raise PreservationError(f"--onnx: {name} differs from the member under onnxruntime: rel_err={rel:.3e} > "
                                f"tol={tol:g}; export without --onnx, or accept the difference with --tol")
    return rel


def export_run(run: RunDir, out_dir: str | Path, trial: int | None = None, **kwargs: Any) -> tuple[ExportResult, Any]:
    """Export trial ``trial`` of the run (default: the best finished one). Returns the result and the row."""

    lb = Leaderboard.open(run)
    rows = lb.rows()
    if trial is None:
        row = lb.best_row()
    else:
        row = next((r for r in rows if r.trial == trial), None)
        if row is None:
            raise LeaderboardError(f"trial {trial} does not exist; the study has trials "
                                   f"{min(r.trial for r in rows)}..{max(r.trial for r in rows)}" if rows else
                                   f"trial {trial} does not exist; the study has no trials")
        if row.state != "COMPLETE":
            raise ExportError(f"trial {trial} (member {row.member_id}) is {row.state}"
                              f"{': ' + row.fail_reason if row.fail_reason else ''}; export a finished trial "
                              f"(see `morphnas leaderboard {run.root}`)")
    path = lb.member_dir(row)
    net = load_network(path)
    info = {"run": run.name, "trial": row.trial, "member_id": row.member_id, "parent_id": row.parent_id,
            "values": list(row.values or ()), "objectives": lb.study.metric_names, "val_acc": row.val_acc,
            "params": row.params, "params_mb": row.params_mb, "flops": row.flops, "ops": row.ops}
    kwargs.setdefault("preprocess", run_preprocess(run))
    return export_network(net, out_dir, info=info, **kwargs), row


ENSEMBLE_FORMAT, ENSEMBLE_VERSION = "morphnas-ensemble", 1


def export_ensemble(run: RunDir, out_dir: str | Path, k: int, *, batch: int = 2, seed: int = 0,
                    tol: float = 1e-5, onnx: bool = False) -> tuple[ExportResult, list[Any]]:
    """The ``k`` validation-best finished members of the run as one model: their probabilities averaged
    (a regression's: their outputs averaged, ``combine: mean``).

    Each member is exported (and checked) into ``members/<id>/``; ``ensemble.json`` lists them, and
    the top-level ``load_model.py`` loads the ensemble as one ``nn.Module`` whose output is the log of
    the averaged softmax (so ``argmax``, ``predict`` and ``predict_proba`` are the ensemble's). The
    ensemble's own output on a seeded batch is saved and checked like a single export's. ``onnx``
    also writes the whole ensemble as one ``model.onnx`` (averaging included) and checks it
    (:func:`write_onnx`); the checks' errors are recorded in ``ensemble.json`` -> ``check``.
    """
    if onnx:
        onnx_modules()  # fail before writing anything when the extra is not installed
    lb = Leaderboard.open(run)
    ranked = sorted((r for r in lb.rows() if r.state == "COMPLETE" and r.val_acc is not None),
                    key=lambda r: (-float(r.val_acc), r.params or 0, r.trial))
    if k < 1:
        raise ExportError(f"--ensemble must be >= 1, got {k}")
    if len(ranked) < k:
        raise ExportError(f"--ensemble {k}: the run has only {len(ranked)} finished member(s); "
                          f"ask for at most {len(ranked)}")
    rows = ranked[:k]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    preprocess = run_preprocess(run)
    nets = []
    for r in rows:
        net = load_network(lb.member_dir(r))
        nets.append(net)
        info = {"run": run.name, "trial": r.trial, "member_id": r.member_id, "val_acc": r.val_acc,
                "params": r.params, "flops": r.flops, "ops": r.ops}
        export_network(net, out / "members" / r.member_id, info=info, batch=batch, seed=seed, tol=tol,
                       preprocess=preprocess)
    shapes = {tuple(n.input_shape) for n in nets}
    if len(shapes) != 1:
        raise ExportError(f"--ensemble {k}: the members take different inputs {sorted(shapes)}")
    combine = "mean" if _is_regression(preprocess) else "mean_softmax"
    spec = {"format": ENSEMBLE_FORMAT, "version": ENSEMBLE_VERSION, "combine": combine,
            "members": [r.member_id for r in rows], "input_shape": list(nets[0].input_shape),
            "preprocess": preprocess, "member_info": [{"trial": r.trial, "member_id": r.member_id,
                                                       "val_acc": r.val_acc, "params": r.params} for r in rows]}
    (out / "ensemble.json").write_text(json.dumps(spec, indent=1, default=str))
    modules = [compile_network(n).eval() for n in nets]

    def reference(x: torch.Tensor) -> torch.Tensor:
        if combine == "mean":  # a regression: the members' predictions averaged
            return sum(m(x) for m in modules) / len(modules)
        return torch.log(sum(torch.softmax(m(x), dim=1) for m in modules) / len(modules))
    model, x, expected, err, rel = _write_loader_and_check(out, nets[0], reference, batch, seed, tol,
                                                           "the exported ensemble differs from its members")
    files = ["ensemble.json", "load_model.py", "morphnas_runtime.py", "check_input.pt", "check_output.pt",
             *[f"members/{r.member_id}/" for r in rows]]
    checks: dict[str, float] = {}
    if (out / ONNX_FILE).is_file() and not onnx:
        (out / ONNX_FILE).unlink()  # a stale file from an earlier export would mislead
    if onnx:
        checks["onnx"] = write_onnx(model, x, expected, out / ONNX_FILE, tol)
        files.append(ONNX_FILE)
        spec["onnx"] = onnx_manifest()
    spec["check"] = {"batch": batch, "seed": seed, "max_abs_err": err, "rel_err": rel, **checks}
    (out / "ensemble.json").write_text(json.dumps(spec, indent=1, default=str))
    return ExportResult(out, err, rel, tuple(files), checks), rows


def run_preprocess(run: RunDir) -> dict[str, Any]:
    """The preprocessing of the run's data (its config's ``data`` section and ``random_seed``), with
    the run's task: ``task`` (classification or regression) and ``metric`` (name and direction), so
    the loader's ``predict`` knows whether to take the arg-max or to un-standardise the output."""

    try:
        cfg = load_config(run.config_path)
    except Exception as e:  # noqa: BLE001 - the network still exports; say what predict() will lack
        warnings.warn(f"export: the run's config cannot be read ({type(e).__name__}: {e}); the export records "
                      f"no preprocessing, so load_model.predict() needs it restored", stacklevel=2)
        return {}
    task = Task.of(cfg.task.type, cfg.task.loss, cfg.task.metric)
    about = {"task": task.type, "metric": {"name": task.metric.name, "direction": task.metric.direction}}
    try:
        data = load_data(DataConfig(**dataclasses.asdict(cfg.data)), seed=cfg.random_seed, task=task.type)
    except Exception as e:  # noqa: BLE001 - the network still exports; say what predict() will lack
        warnings.warn(f"export: the run's data cannot be loaded ({type(e).__name__}: {e}); the export records "
                      f"no preprocessing, so load_model.predict() needs it restored", stacklevel=2)
        return about
    return {**(data.preprocess or {}), **about}


def _is_regression(preprocess: dict[str, Any]) -> bool:
    return (preprocess or {}).get("task") == "regression"
