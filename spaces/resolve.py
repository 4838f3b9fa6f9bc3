"""Turn a network SPEC string (as the CLI and configs take it) into a :class:`Network`.

A SPEC is, in this order of precedence:

1. ``torchvision:<model>`` — built by ``torchvision.models.get_model(<model>, weights=None)`` and
   imported by tracing (:func:`morphnas.morphism.importer.from_torch`; see :mod:`.torchvision_seed`);
2. a directory saved by :func:`morphnas.morphism.serialize.save_network` (or its ``network.json``);
3. a registry name (seed or paper variant), via :func:`morphnas.spaces.registry.create_network`.

A SPEC that looks like a path (it contains a ``/`` or ends in ``.json``) but does not exist is
reported as a missing file, not as an unknown name.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path

from morphnas.morphism.errors import LoadError, MorphnasError
from morphnas.morphism.graph import Network
from morphnas.morphism.serialize import SPEC_FILE, load_network
from morphnas.spaces.registry import REGISTRY, create_network
from morphnas.spaces.seeds.torchvision_seed import TORCHVISION, check_classes, torchvision_network

__all__ = ["TORCHVISION", "check_classes", "looks_like_path", "resolve_network"]


def looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or spec.endswith(".json") or spec.startswith(".")


def resolve_network(spec: str, num_classes: int | None = None, seed: int | None = None,
                    input_size: int | None = None, features: int | None = None) -> Network:
    """The network named by ``spec`` (see the module docstring).

    ``num_classes``, ``seed`` and ``input_size`` apply to networks built here (names and
    torchvision models); a saved network keeps its weights, and asking for a different number of
    classes than it has is an error rather than a silent new head. ``features`` is the input width
    of a tabular seed (``mlp``); a builder that takes no ``features`` is refused for tabular data.
    """
    num_classes = check_classes(num_classes)
    if not isinstance(spec, str) or not spec.strip():
        raise MorphnasError(f"network SPEC must be a name, a saved network directory or torchvision:<model>, got {spec!r}")
    spec = spec.strip()
    if spec.startswith(TORCHVISION):
        return torchvision_network(spec[len(TORCHVISION):], num_classes, seed, input_size)
    p = Path(spec)
    if p.is_dir() or (p.is_file() and p.name == SPEC_FILE):
        net = load_network(p)
        if num_classes is not None:
            have = net.shapes().get(net.output_blob, (None,))
            if tuple(have) != (num_classes,):
                raise MorphnasError(f"saved network {spec!r} outputs shape {tuple(have)}, not {num_classes} classes; "
                                    "drop --classes (it applies to networks built by name)")
        net.meta.setdefault("name", p.resolve().name if p.is_dir() else p.resolve().parent.name)
        return net
    if p.exists():
        raise LoadError(f"{spec!r} is a file but not a saved network; pass the directory holding {SPEC_FILE}")
    if looks_like_path(spec):
        raise LoadError(f"no saved network at {spec!r} (the path does not exist)")
    overrides = {"num_classes": num_classes, "seed": seed, "input_size": input_size, "features": features}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if features is not None and not _accepts(spec, "features"):
        raise MorphnasError(f"seed network {spec!r} takes images, but the data is a table of {features} features; "
                            f"use the mlp seed (seed.network: mlp)")
    if "seed" in overrides and not _accepts(spec, "seed"):
        del overrides["seed"]  # a builder without a seed is deterministic: nothing to vary
    return create_network(spec, **overrides)


def _accepts(name: str, arg: str) -> bool:
    """Whether the registry builder behind ``name`` takes keyword ``arg`` (unknown names: True,
    so that ``create_network`` reports them with its suggestions)."""
    try:
        build = REGISTRY.entry(name).build
    except MorphnasError:
        return True
    try:
        params = inspect.signature(build).parameters
    except (TypeError, ValueError):
        return True
    return arg in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
