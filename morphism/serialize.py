"""Save and load a :class:`Network`: a versioned JSON spec plus a plain tensor file.

A saved network is a directory::

    NET/network.json   {"format": "morphnas-network", "version": 1, "input_shape", "input_blob",
                        "output_blob", "blobs", "edges": [{name, src, dst, layer}], "meta",
                        "weights": {"file", "sha256", "tensors": {key: {shape, dtype}}}}
                       (version 2 adds "joins": {blob: {"join", "order"}} for concat/mul blobs;
                        a network with sum joins only is still written as version 1)
    NET/weights.pt     a plain ``{"<edge>.<param>": tensor}`` dict written by ``torch.save``

Loading never executes a pickle: the weights file is checked against the spec's sha256 first and
then read with ``torch.load(..., weights_only=True)``, whose unpickler refuses every global that is
not a tensor/storage type. Every failure (missing file, bad JSON, unknown version, truncated or
tampered weights, tensors that do not fit the layers) is a :class:`LoadError` naming the file and
the problem. Files are written to temporaries and renamed, so a crash mid-save never leaves a
half-written spec next to old weights.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import LoadError, MorphnasError, SpecError, storage_error
from .graph import Network
from .joins import CONCAT, SUM
from .layer_json import spec_from_json, spec_to_json
from .safe_io import UnsafeInput, check_regular

FORMAT = "morphnas-network"
VERSION = 2          # the newest version written; every version in READABLE loads
READABLE = (1, 2)
SPEC_FILE = "network.json"
WEIGHTS_FILE = "weights.pt"

_DTYPES = {str(d).replace("torch.", ""): d for d in
           (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.int32, torch.bool)}


def network_to_json(net: Network) -> dict[str, Any]:
    """The spec part (no tensors, no hash) as a JSON-able dict."""
    joins = {b: ({"join": net.join(b), "order": [e.name for e in net.in_edges(b)]} if net.join(b) == CONCAT
                 else {"join": net.join(b)}) for b in net.blobs() if net.join(b) != SUM}
    spec = {
        "format": FORMAT,
        # Version 1 has no joins: networks without them keep the old file, readable by old morphnas.
        "version": VERSION if joins else 1,
        "input_shape": list(net.input_shape),
        "input_blob": net.input_blob,
        "output_blob": net.output_blob,
        # Blobs are listed so that a blob's identity survives even before edges name it.
        "blobs": list(net.blobs()),
        "edges": [{"name": e.name, "src": e.src, "dst": e.dst, "layer": spec_to_json(e.layer)}
                  for e in net.edges()],
        "meta": net.meta,
    }
    if joins:
        spec["joins"] = joins
    return spec


def save_network(net: Network, path: str | os.PathLike) -> Path:
    """Write ``net`` to the directory ``path`` (created if needed) and return it.

    Refuses a path that is a file, or a non-empty directory that is not a saved network, so a typo
    never scatters files into an unrelated folder. A new network is written into a hidden sibling
    folder and renamed into place whole, so a crash (or a full disk) never leaves a partial network
    under ``path``; an existing one is replaced file by file, each written aside and renamed, the
    spec last. What an interrupted save left (``*.tmp`` files, hidden ``.<name>.saving-*`` folders)
    is cleared by the next save to the same path.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise MorphnasError(f"cannot save the network to {str(out)!r}: it is a file, not a directory")
    leftovers = [out / (WEIGHTS_FILE + ".tmp"), out / (SPEC_FILE + ".tmp")]   # what a crash mid-save leaves
    existing = out.is_dir() and (out / SPEC_FILE).exists()
    if out.is_dir() and not existing and any(p not in leftovers for p in out.iterdir()):
        raise MorphnasError(f"refusing to save into {str(out)!r}: the directory is not empty and holds no "
                            f"{SPEC_FILE}; pick a new directory")
    staging = out.parent / f".{out.name}.saving-{os.getpid()}"
    try:
        for p in leftovers:
            p.unlink(missing_ok=True)
        if existing:
            return _write_network(net, out)
        out.parent.mkdir(parents=True, exist_ok=True)
        for old in out.parent.glob(f".{out.name}.saving-*"):     # an earlier save that crashed
            shutil.rmtree(old, ignore_errors=True)
        staging.mkdir()
        _write_network(net, staging)
        if out.is_dir():
            out.rmdir()                  # empty now: the leftovers above were all it held
        os.replace(staging, out)
        return out
    except OSError as e:
        for p in leftovers:          # never leave a half-written file behind
            try:
                p.unlink(missing_ok=True)
            except OSError:
                pass
        shutil.rmtree(staging, ignore_errors=True)
        raise storage_error(e, out, "cannot save the network to") from None


def _write_network(net: Network, out: Path) -> Path:
    state = {k: t.detach().contiguous().clone() for k, t in net.state_dict().items()}
    spec = network_to_json(net)
    try:  # fail before writing anything
        json.dumps(spec, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise MorphnasError(f"network meta is not JSON-serialisable ({e}); keep only plain values in net.meta") from None

    tmp_w = out / (WEIGHTS_FILE + ".tmp")
    buf = io.BytesIO()     # serialised in memory, written by a plain write: a full disk is an OSError (ENOSPC),
    torch.save(state, buf)  # not torch's opaque "iostream error"
    with open(tmp_w, "wb") as f:
        f.write(buf.getbuffer())
    spec["weights"] = {
        "file": WEIGHTS_FILE,
        "sha256": _sha256(tmp_w),
        "tensors": {k: {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
                    for k, t in state.items()},
    }
    text = json.dumps(spec, indent=1, allow_nan=False)
    tmp_s = out / (SPEC_FILE + ".tmp")
    tmp_s.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp_w, out / WEIGHTS_FILE)
    os.replace(tmp_s, out / SPEC_FILE)
    return out


def load_network(path: str | os.PathLike) -> Network:
    """Read a network saved by :func:`save_network` (``path`` is the directory or its network.json)."""
    p = Path(path)
    spec_path = p / SPEC_FILE if p.is_dir() else p
    if not spec_path.exists():
        where = f"{str(p)!r} has no {SPEC_FILE}" if p.is_dir() else f"{str(spec_path)!r} does not exist"
        raise LoadError(f"cannot load a network: {where}")
    spec = _read_spec(spec_path)
    net = _network_from_spec(spec, spec_path)
    weights = spec["weights"]
    if not isinstance(weights, dict) or not isinstance(weights.get("file"), str):
        raise LoadError(f"{spec_path}: field 'weights' must be an object with 'file', 'sha256' and 'tensors'")
    w_path = spec_path.parent / weights["file"]
    if Path(weights["file"]).name != weights["file"]:
        raise LoadError(f"{spec_path}: weights file {weights['file']!r} must be a plain file name beside the spec")
    state = _read_weights(w_path, weights.get("sha256"))
    _fill(net, state, weights.get("tensors", {}), w_path)
    return net


# ------------------------------------------------------------------------------------------ reading
MAX_SPEC_BYTES = 256 << 20          # network.json of the largest imported models is a few MiB
MAX_WEIGHTS_BYTES = 64 << 30        # a weights file bigger than this is not one of ours


def _regular(path: Path, limit: int, what: str) -> None:
    """Only a regular file of bounded size is read (a FIFO would block, /dev/zero never end)."""
    try:
        check_regular(path, limit, what)
    except UnsafeInput as e:
        raise LoadError(f"cannot load a network: {e}") from None


def _read_spec(spec_path: Path) -> dict[str, Any]:
    _regular(spec_path, MAX_SPEC_BYTES, "network spec")
    try:
        raw = spec_path.read_bytes()
    except OSError as e:
        raise LoadError(f"cannot read {spec_path}: {e.strerror}") from None
    try:
        spec = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise LoadError(f"{spec_path} is not UTF-8 text (is it a network.json?)") from None
    except json.JSONDecodeError as e:
        raise LoadError(f"{spec_path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
                        "the file is corrupt or truncated") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        got = spec.get("format") if isinstance(spec, dict) else type(spec).__name__
        raise LoadError(f"{spec_path} is not a morphnas network spec (format {got!r}, expected {FORMAT!r})")
    version = spec.get("version")
    if version not in READABLE:
        raise LoadError(f"{spec_path} has format version {version!r}; this morphnas reads versions "
                        f"{', '.join(map(str, READABLE))} (upgrade morphnas, or re-save the network with this version)")
    missing = [k for k in ("input_shape", "edges", "weights") if k not in spec]
    if missing:
        raise LoadError(f"{spec_path} lacks field(s) {missing}; the file is incomplete")
    return spec


def _network_from_spec(spec: dict[str, Any], spec_path: Path) -> Network:
    try:
        shape = spec["input_shape"]
        if not isinstance(shape, list) or not shape or not all(isinstance(s, int) and s > 0 for s in shape):
            raise SpecError(f"input_shape must be a list of positive ints, got {shape!r}")
        net = Network(tuple(shape), spec.get("input_blob", "input"), spec.get("output_blob", "output"))
        for b in spec.get("blobs", []):
            if b not in (net.input_blob, net.output_blob):
                net.add_blob(b)
        edges = spec["edges"]
        if not isinstance(edges, list):
            raise SpecError(f"'edges' must be a list, got {type(edges).__name__}")
        for i, e in enumerate(edges):
            if not isinstance(e, dict) or not {"name", "src", "dst", "layer"} <= set(e):
                raise SpecError(f"edge #{i} must be an object with name, src, dst and layer, got {e!r}")
            layer = spec_from_json(e["layer"], where=f"edge {e['name']!r}")
            # Placeholder tensors: every one is replaced (and shape-checked) from the weights file.
            net.add_edge(e["src"], e["dst"], layer, e["name"], params={})
        joins = spec.get("joins", {})
        if not isinstance(joins, dict):
            raise SpecError(f"'joins' must be an object of blob -> {{join, order}}, got {type(joins).__name__}")
        for blob, j in joins.items():
            if not isinstance(j, dict) or not net.has_blob(blob):
                raise SpecError(f"joins[{blob!r}] must be an object for a blob of the network, got {j!r}")
            net.set_join(blob, j.get("join", SUM), j.get("order"))
        meta = spec.get("meta", {})
        if not isinstance(meta, dict):
            raise SpecError(f"'meta' must be an object, got {type(meta).__name__}")
        net.meta = meta
    except MorphnasError as e:
        raise LoadError(f"{spec_path}: {e}") from None
    return net


def _read_weights(w_path: Path, sha256: Any) -> dict[str, torch.Tensor]:
    if not w_path.exists():
        raise LoadError(f"weights file {str(w_path)!r} is missing (the spec names it)")
    _regular(w_path, MAX_WEIGHTS_BYTES, "weights file")
    if not isinstance(sha256, str):
        raise LoadError(f"{w_path.parent / SPEC_FILE}: 'weights.sha256' is missing; cannot check {w_path}")
    digest = _sha256(w_path)
    if digest != sha256:
        raise LoadError(f"weights file {str(w_path)!r} does not match its spec (sha256 {digest[:12]}..., "
                        f"expected {sha256[:12]}...): it is truncated, corrupt or from another network")
    try:
        state = torch.load(w_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unpickling refused"
        raise LoadError(f"refused to load {str(w_path)!r}: it holds objects other than tensors ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LoadError(f"cannot read weights file {str(w_path)!r}: {first}") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise LoadError(f"weights file {str(w_path)!r} must hold a dict of name -> tensor, got {type(state).__name__}")
    return state


def _fill(net: Network, state: dict[str, torch.Tensor], declared: dict[str, Any], w_path: Path) -> None:
    """Give each edge its tensors, checking names, shapes and dtypes against the layer specs."""
    expected = {f"{e.name}.{k}": (e.name, k, tuple(s)) for e in net.edges() for k, s in e.layer.param_shapes().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise LoadError(f"weights file {str(w_path)!r} does not match the spec: missing tensors {missing[:5]}"
                        f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                        f"{'...' if len(unexpected) > 5 else ''}")
    for key, (edge, pname, shape) in expected.items():
        t = state[key]
        if tuple(t.shape) != shape:
            raise LoadError(f"weights file {str(w_path)!r}: tensor {key!r} has shape {tuple(t.shape)} but the "
                            f"layer of edge {edge!r} needs {shape}")
        d = declared.get(key, {}) if isinstance(declared, dict) else {}
        want = d.get("dtype") if isinstance(d, dict) else None
        if want is not None and _DTYPES.get(want) is not None and t.dtype != _DTYPES[want]:
            raise LoadError(f"weights file {str(w_path)!r}: tensor {key!r} is {t.dtype}, the spec says {want}")
        net.params[edge][pname] = t


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
